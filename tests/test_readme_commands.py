"""Every command README.md and conf/README.md show is run by a test, or by `make demo`.

``README_COMMANDS`` maps each command line of the READMEs (```bash blocks, and inline code that
starts with a program or is a run of config overrides) to the tests that run it or, where it
needs a GPU, several GPUs, internet or a W&B key, to the tests that compose and check it.
``test_every_readme_command_names_the_tests_that_run_it`` fails when a README gains a command
that is not in the registry, or the registry names a command or a test that no longer exists.

The other tests here cover what no other test ran: the `make demo` steps as a dry run, the
importers and predictor on a SAFE, all four mask producers, composites from a folder with a
checkpoint, from a STAC API search (the client served the real item) and on a Dask cluster,
resuming a run, the README's sweep, and the GPU/DDP trainer options.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch import Trainer
from omegaconf import DictConfig, OmegaConf, open_dict

from cloudseg.data.importers.cli import main as import_main
from cloudseg.data.manifest import read_manifest
from cloudseg.data.simulate.cli import build_parser as simulate_parser
from cloudseg.data.simulate.cli import main as simulate_main
from cloudseg.data.simulate.products import write_stack
from cloudseg.inference.cli import evaluate_main, predict_main
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.training import train
from composite.run import run_composite, settings_from_config
from helpers.composite import REAL_ITEM, compose_composite, tiny_checkpoint
from helpers.configs import compose_resolved
from helpers.training import TINY_SHRINK, compose_train, read_wandb_records, wandb_history

REPO = Path(__file__).resolve().parents[1]
READMES = (REPO / "README.md", REPO / "conf" / "README.md")

#: README command -> the tests that run it (``path::name``; a name may carry ``[parameter]``).
README_COMMANDS: dict[str, tuple[str, ...]] = {
    # -- README.md: the two commands (the demo itself runs for minutes: it is run by hand and
    # recorded in experiments/demo/README.md; here its steps are checked as a dry run)
    "make demo": ("tests/test_readme_commands.py::test_make_demo_steps_are_valid_commands",),
    "make demo-record": (
        "tests/test_readme_commands.py::"
        "test_make_demo_writes_only_outputs_and_data_and_demo_record_writes_the_record",
    ),
    "make test": ("tests/test_readme_commands.py::test_make_targets_exist",),
    "make test-slow": ("tests/test_readme_commands.py::test_make_targets_exist",),
    "make setup": ("tests/test_readme_commands.py::test_make_targets_exist",),
    # -- README.md: the default training data (prepared for minutes; a small recipe is run)
    "make demo-data": (
        "tests/test_readme_commands.py::test_make_targets_exist",
        "tests/data/test_demo_data.py::test_demo_data_is_idempotent_and_mixes_real_sources",
    ),
    "python train.py experiment=demo data.bands=[B02,B03,B04,B08,B11,B12]": (
        "tests/test_configs.py::test_demo_trains_a_band_subset_of_the_default_mix",
        "tests/data/test_demo_data.py::test_demo_data_is_idempotent_and_mixes_real_sources",
    ),
    # -- README.md: labels in
    "cloudfree-import hand images/ labels/ --out data/mylabels --mapping mapping.yaml": (
        "tests/data/test_importers_hand.py::test_cli_pairs_folders_by_name_and_applies_curation",
    ),
    "cloudfree-import scl S2B_MSIL2A_...SAFE --out data/mylabels": (
        "tests/data/test_importers_products.py::test_scl_scenes_wait_for_curation",
        "tests/sentinel2/test_reader.py::test_safe_finds_band_files_metadata_and_offset",
    ),
    "cloudfree-import s2cloudless S2A_MSIL1C_...SAFE --out data/mylabels": (
        "tests/test_readme_commands.py::test_import_s2cloudless_labels_from_an_l1c_safe",
    ),
    "cloudfree-import ukis S2B_MSIL2A_...SAFE --out data/mylabels": (
        "tests/inference/test_detector_producers.py::test_importers_take_detector_labels",
    ),
    "cloudfree-import curate data/mylabels --curation curation.csv": (
        "tests/data/test_importers_products.py::test_curate_an_existing_dataset",
    ),
    "cloudfree-import cloud-s2 /data/copernicus_bench --out data/cloud_s2": (
        "tests/data/test_importers_public.py::test_cloud_s2_published_split_kept_on_request",
    ),
    "cloudfree-dataset-split data/mylabels": (
        "tests/data/test_splits.py::test_cli_stores_splits_in_the_manifest",
    ),
    "cloudfree-dataset-summary data/mylabels": (
        "tests/data/test_summary.py::test_command_writes_json_and_picture",
    ),
    # -- README.md: train (the GPU setups compose; on CPU they run as fast_dev_run)
    "python train.py experiment=vit_b16 data.root=data/mylabels": (
        "tests/test_train_vit_b16.py::test_vit_b16_without_weights_stops_naming_the_option_and_the_file",
        "tests/test_train_vit_b16.py::test_vit_b16_trains_from_a_local_imagenet_style_file",
        "tests/test_configs.py::test_experiments_hold_their_setups",
    ),
    "evaluation=none": (
        "tests/composite/test_evidence.py::test_evaluation_none_composites_the_stack_once",
    ),
    "composite.q=abc": (
        "tests/test_composite_cli.py::test_config_type_errors_name_the_key_the_value_and_the_type",
    ),
    "trainer=gpu": (
        "tests/test_readme_commands.py::test_gpu_and_ddp_trainers_compose_to_lightning_arguments",
    ),
    "experiment=vit_s16_ssl4eo": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[vit_s16_ssl4eo]",
        "tests/models/test_pretrained_loading.py::test_ssl4eo_weights_from_the_torch_hub_cache_subset_to_l2a",
    ),
    "experiment=linear_probe": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[linear_probe]",
        "tests/models/test_pretrained_loading.py::test_ssl4eo_weights_from_the_torch_hub_cache_subset_to_l2a",
    ),
    "trainer=ddp trainer.devices=4": (
        "tests/test_readme_commands.py::test_gpu_and_ddp_trainers_compose_to_lightning_arguments",
    ),
    "model.segmenter.pretrained=file model.segmenter.weights_path=/weights/vit_b16.pth": (
        "tests/test_train_vit_b16.py::test_vit_b16_trains_from_a_local_imagenet_style_file",
    ),
    "model.segmenter.pretrained=none": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run",
    ),
    # -- README.md: W&B (login and upload need a W&B key: the offline side is tested)
    "wandb login": ("tests/test_wandb_mode.py::test_online_with_a_netrc_entry_for_the_wandb_host",),
    "wandb sync": (
        "tests/test_train.py::test_short_run_logs_metrics_and_overlays_to_offline_wandb",
    ),
    # -- README.md: masks on scenes
    "cloudfree-predict outputs/.../best.ckpt S2A_MSIL1C_...SAFE --out masks/ --resolution 20": (
        "tests/test_readme_commands.py::test_predict_masks_of_an_l1c_safe_at_20m",
        "tests/inference/test_inference_cli.py::test_predict_writes_each_scene_and_can_continue",
    ),
    "cloudfree-evaluate-masks --data data/mylabels --checkpoint outputs/.../best.ckpt "
    "--producers model s2cloudless scl threshold --out outputs/mask_evaluation": (
        "tests/test_readme_commands.py::test_evaluate_masks_with_the_four_producers",
    ),
    "cloudfree-evaluate-masks --scenes ../shared/realdata --model demo=outputs/.../best.ckpt "
    "--out outputs/real_masks": (
        "tests/inference/test_inference_cli.py::test_evaluate_masks_on_real_scenes_against_the_detectors",
        "tests/inference/test_real_scenes.py::test_skipped_and_failing_producers_do_not_lose_the_others",
    ),
    "masks.source=ocm +masks.producer_options.ocm.weights=/weights/omnicloudmask": (
        "tests/composite/test_detector_masks.py::test_ocm_weights_come_from_the_composite_config",
    ),
    "python experiments/real_masks.py": (
        "tests/inference/test_real_scenes.py::test_the_record_script_writes_its_readme",
    ),
    # -- README.md: composite a stack
    "python composite.py ckpt=outputs/.../best.ckpt stack.source=/data/scenes/": (
        "tests/test_readme_commands.py::test_composite_a_folder_of_scenes_with_a_checkpoint",
    ),
    "python composite.py masks.source=scl "
    "stack.source=../shared/realdata/l2a-29RKH-20200219/item.json": (
        "tests/test_composite_cli.py::test_cli_runs_from_the_real_stac_item_with_scl_masks",
    ),
    "python composite.py masks.source=ukis "
    "stack.source=../shared/realdata/l2a-29RKH-20200219/item.json": (
        "tests/composite/test_detector_masks.py::test_ukis_masks_a_real_stack_end_to_end",
    ),
    "python composite.py ckpt=best.ckpt stack.source=https://earth-search.aws.element84.com/v1 "
    "stack.tile=29RKH stack.years=[2019,2020,2021,2022,2023] stack.months=[6,7,8] "
    "stack.max_cloud_cover=60": (
        "tests/test_readme_commands.py::test_composite_a_stac_api_search_by_tile_years_and_months",
    ),
    "masks.inference.rule.clear_threshold=0.9": (
        "tests/composite/test_masking.py::test_clear_threshold_is_a_composite_config_key",
        "tests/composite/test_masking.py::test_model_masks_made_with_another_clear_threshold_are_not_reused",
    ),
    "cluster=localcluster": (
        "tests/test_readme_commands.py::test_composite_on_dask_clusters_matches_the_local_run",
        "tests/composite/test_driver.py::test_simulated_stack_on_worker_processes_matches_the_local_run",
    ),
    "cluster=address cluster.address=tcp://scheduler:8786": (
        "tests/test_readme_commands.py::test_composite_on_dask_clusters_matches_the_local_run",
    ),
    # -- README.md: benchmarks (full size takes minutes: smoke-sized runs, marked slow)
    "python experiments/bench_percentile.py": (
        "tests/test_readme_commands.py::test_benchmark_scripts_run_small",
    ),
    "python experiments/bench_inference.py": (
        "tests/test_readme_commands.py::test_benchmark_scripts_run_small",
        "tests/inference/test_bench_inference.py::test_simulated_tile_has_native_resolutions_clouds_and_a_swath_edge",
    ),
    "python experiments/bench_training.py": (
        "tests/test_readme_commands.py::test_benchmark_scripts_run_small",
        "tests/test_bench_training.py::test_measures_the_demo_steps_consistently",
    ),
    "python experiments/bench_composite.py": (
        "tests/test_readme_commands.py::test_benchmark_scripts_run_small",
    ),
    # -- conf/README.md
    "python train.py": ("tests/test_configs.py::test_default_data_root_and_monitor",),
    "cloudfree-simulate labeled --out data/simulated/labeled": (
        "tests/test_readme_commands.py::test_simulate_a_labeled_set_from_the_command_line",
        "tests/test_readme_commands.py::test_make_demo_steps_are_valid_commands",
    ),
    "python train.py experiment=demo": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[demo]",
        "tests/test_readme_commands.py::test_make_demo_steps_are_valid_commands",
    ),
    "python train.py experiment=vit_b16 data.root=/data/labeled": (
        "tests/test_train_vit_b16.py::test_vit_b16_trains_from_a_local_imagenet_style_file",
    ),
    "python train.py experiment=vit_s16_ssl4eo data.root=/data/labeled": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[vit_s16_ssl4eo]",
        "tests/models/test_pretrained_loading.py::test_ssl4eo_weights_from_the_torch_hub_cache_subset_to_l2a",
    ),
    "python train.py experiment=linear_probe data.root=/data/labeled": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[linear_probe]",
        "tests/models/test_pretrained_loading.py::test_ssl4eo_weights_from_the_torch_hub_cache_subset_to_l2a",
    ),
    "python train.py experiment=vit_b16 debug=fdr": (
        "tests/test_train.py::test_every_experiment_runs_a_fast_dev_run[vit_b16]",
        "tests/test_train_vit_b16.py::test_vit_b16_without_weights_stops_naming_the_option_and_the_file",
    ),
    "python train.py experiment=vit_b16 "
    "ckpt_path=outputs/vit_b16/runs/<time>/checkpoints/last.ckpt logger.wandb.id=<run id>": (
        "tests/test_readme_commands.py::test_resume_a_run_from_its_last_checkpoint_and_wandb_id",
        "tests/test_readme_commands.py::test_last_checkpoint_holds_the_last_epoch",
    ),
    "monitor.metric=val/miou": (
        "tests/test_readme_commands.py::test_monitor_metric_override_moves_the_checkpoint_monitor",
    ),
    "wandb sync outputs/.../wandb/offline-run-...": (
        "tests/test_train.py::test_short_run_logs_metrics_and_overlays_to_offline_wandb",
    ),
    "python train.py -m experiment=vit_s16_ssl4eo model.lr=5e-5,1e-4,2e-4 "
    "model.layer_decay=0.65,0.75": (
        "tests/test_readme_commands.py::test_readme_sweep_expands_to_six_composable_jobs",
        "tests/test_train.py::test_cli_multirun_over_learning_rates",
    ),
    "wandb sweep conf/wandb_sweep.yaml": (
        "tests/test_configs.py::test_wandb_sweep_optimises_a_logged_metric_with_valid_overrides",
    ),
    "wandb agent <entity>/cloudfree/<sweep id>": (
        "tests/test_configs.py::test_wandb_sweep_optimises_a_logged_metric_with_valid_overrides",
    ),
}


#: Inline code starting with one of these and a word is a command (`wandb login`, not `wandb`).
PROGRAMS = re.compile(r"^(make|python|wandb|cloudfree-[a-z-]+) \S")
OVERRIDE = re.compile(r"^\+?([a-z_]\w*)(\.[\w]+)*=\S*$")


# -- the registry ---------------------------------------------------------------------------------


def normalise(line: str) -> str:
    """A command line as the registry spells it: words joined by one space, comment dropped."""
    return " ".join(shlex.split(line, comments=True))


def bash_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks in ``text``, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if command := normalise(line):
                commands.append(command)
    return commands


def config_top_keys() -> set[str]:
    """Top-level keys of train.yaml and composite.yaml, and the config groups (``experiment``
    and ``debug`` are ``_global_`` packages: no key of their own)."""
    groups = {path.name for path in (REPO / "conf").iterdir() if path.is_dir()}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        keys = {key for name in ("train", "composite") for key in compose(config_name=name)}
    return keys | groups


def inline_commands(text: str, top_keys: set[str]) -> list[str]:
    """Inline code that is a command: it starts with a program, or every word is an override of
    a config key (``trainer=ddp trainer.devices=4``; not ``key=value`` or ``WANDB_MODE=...``)."""
    commands = []
    for span in re.findall(r"`([^`\n]+)`", text):
        words = span.split()
        overrides = [OVERRIDE.match(word) for word in words]
        if PROGRAMS.match(span) or (words and all(m and m.group(1) in top_keys for m in overrides)):
            commands.append(span)
    return commands


def test_every_readme_command_names_the_tests_that_run_it():
    top_keys = config_top_keys()
    shown = []
    for readme in READMES:
        text = readme.read_text()
        shown += bash_commands(text) + inline_commands(text, top_keys)
    untested = sorted(set(shown) - set(README_COMMANDS))
    assert not untested, f"README commands without a test in README_COMMANDS: {untested}"
    gone = sorted(set(README_COMMANDS) - set(shown))
    assert not gone, f"README_COMMANDS lists commands the READMEs no longer show: {gone}"
    for command, tests in README_COMMANDS.items():
        assert tests, command
        for node in tests:
            path, _, name = node.partition("::")
            function = name.partition("[")[0]
            assert f"def {function}(" in (REPO / path).read_text(), f"{command}: no {node}"


def test_inline_commands_are_found_and_plain_words_are_not():
    text = "run `make demo` with `wandb`, set `trainer=ddp trainer.devices=4`, not `key=value`"
    text += " or `WANDB_MODE=offline`"
    assert inline_commands(text, {"trainer"}) == ["make demo", "trainer=ddp trainer.devices=4"]
    block = "```bash\nmake demo   # all\npython a.py x=1 \\\n    y=[1,2]\n```\n"
    assert bash_commands(block) == ["make demo", "python a.py x=1 y=[1,2]"]


# -- make ------------------------------------------------------------------------------------------


def make_dry_run(*arguments: str) -> str:
    """The commands ``make -n ARGUMENTS`` prints, continuation lines joined (run in the repo)."""
    completed = subprocess.run(
        ["make", "-n", *arguments], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.replace("\\\n", " ")


@pytest.fixture
def make():
    """Skips the test where ``make`` is not installed."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")


def test_make_targets_exist(make):
    make_dry_run("setup")  # exits 0: the target exists
    assert "-m pytest" in make_dry_run("test")
    assert "-m pytest -m slow" in make_dry_run("test-slow")
    assert "-m cloudseg.data.realdata demo --realdata" in make_dry_run("demo-data")


def compose_command(config_name: str, overrides: list[str]) -> tuple[DictConfig, str]:
    """``conf/<config_name>.yaml`` with a command line's overrides, and its ``hydra.run.dir``."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    run_dir = cfg.hydra.run.dir
    with open_dict(cfg):
        del cfg.hydra
    return cfg, run_dir


def test_make_demo_steps_are_valid_commands(make, tmp_path, load_experiment):
    """`make -n demo`: each step parses or composes, and each uses what the previous wrote."""
    data, out = tmp_path / "simulated", tmp_path / "demo"
    best = out / "train" / "checkpoints" / "best-epoch005.ckpt"
    best.parent.mkdir(parents=True)  # the checkpoint the composite steps read from metrics.json
    best.touch()  # (the composite's settings check that it exists)
    (out / "train" / "metrics.json").write_text(json.dumps({"best_checkpoint": str(best)}))
    (out / "composite_a").mkdir()  # tile_b's seam check needs tile_a's composite to exist
    (out / "composite_a" / "composite.tif").touch()
    script = make_dry_run(
        "demo", f"DEMO_DATA={data}", f"DEMO_OUT={out}", f"DEMO_RECORD={tmp_path / 'record'}"
    )
    simulate, composites, steps = {}, {}, []
    for words in map(shlex.split, script.splitlines()):
        if words and words[0].endswith("/cloudfree-simulate"):
            args = simulate_parser().parse_args(words[1:])
            simulate[args.command] = args
        elif words[1:2] == ["train.py"]:
            train_cfg, train_dir = compose_command("train", words[2:])
        elif words[1:2] == ["composite.py"]:
            cfg, run_dir = compose_command("composite", words[2:])
            composites[Path(run_dir).name] = (settings_from_config(cfg), cfg)
        elif words[1:2] == ["experiments/demo_report.py"]:
            report = load_experiment("demo_report").build_parser().parse_args(words[2:])
        else:
            continue
        steps.append(words[1] if words[0].endswith("python") else words[0])
    assert len(steps) == 6, script  # simulate x2, train, composite x2, report
    assert (simulate["labeled"].n_scenes, simulate["tiles"].n_dates) == (100, 100)
    assert train_cfg.data.root == str(simulate["labeled"].out)
    assert train_cfg.task_name == "demo"
    assert Path(train_dir) == out / "train"
    (a, a_cfg), (b, b_cfg) = composites["composite_a"], composites["composite_b"]
    assert a.masks.checkpoint == b.masks.checkpoint == str(best)
    assert a.stack.source == str(simulate["tiles"].out / "tile_a")
    assert b.stack.source == str(simulate["tiles"].out / "tile_b")
    assert b_cfg.evaluation.compare_with == str(out / "composite_a" / "composite.tif")
    assert list(a_cfg.evaluation.baselines) == ["none", "s2cloudless"]
    assert (report.train, report.composite, report.neighbour) == (
        out / "train",
        out / "composite_a",
        out / "composite_b",
    )


def test_make_demo_writes_only_outputs_and_data_and_demo_record_writes_the_record(make, tmp_path):
    """`make demo` reads the committed record and writes under DEMO_OUT/DEMO_DATA only;
    `make demo-record` runs the demo's chain, the same with two more seeds, and writes the record
    of the demo's run."""
    data, out = tmp_path / "simulated", tmp_path / "demo"
    demo = make_dry_run("demo", f"DEMO_DATA={data}", f"DEMO_OUT={out}")
    written = re.findall(r"(?:--out |hydra\.run\.dir=|_dir=|--write-record )(\S+)", demo)
    assert len(written) == 9 and all(Path(p).is_relative_to(tmp_path) for p in written), written
    assert "--write-record" not in demo and "--committed experiments/demo" in demo
    record = make_dry_run("demo-record", f"DEMO_DATA={data}")
    runs = re.findall(r"train\.py .* seed=(\d+) +hydra\.run\.dir=(\S+)/train", record)
    assert runs == [("42", "outputs/demo"), ("43", "outputs/demo-seed43"),
                    ("44", "outputs/demo-seed44")]  # fmt: skip
    report = record.split("experiments/demo_report.py")[-1]
    assert "--train outputs/demo/train" in report
    assert "--seed-runs outputs/demo outputs/demo-seed43 outputs/demo-seed44" in report
    assert report.rstrip().endswith("--write-record experiments/demo")


# -- labels in, masks on scenes ---------------------------------------------------------------------

L1C_SAFE = "S2A_MSIL1C_20150726T105026_N0204_R051_T31TDH_20150726T105026.SAFE"
L1C_GRANULE = "L1C_T31TDH_A000734_20150726T105026"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny-ViT checkpoint (random weights) on B02, B03, B04, B08, B11, as training writes it."""
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.ckpt")


@pytest.fixture
def l1c_safe(realdata, tmp_path) -> Path:
    """The real L1C clip as a SAFE: its JP2 band files linked into GRANULE/<id>/IMG_DATA."""
    safe = tmp_path / L1C_SAFE
    image_data = safe / "GRANULE" / L1C_GRANULE / "IMG_DATA"
    image_data.mkdir(parents=True)
    for band_file in (realdata / "l1c-T31TDH-20150726").glob("*.jp2"):
        (image_data / band_file.name).symlink_to(band_file)
    return safe


def test_simulate_a_labeled_set_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "simulated" / "labeled"
    argv = ["labeled", "--out", str(out), "--n-scenes", "2", "--size", "64", "--no-progress"]
    assert simulate_main(argv) == 0
    manifest = read_manifest(out)
    assert len(manifest) == 2 and set(manifest["bands"]) == {" ".join(L1C_BANDS)}
    assert all((out / path).is_file() for path in [*manifest["image_path"], *manifest["mask_path"]])
    assert f"in {out}" in capsys.readouterr().out


def test_import_s2cloudless_labels_from_an_l1c_safe(l1c_safe, tmp_path):
    out = tmp_path / "mylabels"
    import_main(["s2cloudless", str(l1c_safe), "--out", str(out)])
    (row,) = read_manifest(out).to_dict("records")
    assert (row["site"], row["date"], row["label_source"], row["curation"]) == (
        "31TDH", "2015-07-26", "s2cloudless", "pending",
    )  # fmt: skip
    assert row["bands"].split() == list(L1C_BANDS)
    with rasterio.open(out / row["mask_path"]) as mask:
        assert mask.res == (20.0, 20.0) and mask.shape == (150, 150)  # the default 20 m


def test_predict_masks_of_an_l1c_safe_at_20m(checkpoint, l1c_safe, tmp_path):
    out = tmp_path / "masks"
    argv = [str(checkpoint), str(l1c_safe), "--out", str(out), "--resolution", "20"]
    assert predict_main(argv) == 0
    with rasterio.open(out / f"{l1c_safe.stem}_classes.tif") as classes:
        assert classes.crs.to_epsg() == 32631 and classes.res == (10.0, 10.0)
        assert classes.shape == (300, 300)  # the scene's own 10 m grid
        assert classes.tags()["INFERENCE_RESOLUTION"] == "20"
        assert set(np.unique(classes.read(1))) <= {0, 1, 2, 3}
    with rasterio.open(out / f"{l1c_safe.stem}_probabilities.tif") as probabilities:
        assert probabilities.count == 4


def test_evaluate_masks_with_the_four_producers(checkpoint, tiny_dataset, tmp_path):
    out = tmp_path / "mask_evaluation"
    argv = ["--data", str(tiny_dataset), "--checkpoint", str(checkpoint)]
    argv += ["--producers", "model", "s2cloudless", "scl", "threshold", "--out", str(out)]
    assert evaluate_main(argv) == 0
    producers = json.loads((out / "metrics.json").read_text())["producers"]
    assert list(producers) == ["model", "s2cloudless", "scl", "threshold"]
    for name in ("model", "s2cloudless", "threshold"):
        assert producers[name]["scenes"] == 1, name  # the one test scene
    # L1C scenes have no SCL: the table says so instead of scoring nothing
    assert producers["scl"]["scenes"] == 0
    assert producers["scl"]["skipped_scenes"] == {"site-d_20200101": ["SCL"]}
    assert "scl: 1 scenes lack SCL" in (out / "metrics.md").read_text()


# -- train ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer=gpu"], {"accelerator": "gpu", "devices": 1, "precision": "16-mixed"}),
        (
            ["trainer=ddp", "trainer.devices=4"],
            {"strategy": "ddp", "accelerator": "gpu", "devices": 4, "sync_batchnorm": True},
        ),
    ],
)
def test_gpu_and_ddp_trainers_compose_to_lightning_arguments(overrides, expected):
    """No GPU here: the options compose to Trainer arguments Lightning knows, and the same
    arguments on CPU (4 processes for DDP) build a Trainer with the expected strategy."""
    cfg = compose_resolved(["experiment=vit_b16", *overrides, "paths.output_dir=/runs/one"])
    arguments = OmegaConf.to_container(cfg.trainer)
    del arguments["_target_"]
    assert {key: arguments[key] for key in expected} == expected
    assert set(arguments) <= set(inspect.signature(Trainer.__init__).parameters)
    on_cpu = {**arguments, "accelerator": "cpu", "precision": "32-true", "logger": False}
    trainer = Trainer(**on_cpu, enable_checkpointing=False, enable_progress_bar=False)
    assert type(trainer.strategy).__name__ == (
        "DDPStrategy" if "strategy" in expected else "SingleDeviceStrategy"
    )
    assert trainer.num_devices == expected["devices"]


#: `experiment=demo debug=limit` (2 epochs) shrunk to the tiny set.
TWO_EPOCHS = ["experiment=demo", "debug=limit", *TINY_SHRINK]


@pytest.fixture(scope="module")
def two_epoch_run(tiny_dataset, tmp_path_factory) -> dict:
    """metrics.json of a 2-epoch run on the tiny set, logged to an offline W&B run."""
    folder = tmp_path_factory.mktemp("two_epochs")
    train(compose_train([*TWO_EPOCHS, f"data.root={tiny_dataset}"], folder))
    return json.loads((folder / "metrics.json").read_text())


def test_resume_a_run_from_its_last_checkpoint_and_wandb_id(
    two_epoch_run,
    tiny_dataset,
    tmp_path,
):
    """`ckpt_path=<last.ckpt> logger.wandb.id=<run id>` with a third epoch: training goes on
    from the checkpoint's epoch (not from scratch) and logs to the same W&B run."""
    run_id = Path(two_epoch_run["wandb"]["run_dir"]).name.rpartition("-")[2]
    last = two_epoch_run["last_checkpoint"]
    resume = [f"ckpt_path={last}", f"logger.wandb.id={run_id}", "trainer.max_epochs=3"]
    train(compose_train([*TWO_EPOCHS, f"data.root={tiny_dataset}", *resume], tmp_path))
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    run_dir = Path(resumed["wandb"]["run_dir"])
    assert run_dir.name.endswith(f"-{run_id}")
    history = wandb_history(read_wandb_records(run_dir))
    saved_epoch = torch.load(last, weights_only=False)["epoch"]
    assert len(history["train/loss_epoch"]) == 3 - (saved_epoch + 1)  # the epochs after it


def test_last_checkpoint_holds_the_last_epoch(two_epoch_run):
    checkpoint = torch.load(two_epoch_run["last_checkpoint"], weights_only=False)
    assert checkpoint["epoch"] == 1  # the second of two epochs, what a resume continues from


def test_readme_sweep_expands_to_six_composable_jobs():
    (command,) = [c for c in README_COMMANDS if c.startswith("python train.py -m ")]
    overrides = OverridesParser.create().parse_overrides(command.split()[3:])
    (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    values = set()
    for job in jobs:
        cfg = compose_resolved(job)
        assert cfg.task_name == "vit_s16_ssl4eo"
        values.add((cfg.model.lr, cfg.model.layer_decay))
    assert values == {(lr, decay) for lr in (5e-5, 1e-4, 2e-4) for decay in (0.65, 0.75)}


def test_monitor_metric_override_moves_the_checkpoint_monitor():
    cfg = compose_resolved(["monitor.metric=val/miou"])
    assert cfg.callbacks.model_checkpoint.monitor == "val/miou"
    assert cfg.callbacks.model_checkpoint.mode == "max"


# -- composite a stack ------------------------------------------------------------------------------

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """A folder of 4 simulated L1C scenes, 64 x 64 px (with stack.json and truth/)."""
    folder = tmp_path_factory.mktemp("scenes")
    write_stack(folder, n_dates=4, size=64, seed=0, progress=False)
    return folder


@pytest.fixture
def stac_api(monkeypatch):
    """``serve(items)``: pystac_client searches answer ``items``; returns the URLs opened and
    the search arguments, appended as the composite asks."""
    calls = {"opened": [], "searches": []}

    class Search:
        def __init__(self, items):
            self._items = items

        def items(self):
            return iter(self._items)

    def serve(items: list[pystac.Item]) -> dict[str, list]:
        class Client:
            def search(self, **kwargs):
                calls["searches"].append(kwargs)
                return Search(items)

        def open_client(cls, url):
            calls["opened"].append(url)
            return Client()

        monkeypatch.setattr(pystac_client.Client, "open", classmethod(open_client))
        return calls

    return serve


def test_composite_a_folder_of_scenes_with_a_checkpoint(checkpoint, scenes, tmp_path):
    overrides = [f"ckpt={checkpoint}", f"stack.source={scenes}/"]
    overrides += ["masks.inference.device=cpu", "masks.inference.resolution=20"]  # as the demo
    overrides += [
        "masks.inference.rule.clear_threshold=null"
    ]  # untrained: p(clear) < 0.9 everywhere
    result = run_composite(compose_composite(overrides, tmp_path))
    record = result.record
    assert len(record["stack"]["dates"]) == 4
    assert (record["masks"]["source"], record["masks"]["computed"]) == ("model", 4)
    out = tmp_path / "out"
    for name in ("composite.tif", "count.tif", "run.json", "composite_rgb.png",
                 "composite_gray.png", "map.html", "metrics.json", "metrics.md"):  # fmt: skip
        assert (out / name).is_file(), name
    table = json.loads((out / "metrics.json").read_text())
    # the default baselines that apply to L1C scenes (no SCL here), and the simulated truth
    assert {"composite", "baseline_none", "baseline_s2cloudless"} <= set(table)
    assert {"residual_cloud", "model_residual_cloud"} <= set(table["composite"])


def test_composite_whose_every_observation_is_masked_says_so_instead_of_failing(
    checkpoint, scenes, tmp_path, caplog
):
    """The untrained checkpoint's p(clear) stays below the default clear_threshold (0.9): every
    observation is masked, the composite is all nodata, and the metrics say why they are empty."""
    overrides = [f"ckpt={checkpoint}", f"stack.source={scenes}/", "masks.inference.device=cpu"]
    overrides += ["masks.inference.resolution=20", "evaluation.baselines=[]"]
    run_composite(compose_composite(overrides, tmp_path))
    table = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert table["composite"] == {
        "share_clear_obs_0": 1.0, "share_clear_obs_1_2": 0.0, "share_clear_obs_3plus": 0.0
    }  # fmt: skip
    assert "has no valid pixel: every observation was masked" in caplog.text


def test_composite_a_stac_api_search_by_tile_years_and_months(
    checkpoint, realdata, stac_api, tmp_path
):
    february = pystac.Item.from_file(str(realdata / REAL_ITEM))
    february.make_asset_hrefs_absolute()
    july = february.clone()
    july.id = "S2A_29RKH_20200719_0_L2A"
    july.datetime = dt.datetime(2020, 7, 19, 11, 34, tzinfo=dt.UTC)
    calls = stac_api([february, july])
    readme = [
        f"ckpt={checkpoint}", f"stack.source={EARTH_SEARCH}", "stack.tile=29RKH",
        "stack.years=[2019,2020,2021,2022,2023]", "stack.months=[6,7,8]",
        "stack.max_cloud_cover=60",
    ]  # fmt: skip
    small = [
        "masks.inference.resolution=600", "masks.inference.window_size=64",
        "masks.inference.device=cpu", "composite.bands=[B04,B08]", "composite.resolution=600",
        "evaluation.baselines=[none]",
    ]  # fmt: skip
    record = run_composite(compose_composite(readme + small, tmp_path)).record
    assert calls["opened"] == [EARTH_SEARCH]
    (search,) = calls["searches"]
    assert search["collections"] == ["sentinel-2-l2a"]
    assert search["datetime"] == "2019-01-01/2023-12-31"
    assert search["query"] == {"eo:cloud_cover": {"lte": 60}, "grid:code": {"eq": "MGRS-29RKH"}}
    assert record["stack"]["dates"] == ["2020-07-19"]  # February is not in [6, 7, 8]
    assert record["stack"]["filtered"] == {"months": 1}
    assert (record["masks"]["source"], record["masks"]["computed"]) == ("model", 1)
    assert (tmp_path / "out" / "composite.tif").is_file()


def read_raster(path: Path) -> np.ndarray:
    """Every band of a raster file."""
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_composite_on_dask_clusters_matches_the_local_run(scenes, tmp_path):
    """`cluster=address` to a scheduler started here (standing in for tcp://scheduler:8786) and
    `cluster=localcluster` give the local run's composite, count and provenance. The
    LocalCluster runs its workers as threads here: on worker processes this run took 17 s, most
    of it starting and stopping them (tests/composite/test_driver.py runs them, marked slow)."""
    from distributed import LocalCluster

    common = [f"stack.source={scenes}", "masks.source=none", "composite.window_size=32",
              "composite.method=nearest", "evaluation.baselines=[]"]  # fmt: skip

    def run(name: str, *cluster: str) -> dict:
        overrides = [*common, *cluster, f"out_dir={tmp_path / name}"]
        return run_composite(compose_composite(overrides, tmp_path)).record

    local = run("local")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as scheduler:
        address = run(
            "address", "cluster=address", f"cluster.address={scheduler.scheduler_address}"
        )
    localcluster = run("localcluster", "cluster=localcluster", "cluster.processes=false")
    records = (local, address, localcluster)
    assert [r["cluster"]["mode"] for r in records] == ["local", "address", "localcluster"]
    assert localcluster["cluster"]["workers"] == 2
    for record in records:  # each computed every window itself
        assert record["windows"]["computed"] == record["windows"]["total"] == 4
    for name in ("composite.tif", "count.tif", "provenance.tif"):
        expected = read_raster(tmp_path / "local" / name)
        np.testing.assert_array_equal(read_raster(tmp_path / "address" / name), expected, name)
        np.testing.assert_array_equal(read_raster(tmp_path / "localcluster" / name), expected, name)


def test_dask_cluster_options_compose(tmp_path):
    readme = ["cluster=address", "cluster.address=tcp://scheduler:8786"]
    cfg = compose_composite(["stack.source=x", "masks.source=none", *readme], tmp_path)
    cluster = settings_from_config(cfg).cluster
    assert (cluster.mode, cluster.address) == ("address", "tcp://scheduler:8786")


# -- benchmarks -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_benchmark_scripts_run_small(tmp_path):
    """The benchmark scripts end to end on small cases (the full runs take minutes)."""
    commands = {
        "bench_percentile.py": f"--quick --dates 6 --record {tmp_path / 'p.md'}",
        "bench_inference.py": f"--size 216 --out {tmp_path / 'inference'} --workdir {tmp_path}",
        "bench_composite.py": f"--quick --cache {tmp_path / 'stacks'} --out {tmp_path / 'c.md'}",
        "bench_training.py": f"--experiments demo --warmup 1 --steps 2 --out {tmp_path / 't'}",
    }
    for script, arguments in commands.items():
        completed = subprocess.run(
            [sys.executable, f"experiments/{script}", *arguments.split()],
            cwd=REPO, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr[-3000:]
    assert "## Ratios" in (tmp_path / "p.md").read_text()
    record = json.loads((tmp_path / "inference.json").read_text())
    assert record["size"] == 216 and len(record["results"]) == 5
    assert "s / scene-Mpx" in (tmp_path / "c.md").read_text()
    assert json.loads((tmp_path / "t.json").read_text())
