"""The Hydra configs compose into what each experiment claims, unknown keys are errors, and the
W&B sweep config names real metrics and valid overrides. Nothing is trained here."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cloudseg.metrics import metric_names
from cloudseg.sentinel2.bands import L1C_BANDS
from helpers.configs import compose_resolved

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


def test_the_four_experiments_exist():
    assert EXPERIMENTS == ["demo", "linear_probe", "vit_b16", "vit_s16_ssl4eo"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_consistent_model_and_data(experiment):
    cfg = compose_resolved([f"experiment={experiment}", "paths.output_dir=/runs/one"])
    assert cfg.task_name == experiment
    assert cfg.model.segmenter.bands == cfg.data.bands
    assert cfg.model.segmenter.img_size == cfg.data.patch_size
    assert cfg.callbacks.model_checkpoint.monitor == cfg.monitor.metric
    assert cfg.monitor.metric.removeprefix("val/") in metric_names()
    assert cfg.logger.wandb.save_dir == "/runs/one"  # wandb/ inside the run folder
    assert cfg.callbacks.model_checkpoint.dirpath == "/runs/one/checkpoints"
    assert cfg.trainer.default_root_dir == "/runs/one"


def test_experiments_hold_their_setups():
    vit_b16 = compose_resolved(["experiment=vit_b16"])
    assert vit_b16.model.segmenter.backbone == "vit_b16"
    assert vit_b16.model.segmenter.pretrained == "imagenet"
    assert vit_b16.model.segmenter.head == "upernet"
    assert vit_b16.data.bands == list(L1C_BANDS)
    assert (vit_b16.trainer.accelerator, vit_b16.trainer.precision) == ("gpu", "16-mixed")
    assert vit_b16.model.layer_decay < 1 and vit_b16.trainer.gradient_clip_val > 0

    ssl4eo = compose_resolved(["experiment=vit_s16_ssl4eo"])
    assert (ssl4eo.model.segmenter.backbone, ssl4eo.model.segmenter.pretrained) == (
        "vit_s16",
        "ssl4eo",
    )
    assert not ssl4eo.model.segmenter.freeze_backbone

    probe = compose_resolved(["experiment=linear_probe"])
    assert probe.model.segmenter.freeze_backbone and probe.model.segmenter.head == "linear"
    assert probe.model.segmenter.pretrained == "ssl4eo" and probe.model.layer_decay == 1.0

    demo = compose_resolved(["experiment=demo"])
    assert demo.model.segmenter.backbone == "vit_tiny" and demo.model.segmenter.pretrained == "none"
    assert demo.data.root == f"{demo.paths.root_dir}/data/demo/mix"  # make demo-data
    assert demo.data.skip_scenes_without_bands  # the mix holds 4-, 12- and 13-band scenes
    assert demo.trainer.accelerator == "cpu" and demo.trainer.deterministic
    assert demo.data.num_workers == 0


def test_demo_trains_a_band_subset_of_the_default_mix():
    bands = "data.bands=[B02,B03,B04,B08,B11,B12]"
    cfg = compose_resolved(["experiment=demo", bands, "data.patch_size=96"])
    assert list(cfg.data.bands) == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert cfg.data.patch_size == 96
    assert cfg.data.root.endswith("data/demo/mix") and cfg.data.skip_scenes_without_bands


def test_debug_configs_run_on_one_cpu_in_float32_even_for_gpu_experiments():
    cfg = compose_resolved(["experiment=vit_b16", "trainer=ddp", "debug=fdr"])
    assert cfg.trainer.fast_dev_run is True
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == (
        "cpu",
        1,
        "32-true",
    )
    assert cfg.trainer.strategy == "auto" and cfg.data.num_workers == 0
    limit = compose_resolved(["experiment=demo", "debug=limit"])
    assert limit.trainer.limit_train_batches > 0 and "fast_dev_run" not in limit.trainer


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=ddp"],
        ["trainer=gpu"],
        ["logger=csv"],
        ["logger=none"],
        ["callbacks=none"],
        ["callbacks=ema"],
    ],
)
def test_group_options_compose(overrides):
    cfg = compose_resolved(overrides)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"


def test_default_data_root_and_monitor():
    cfg = compose_resolved([])
    assert cfg.data.root == f"{cfg.paths.root_dir}/data/labeled"
    assert cfg.monitor.metric == "val/iou_cloud_or_shadow_vs_clear" and cfg.monitor.mode == "max"
    assert cfg.ckpt_path is None


@pytest.mark.parametrize(
    "override",
    ["model.learning_rate=0.1", "data.patch=64", "trainer.max_epoch=3", "experiment=vit_l16"],
)
def test_unknown_keys_and_options_are_errors(override):
    with pytest.raises(ConfigCompositionException):
        compose_resolved([override])


def test_wandb_sweep_optimises_a_logged_metric_with_valid_overrides():
    sweep = yaml.safe_load((CONF_DIR / "wandb_sweep.yaml").read_text())
    assert sweep["program"] == "train.py" and (REPO / sweep["program"]).is_file()
    assert sweep["metric"]["name"].removeprefix("val/") in metric_names()
    assert sweep["metric"]["goal"] == "maximize"
    fixed = [arg for arg in sweep["command"] if "=" in arg and not arg.startswith("$")]
    overrides = [
        f"{name}={spec['values'][0] if 'values' in spec else spec['min']}"
        for name, spec in sweep["parameters"].items()
    ]
    cfg = compose_resolved([*fixed, *overrides])
    for name, spec in sweep["parameters"].items():
        assert OmegaConf.select(cfg, name) == (
            spec["values"][0] if "values" in spec else spec["min"]
        )
