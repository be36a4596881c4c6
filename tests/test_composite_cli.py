"""``python composite.py``: the config composes (unknown keys are errors), and the pipeline runs
end to end from the real L2A STAC item, with SCL masks (as a subprocess, the real CLI) and with a
tiny checkpoint written here through the real task/checkpoint code (masks cached and reused)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cloudseg.data.importers.scl import scl_to_mask
from cloudseg.labels import IGNORE_INDEX, THICK_CLOUD
from composite.cluster import ClusterSettings
from composite.driver import CompositeSettings
from composite.evidence.settings import EvidenceSettings
from composite.masking import MaskSettings
from composite.run import run_composite, settings_from_config
from composite.stack import StackSettings, build_stack
from helpers.composite import REAL_ITEM, compose_composite, tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def test_config_composes_into_checked_settings(tmp_path):
    cfg = compose_composite(
        ["stack.source=/data/scenes", "masks.source=scl", "composite.bands=[B02,B03]",
         "cluster=localcluster", "masks.buffer_m=40"],
        tmp_path,
    )  # fmt: skip
    settings = settings_from_config(cfg)
    assert settings.stack.source == "/data/scenes"
    assert settings.masks.exclude == ("thick_cloud", "thin_cloud", "cloud_shadow")
    assert settings.masks.buffer_m == 40 and settings.masks.cache_dir.startswith(str(tmp_path))
    assert settings.composite.bands == ("B02", "B03") and settings.composite.q == 25
    assert (settings.cluster.mode, settings.cluster.n_workers) == ("localcluster", 2)
    assert settings.work_dir == str(tmp_path / "outputs" / "cache" / "composite_windows")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigCompositionException, match="composite.percentile"):
        compose_composite(["stack.source=x", "composite.percentile=30"], tmp_path)
    with pytest.raises(ValueError, match="needs a checkpoint: pass ckpt="):
        settings_from_config(compose_composite(["stack.source=x"], tmp_path))
    with pytest.raises(ValueError, match="cluster.address"):
        settings_from_config(
            compose_composite(["stack.source=x", "masks.source=none", "cluster=address",
                               "cluster.address=null"], tmp_path)
        )  # fmt: skip


def test_cli_runs_from_the_real_stac_item_with_scl_masks(realdata, tmp_path):
    item = realdata / REAL_ITEM
    command = [
        sys.executable, "composite.py", f"stack.source={item}", "masks.source=scl",
        "composite.bands=[B02,B03,B04,B08]", "composite.window_size=400",
        f"out_dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path / 'outputs'}",
        f"hydra.run.dir={tmp_path / 'hydra'}", "progress=false", "evaluation.baselines=[none]",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["stack"]["dates"] == ["2020-02-19"]
    assert record["grid"]["crs"] == "EPSG:32629" and record["grid"]["width"] == 1098
    assert record["windows"] == {"total": 9, "reused": 0, "computed": 9}

    stack = build_stack(StackSettings(source=str(item)), progress=False)
    with stack.scenes[0].open() as scene:
        dn = scene.read(["B02", "B03", "B04", "B08"])
        excluded = scl_to_mask(scene.read(["SCL"])[0]) != 0  # cloud, cirrus, shadow, no data
    with rasterio.open(tmp_path / "out" / "composite.tif") as dataset:
        composite = dataset.read()
    with rasterio.open(tmp_path / "out" / "count.tif") as dataset:
        count = dataset.read(1)
    # one scene: the percentile of one observation is that observation, where the SCL keeps it
    np.testing.assert_array_equal(count, (~excluded).astype(np.uint16))
    np.testing.assert_array_equal(composite[:, ~excluded], dn[:, ~excluded])
    assert (composite[:, excluded] == 0).all()
    assert record["pixels"]["no_valid"] == excluded.sum() > 40000  # the north-east cirrus

    # the evidence: the unmasked baseline on the same grid, metrics, quicklooks, the map page
    out = tmp_path / "out"
    for name in ("composite_rgb.png", "composite_gray.png", "map.html", "metrics.md",
                 "baselines/none/composite.tif", "baselines/none/composite_rgb.png"):  # fmt: skip
        assert (out / name).is_file(), name
    table = json.loads((out / "metrics.json").read_text())
    assert table == record["reports"]["evidence"]["metrics"]
    assert table["composite"]["share_clear_obs_0"] == pytest.approx(excluded.mean())
    assert table["baseline_none"]["share_clear_obs_1_2"] == 1.0  # one scene, no mask


def test_model_masks_from_a_checkpoint_end_to_end_and_cached(realdata, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    overrides = [
        f"stack.source={realdata / REAL_ITEM}", f"ckpt={checkpoint}",
        "masks.inference.resolution=600", "masks.inference.window_size=64",
        "masks.inference.device=cpu", "composite.bands=[B04,B08]", "composite.window_size=600",
    ]  # fmt: skip
    result = run_composite(compose_composite(overrides, tmp_path))
    masks = result.record["masks"]
    assert (masks["source"], masks["computed"], masks["reused"]) == ("model", 1, 0)
    assert masks["checkpoint_sha256"] and masks["key"].startswith(masks["checkpoint_sha256"][:16])
    (mask_path,) = masks["paths"].values()
    with rasterio.open(mask_path) as dataset:
        classes = dataset.read(1)
    assert classes.shape == (1098, 1098) and set(np.unique(classes)) <= {0, 1, 2, 3}
    with rasterio.open(result.outputs.count) as dataset:
        count = dataset.read(1)
    # the composite's valid observations are exactly the pixels the model called clear
    np.testing.assert_array_equal(count, (classes == 0).astype(np.uint16))
    assert IGNORE_INDEX not in classes

    # the cached mask is reused; excluding only thick cloud keeps what the model called shadow
    thick_only = overrides + [f"out_dir={tmp_path / 'again'}", "masks.exclude=[thick_cloud]"]
    again = run_composite(compose_composite(thick_only, tmp_path))
    assert (again.record["masks"]["computed"], again.record["masks"]["reused"]) == (0, 1)
    with rasterio.open(again.outputs.count) as dataset:
        np.testing.assert_array_equal(dataset.read(1), (classes != THICK_CLOUD).astype(np.uint16))


def composite_command(item: Path, root: Path, name: str) -> list[str]:
    return [
        sys.executable, "composite.py", f"stack.source={item}", "masks.source=none",
        "composite.bands=[B02,B03,B04,B08]", "composite.window_size=32", "progress=false",
        f"out_dir={root / name}", f"paths.log_dir={root / 'outputs'}",
        f"hydra.run.dir={root / 'hydra' / name}",
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_cli_run_resumes_to_the_uninterrupted_output(realdata, tmp_path, kill_when):
    item = realdata / REAL_ITEM
    killed_root, reference_root = tmp_path / "killed", tmp_path / "reference"
    process = subprocess.Popen(
        composite_command(item, killed_root, "out"), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    work = killed_root / "outputs" / "cache" / "composite_windows"
    kill_when(
        process,
        lambda: len(list(work.glob("*/*/windows/*.npz"))) >= 100,
        "100 windows were written",
    )
    finished_at_kill = len(list(work.glob("*/*/windows/*.npz")))
    assert finished_at_kill < 35 * 35
    assert not (killed_root / "out" / "composite.tif").exists()

    for root in (killed_root, reference_root):
        completed = subprocess.run(
            composite_command(item, root, "out"), cwd=REPO, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
    resumed = json.loads((killed_root / "out" / "run.json").read_text())
    assert resumed["windows"]["reused"] == finished_at_kill
    assert resumed["windows"]["computed"] == 35 * 35 - finished_at_kill
    for name in ("composite.tif", "count.tif"):
        with (
            rasterio.open(killed_root / "out" / name) as a,
            rasterio.open(reference_root / "out" / name) as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read(), name)


def test_composite_yaml_defaults_are_the_settings_classes_defaults(tmp_path):
    launch = str(Path.cwd())
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.touch()
    overrides = ["stack.source=x", f"ckpt={checkpoint}", f"out_dir={tmp_path}"]
    cfg = compose_composite(overrides, tmp_path, folders=False)
    config = OmegaConf.to_container(cfg, resolve=True)
    settings = settings_from_config(cfg)
    assert settings.stack == StackSettings(source="x")
    assert settings.composite == CompositeSettings()
    assert settings.cluster == ClusterSettings()
    assert settings.evidence == EvidenceSettings()
    # the YAML sets only the run's folders: where the code default is relative to the launch dir
    cache_dir = settings.masks.cache_dir
    assert settings.masks == MaskSettings(checkpoint=str(checkpoint), cache_dir=cache_dir)
    assert str(Path(cache_dir).relative_to(launch)) == MaskSettings.cache_dir
    assert settings.masks.inference.rule.clear_threshold == 0.9
    assert config["work_dir"] == f"{launch}/outputs/cache/composite_windows"
    assert (config["progress"], config["tags"]) == (True, ["composite"])

    # every key is documented in conf/README.md
    readme = (CONF_DIR / "README.md").read_text()
    for section in ("stack", "masks", "composite", "cluster", "evaluation", "quicklook"):
        keys = {k: v for k, v in config[section].items() if k != "inference"}
        if section == "masks":
            keys.update(config["masks"]["inference"])
            keys.update(
                {f"rule.{key}": v for key, v in config["masks"]["inference"]["rule"].items()}
            )
        assert all(f"`{key}`" in readme for key in keys), section


def test_config_type_errors_name_the_key_the_value_and_the_type(tmp_path):
    with pytest.raises(ConfigCompositionException) as error:
        compose_composite(["stack.source=x", "composite.q=abc"], tmp_path)
    cause = str(error.value.__cause__)
    assert "'abc'" in cause and "Union[int, float]" in cause and "full_key: composite.q" in cause
    with pytest.raises(ConfigCompositionException) as error:
        compose_composite(["stack.source=x", "masks.inference.batch_size=big"], tmp_path)
    assert "full_key: masks.inference.batch_size" in str(error.value.__cause__)
