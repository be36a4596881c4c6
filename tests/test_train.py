"""train.py end to end on a tiny dataset written here: every experiment's fast_dev_run, a short
real run logged to an offline W&B run (read back), the checkpoint it leaves, and the CLI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from affine import Affine
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from wandb.proto import wandb_internal_pb2 as pb

from cloudseg.checkpoint import load_checkpoint
from cloudseg.data.manifest import DatasetWriter
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.metrics import DEFAULT_MONITOR
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from cloudseg.training import train

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))

#: Rough TOA reflectance per class for the 13 L1C bands (B01..B12), after ../shared/SENTINEL2.md.
CLASS_SPECTRA = np.array(
    [
        [0.08, 0.07, 0.07, 0.04, 0.10, 0.22, 0.28, 0.30, 0.31, 0.10, 0.005, 0.17, 0.08],  # clear
        [0.65, 0.70, 0.70, 0.70, 0.68, 0.66, 0.65, 0.65, 0.64, 0.30, 0.15, 0.50, 0.38],  # thick
        [0.20, 0.17, 0.16, 0.13, 0.18, 0.28, 0.33, 0.35, 0.36, 0.13, 0.07, 0.22, 0.12],  # thin
        [0.05, 0.04, 0.03, 0.02, 0.03, 0.06, 0.08, 0.09, 0.09, 0.03, 0.002, 0.05, 0.02],  # shadow
    ],
    dtype=np.float32,
)
SCENE_SIZE = 64
WANDB_BLOCK = 32768
TINY_SHRINK = [
    "data.patch_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.train_chips_per_epoch=4",
    "data.val_chips_per_scene=2",
    "model.segmenter.pretrained=none",
    "model.segmenter.decoder_channels=32",
]


def tiny_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """13-band DN and mask: 16x16 blocks of one class each, noise, an ignored border row."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(CLASS_NAMES), (SCENE_SIZE // 16, SCENE_SIZE // 16))
    mask = np.kron(blocks, np.ones((16, 16), dtype=np.int64)).astype(np.uint8)
    reflectance = CLASS_SPECTRA[mask].transpose(2, 0, 1)
    reflectance = reflectance + rng.normal(0, 0.01, reflectance.shape).astype(np.float32)
    dn = np.clip(reflectance * 10000, 1, 65535).astype(np.uint16)
    mask[0] = IGNORE_INDEX
    return dn, mask


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Four scenes on four sites: two train, one val, one test."""
    root = tmp_path_factory.mktemp("tiny_labeled")
    splits = {"site-a": "train", "site-b": "train", "site-c": "val", "site-d": "test"}
    with DatasetWriter(root) as writer:
        for index, (site, split) in enumerate(splits.items()):
            dn, mask = tiny_scene(index)
            grid = Grid("EPSG:32631", Affine(10, 0, 399960 + 1000 * index, 0, -10, 5000040), 64, 64)
            writer.add(
                f"{site}_20200101",
                dn,
                mask,
                grid,
                L1C_BANDS,
                site=site,
                date="2020-01-01",
                label_source="simulated",
                processing_baseline="02.14",
                split=split,
            )
    return root


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The real train.yaml composed with ``overrides``, run folders moved to ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *overrides,
                f"paths.root_dir={REPO}",
                f"paths.log_dir={output_dir}",
                f"paths.output_dir={output_dir}",
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


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


def read_wandb_records(run_dir: Path, timeout_s: float = 30.0) -> list[pb.Record]:
    """The records of an offline run's ``run-<id>.wandb`` file, once wandb has finished it.

    ``wandb.finish()`` can return while wandb-core still writes the file, so this waits until
    the file holds the run's exit record and stops changing.
    """
    (path,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        data = path.read_bytes()
        records = parse_wandb_log(data)
        finished = any(record.WhichOneof("record_type") == "exit" for record in records)
        if (finished and data == previous) or time.monotonic() > deadline:
            return records
        previous = data
        time.sleep(0.5)


def parse_wandb_log(data: bytes) -> list[pb.Record]:
    """Records of a W&B transaction log (wandb's LevelDB-style format).

    A 7-byte header (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of chunks, each
    ``crc32 (4) | length (2) | type (1) | data``; type 1 is a whole record, 2/3/4 the
    first/middle/last piece of one; a block tail under 7 bytes is padding. Each record is a
    serialised ``wandb_internal_pb2.Record``.
    """
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        room = WANDB_BLOCK - position % WANDB_BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if room < 7 or (length == 0 and kind == 0):
            position += room
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records: list[pb.Record]) -> dict[str, list]:
    """Every value logged per history key (nested keys joined with "/"), in order."""
    history: dict[str, list] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(json.loads(item.value_json))
    return history


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
