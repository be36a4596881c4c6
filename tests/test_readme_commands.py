"""Every command README.md and conf/README.md show is run by a test, or by `make demo`.

``README_COMMANDS`` maps each command line of the READMEs (```bash blocks, and inline code that
starts with a program or is a run of config overrides) to the tests that run it or, where it
needs a GPU, several GPUs, internet or a W&B key, to the tests that compose and check it.
``test_every_readme_command_names_the_tests_that_run_it`` fails when a README gains a command
that is not in the registry, or the registry names a command or a test that no longer exists.

The other tests here cover the make targets (the `make demo` steps as a dry run); the other
commands' end-to-end tests live in the packages they exercise (tests/*/test_*_commands.py,
tests/test_train_commands.py, tests/test_benchmark_scripts.py).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cloudseg.data.simulate.cli import build_parser as simulate_parser
from composite.run import settings_from_config

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
    "python train.py experiment=demo data.bands=[B02,B03,B04,B08,B11,B12] data.patch_size=96": (
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
        "tests/data/test_data_commands.py::test_import_s2cloudless_labels_from_an_l1c_safe",
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
        "tests/test_train_commands.py::test_gpu_and_ddp_trainers_compose_to_lightning_arguments",
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
        "tests/test_train_commands.py::test_gpu_and_ddp_trainers_compose_to_lightning_arguments",
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
        "tests/inference/test_mask_commands.py::test_predict_masks_of_an_l1c_safe_at_20m",
        "tests/inference/test_inference_cli.py::test_predict_writes_each_scene_and_can_continue",
    ),
    "cloudfree-evaluate-masks --data data/mylabels --checkpoint outputs/.../best.ckpt "
    "--producers model s2cloudless scl threshold --out outputs/mask_evaluation": (
        "tests/inference/test_mask_commands.py::test_evaluate_masks_with_the_four_producers",
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
        "tests/composite/test_composite_commands.py::test_composite_a_folder_of_scenes_with_a_checkpoint",
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
        "tests/composite/test_composite_commands.py::test_composite_a_stac_api_search_by_tile_years_and_months",
    ),
    "masks.temporal_test.haze_ratio=null": (
        "tests/composite/test_temporal.py::test_haze_guard_keeps_hazy_views_and_still_flags_clouds",
        "tests/composite/test_temporal_composite.py::test_haze_guard_is_on_by_default_and_off_from_the_command_line",
    ),
    "masks.temporal=veto": (
        "tests/composite/test_temporal_composite.py::test_masks_temporal_picks_the_rule_and_veto_is_the_default",
        "tests/composite/test_temporal_composite.py::test_windowed_temporal_composite_equals_the_whole_stack",
    ),
    "masks.temporal=none": (
        "tests/composite/test_temporal_composite.py::test_masks_temporal_picks_the_rule_and_veto_is_the_default",
        "tests/composite/test_evidence.py::test_the_temporal_baseline_is_the_test_alone_and_single_date_baselines_are_masks_alone",
    ),
    "masks.inference.rule.clear_threshold=0.9": (
        "tests/composite/test_masking.py::test_clear_threshold_is_a_composite_config_key",
        "tests/composite/test_masking.py::test_model_masks_made_with_another_clear_threshold_are_not_reused",
    ),
    "cluster=localcluster": (
        "tests/composite/test_composite_commands.py::test_composite_on_dask_clusters_matches_the_local_run",
        "tests/composite/test_driver.py::test_simulated_stack_on_worker_processes_matches_the_local_run",
    ),
    "cluster=address cluster.address=tcp://scheduler:8786": (
        "tests/composite/test_composite_commands.py::test_composite_on_dask_clusters_matches_the_local_run",
    ),
    # -- README.md: benchmarks (full size takes minutes: smoke-sized runs, marked slow)
    "python experiments/bench_percentile.py": (
        "tests/test_benchmark_scripts.py::test_benchmark_scripts_run_small",
    ),
    "python experiments/bench_inference.py": (
        "tests/test_benchmark_scripts.py::test_benchmark_scripts_run_small",
        "tests/inference/test_bench_inference.py::test_simulated_tile_has_native_resolutions_clouds_and_a_swath_edge",
    ),
    "python experiments/bench_training.py": (
        "tests/test_benchmark_scripts.py::test_benchmark_scripts_run_small",
        "tests/test_bench_training.py::test_measures_the_demo_steps_consistently",
    ),
    "python experiments/bench_composite.py": (
        "tests/test_benchmark_scripts.py::test_benchmark_scripts_run_small",
    ),
    # -- conf/README.md
    "python train.py": ("tests/test_configs.py::test_default_data_root_and_monitor",),
    "cloudfree-simulate labeled --out data/simulated/labeled": (
        "tests/data/test_data_commands.py::test_simulate_a_labeled_set_from_the_command_line",
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
        "tests/test_train_commands.py::test_resume_a_run_from_its_last_checkpoint_and_wandb_id",
        "tests/test_train_commands.py::test_last_checkpoint_holds_the_last_epoch",
    ),
    "monitor.metric=val/miou": (
        "tests/test_train_commands.py::test_monitor_metric_override_moves_the_checkpoint_monitor",
    ),
    "wandb sync outputs/.../wandb/offline-run-...": (
        "tests/test_train.py::test_short_run_logs_metrics_and_overlays_to_offline_wandb",
    ),
    "python train.py -m experiment=vit_s16_ssl4eo model.lr=5e-5,1e-4,2e-4 "
    "model.layer_decay=0.65,0.75": (
        "tests/test_train_commands.py::test_readme_sweep_expands_to_six_composable_jobs",
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
    assert len(written) == 10 and all(Path(p).is_relative_to(tmp_path) for p in written), written
    assert "--scenes ../shared/realdata --model demo=" in demo  # the real scenes, when there
    assert f"--out {out}/real_scenes" in demo
    assert "--write-record" not in demo and "--committed experiments/demo" in demo
    record = make_dry_run("demo-record", f"DEMO_DATA={data}")
    runs = re.findall(r"train\.py .* seed=(\d+) +hydra\.run\.dir=(\S+)/train", record)
    assert runs == [("42", "outputs/demo"), ("43", "outputs/demo-seed43"),
                    ("44", "outputs/demo-seed44")]  # fmt: skip
    report = record.split("experiments/demo_report.py")[-1]
    assert "--train outputs/demo/train" in report
    assert "--seed-runs outputs/demo outputs/demo-seed43 outputs/demo-seed44" in report
    assert "--write-record experiments/demo\n" in report
    assert "cp -r outputs/demo/real_scenes experiments/demo/real_scenes" in report
