"""train.py end to end on a tiny dataset written here: every experiment's fast_dev_run, a short
real run logged to an offline W&B run (read back), the checkpoint it leaves, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import open_dict

from cloudseg.checkpoint import MODEL_PREFIX, load_checkpoint
from cloudseg.labels import CLASS_NAMES
from cloudseg.metrics import DEFAULT_MONITOR
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.training import train
from helpers.training import TINY_SHRINK, compose_train, read_wandb_records, wandb_history

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_a_fast_dev_run(experiment, tiny_dataset, tmp_path):
    cfg = compose_train(
        [f"experiment={experiment}", "debug=fdr", f"data.root={tiny_dataset}", *TINY_SHRINK],
        tmp_path,
    )
    score = train(cfg)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["monitor"] == DEFAULT_MONITOR
    assert report["tested_checkpoint"] == "final weights"  # fast_dev_run saves none
    assert score == pytest.approx(report["fit"][DEFAULT_MONITOR])
    assert 0.0 <= score <= 1.0
    assert {"test/loss", "test/miou", "test/iou_thick_cloud"} <= set(report["test"])
    assert np.array(report["test_confusion_matrix"]["counts"]).shape == (4, 4)


def test_short_run_logs_metrics_and_overlays_to_offline_wandb(tiny_dataset, tmp_path, capsys):
    assert os.environ["WANDB_MODE"] == "offline"  # tests/conftest.py
    cfg = compose_train(
        ["experiment=demo", "debug=limit", f"data.root={tiny_dataset}", *TINY_SHRINK], tmp_path
    )
    with open_dict(cfg):
        cfg.callbacks.prediction_overlays.num_chips = 2  # the val scene gives 2 chips
    score = train(cfg)

    report = json.loads((tmp_path / "metrics.json").read_text())
    best = Path(report["best_checkpoint"])
    assert best.parent == tmp_path / "checkpoints" and best.is_file()
    assert report["last_checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert report["tested_checkpoint"] == str(best)
    assert score == pytest.approx(report["best_score"])
    assert sum(map(sum, report["test_confusion_matrix"]["counts"])) > 0

    wandb_info = report["wandb"]
    run_dir = Path(wandb_info["run_dir"])
    assert wandb_info["mode"] == "offline"
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    assert f"wandb sync {run_dir}" in capsys.readouterr().out

    records = read_wandb_records(run_dir)
    history = wandb_history(records)
    for stage in ("train", "val", "test"):
        for name in (
            "loss" if stage != "train" else "loss_epoch",
            "miou",
            "iou_cloud_or_shadow_vs_clear",
        ):
            assert all(0 <= v < 10 for v in history[f"{stage}/{name}"]), f"{stage}/{name}"
        for class_name in CLASS_NAMES:
            assert len(history[f"{stage}/f1_{class_name}"]) == (1 if stage == "test" else 2)
    assert len(history[DEFAULT_MONITOR]) == 2  # one per epoch
    assert report["best_score"] == pytest.approx(max(history[DEFAULT_MONITOR]))
    assert any(key.startswith("lr-AdamW/layer") for key in history)
    assert history["val/predictions/_type"] == ["images/separated"] * 2
    assert history["val/predictions/count"] == [2, 2]
    assert set(history["val/predictions/all_masks"][0][0]) == {"ground_truth", "prediction"}
    media = run_dir / "files" / "media" / "images"
    assert len(list((media / "val").glob("predictions_*.png"))) == 4  # 2 chips x 2 epochs
    # W&B names mask files by step and content, so identical masks (two all-clear predictions of
    # an early model) share one file: check that every mask the history names was written.
    for epoch_masks in history["val/predictions/all_masks"]:
        assert len(epoch_masks) == 2  # one per chip
        for chip_masks in epoch_masks:
            for mask in chip_masks.values():
                assert (run_dir / "files" / mask["path"]).is_file(), mask
    (table_path,) = (run_dir / "files" / "media" / "table" / "test").glob("confusion_matrix*.json")
    table = json.loads(table_path.read_text())
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert len(table["data"]) == 16
    assert sum(row[2] for row in table["data"]) == sum(
        map(sum, report["test_confusion_matrix"]["counts"])
    )
    config_keys = {
        item.key
        for record in records
        if record.WhichOneof("record_type") == "config"
        for item in record.config.update
    }
    assert {"data", "model", "trainer", "monitor", "paths"} <= config_keys

    model, meta = load_checkpoint(best)
    assert meta["bands"] == list(L1C_BANDS) and meta["patch_size"] == 32
    assert meta["normalization"]["bands"] == list(L1C_BANDS)
    assert not model.training


def test_ema_callbacks_validate_save_and_test_the_averaged_weights(tiny_dataset, tmp_path):
    """`callbacks=ema`: the best checkpoint's weights are the average (the raw ones kept apart to
    resume from), composite.py's loader reads the average, and train.py's test scored it."""
    cfg = compose_train(
        [
            "experiment=demo",
            "debug=limit",
            "logger=none",
            "callbacks=ema",
            f"data.root={tiny_dataset}",
            *TINY_SHRINK,
        ],
        tmp_path,
    )
    train(cfg)
    report = json.loads((tmp_path / "metrics.json").read_text())
    checkpoint = torch.load(report["best_checkpoint"], map_location="cpu", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[key], raw[key]) for key in averaged)
    model, _ = load_checkpoint(report["best_checkpoint"])
    for name, value in model.state_dict().items():
        assert torch.equal(value, averaged[MODEL_PREFIX + name]), name

    def tested_loss(state_dict: dict) -> float:
        task = instantiate(cfg.model)
        task.load_state_dict(state_dict)
        trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
        [metrics] = trainer.test(task, datamodule=instantiate(cfg.data), verbose=False)
        return metrics["test/loss"]

    reported = report["test"]["test/loss"]
    assert tested_loss(averaged) == pytest.approx(reported, rel=1e-6)
    assert tested_loss(raw) != pytest.approx(reported, rel=1e-6)


def test_cli_multirun_over_learning_rates(tiny_dataset, tmp_path):
    """`python train.py -m model.lr=a,b` runs one job per value, each with its metrics.json."""
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "-m",
        "experiment=demo",
        "debug=fdr",
        f"data.root={tiny_dataset}",
        *TINY_SHRINK,
        "model.lr=1e-3,3e-3",
        f"paths.log_dir={tmp_path}",
        "logger=csv",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(tmp_path.glob("debug/multiruns/*/*/metrics.json"))  # debug's task_name
    assert len(reports) == 2
    lrs = []
    for report in reports:
        overrides = yaml.safe_load((report.parent / ".hydra" / "overrides.yaml").read_text())
        lrs += [float(o.split("=")[1]) for o in overrides if o.startswith("model.lr=")]
        assert json.loads(report.read_text())["test"]["test/miou"] >= 0
    assert lrs == [1e-3, 3e-3]


def test_seeded_cpu_runs_are_identical(tiny_dataset, tmp_path):
    """Same seed, CPU trainer (deterministic): same chips, augmentation, weights and metrics."""
    reports = []
    for name in ("first", "second"):
        cfg = compose_train(
            [
                "experiment=demo",
                "debug=limit",
                "logger=none",
                f"data.root={tiny_dataset}",
                *TINY_SHRINK,
            ],
            tmp_path / name,
        )
        train(cfg)
        reports.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    first, second = reports
    assert first["fit"] == second["fit"] and first["test"] == second["test"]
    weights = [
        torch.load(Path(r["last_checkpoint"]), weights_only=True)["state_dict"] for r in reports
    ]
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


@pytest.mark.slow
def test_demo_beats_trivial_baselines_on_simulated_scenes(tmp_path):
    """The demo setup, on a smaller simulated set, clearly beats every constant prediction."""
    from cloudseg.data.datamodule import CloudMaskDataModule
    from cloudseg.data.simulate import write_labeled_set
    from cloudseg.metrics import segmentation_metrics

    root = tmp_path / "simulated"
    write_labeled_set(root, n_scenes=32, size=256, seed=0, progress=False)
    cfg = compose_train(
        ["experiment=demo", f"data.root={root}", "logger=none", "trainer.max_epochs=6"],
        tmp_path / "run",
    )
    score = train(cfg)

    datamodule = CloudMaskDataModule(
        root, cfg.data.bands, cfg.data.patch_size, val_chips_per_scene=cfg.data.val_chips_per_scene
    )
    datamodule.setup("validate")
    masks = torch.cat([batch["mask"] for batch in datamodule.val_dataloader()])
    constant_scores = []
    for code in range(len(CLASS_NAMES)):
        metrics = segmentation_metrics()
        metrics.update(torch.full_like(masks, code), masks)
        constant_scores.append(float(metrics.compute()[DEFAULT_MONITOR.removeprefix("val/")]))
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert score > max(constant_scores) + 0.1, (score, constant_scores)
    assert report["fit"]["val/miou"] > 0.4  # constant predictions: at most ~0.1


def _lightning_like_checkpoint(path: Path) -> Path:
    """A file with every key a Lightning resume needs (the test truncates it)."""
    torch.save(
        {
            "state_dict": {"model.w": torch.zeros(64, 64)},
            "optimizer_states": [{}],
            "loops": {},
            "epoch": 1,
            "global_step": 4,
        },
        path,
    )
    return path


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (
            lambda p: p.write_text("not a checkpoint\n"),
            r"ckpt_path=\S+bad.ckpt is not a readable PyTorch checkpoint: it looks like a text "
            r"file\. Pass a \.ckpt a training run wrote \(outputs/train/runs/<time>/checkpoints/: "
            r"its last\.ckpt resumes training",
        ),
        (
            lambda p: p.write_bytes(_lightning_like_checkpoint(p).read_bytes()[:9000]),
            r"ckpt_path=\S+bad.ckpt is not a readable PyTorch checkpoint: it looks like a damaged "
            r"or truncated checkpoint archive .*copy it again whole",
        ),
        (
            lambda p: (p.mkdir(), (p / "last.ckpt").write_bytes(b"")),
            r"ckpt_path=\S+bad.ckpt is a folder, not a checkpoint file\. It holds \['last.ckpt'\]: "
            r"pass one of them, e.g\. ckpt_path=\S+bad.ckpt/last.ckpt",
        ),
        (
            lambda p: torch.save({"state_dict": {}, "cloudfree": {}}, p),
            r"ckpt_path=\S+bad.ckpt cannot resume training: it lacks \['optimizer_states', "
            r"'loops', 'epoch'\] .*Resume from the run's checkpoints/last\.ckpt, or drop ckpt_path",
        ),
    ],
    ids=["text", "truncated", "folder", "weights-only"],
)
def test_resuming_from_a_bad_checkpoint_names_ckpt_path_before_any_work(
    write, message, tiny_dataset, tmp_path, monkeypatch
):
    """Issue 19.7: not `IndexError: pop from empty list` or a raw torch error after the data
    and model are built, but ckpt_path, the file, what it looks like and the fix, first."""
    bad = tmp_path / "bad.ckpt"
    write(bad)
    cfg = compose_train(
        ["experiment=demo", "debug=fdr", f"data.root={tiny_dataset}", "logger=none",
         *TINY_SHRINK, f"ckpt_path={bad}"],
        tmp_path / "run",
    )  # fmt: skip
    monkeypatch.setattr("cloudseg.training.instantiate", None)  # nothing may be built first
    with pytest.raises((ValueError, OSError), match=message) as error:
        train(cfg)
    assert "weights_only" not in str(error.value)


def test_a_real_last_checkpoint_passes_the_resume_check(tmp_path):
    from cloudseg.training import check_resume_checkpoint

    check_resume_checkpoint(str(_lightning_like_checkpoint(tmp_path / "last.ckpt")))
