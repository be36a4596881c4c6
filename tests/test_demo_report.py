"""experiments/demo_report.py on small fake run folders: the headline comes from the metrics
files, the record holds the same numbers, the figure is written, bad input names the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from PIL import Image

from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid


@pytest.fixture(scope="module")
def report(load_experiment):
    return load_experiment("demo_report")


def write_training_run(folder: Path) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    metrics = {
        "monitor": "val/iou_cloud_or_shadow_vs_clear",
        "mode": "max",
        "best_score": 0.8123,
        "best_checkpoint": str(folder / "checkpoints" / "best-epoch004.ckpt"),
        "fit": {"val/iou_cloud_or_shadow_vs_clear": 0.8001, "val/miou": 0.61},
        "test": {"test/iou_cloud_or_shadow_vs_clear": 0.7777, "test/iou_clear": 0.9},
        "wandb": {"sync_command": "wandb sync outputs/demo/train/wandb/offline-run-x"},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    config = {
        "data": {"root": "data/simulated/labeled", "patch_size": 64, "batch_size": 16,
                 "train_chips_per_epoch": 512, "bands": ["B02", "B03", "B04"]},
        "trainer": {"max_epochs": 6},
        "model": {"lr": 0.001, "segmenter": {"backbone": "vit_tiny", "head": "upernet",
                                             "pretrained": "none"}},
    }  # fmt: skip
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    overrides = {"hydra": {"overrides": {"task": ["experiment=demo", "trainer.max_epochs=6"],
                                         "hydra": ["hydra.run.dir=outputs/demo/train",
                                                   "hydra.mode=RUN"]}}}  # fmt: skip
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(overrides))
    return folder


def write_composite_tif(folder: Path, brightness: float) -> None:
    """A 3-band reflectance composite (DN) of 32 x 32 px, a gradient scaled by ``brightness``."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = Grid("EPSG:32632", Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 32, 32)
    ramp = np.linspace(500, 2500, 32 * 32, dtype=np.float32).reshape(32, 32) * brightness
    dn = np.stack([ramp, ramp * 0.9, ramp * 0.8]).astype(np.uint16)
    write_cog(folder / "composite.tif", dn, grid, nodata=0, band_names=["B04", "B03", "B02"])


def write_composite_run(
    folder: Path, residual: dict[str, float], seam_mae: float | None = None
) -> Path:
    table = {
        "composite": {"residual_cloud": residual["composite"], "mae_mean": 0.01},
        "baseline_none": {"residual_cloud": residual["none"], "mae_mean": 0.05},
        "baseline_s2cloudless": {"residual_cloud": residual["s2cloudless"]},
        "reference": {"residual_cloud": 0.0, "mae_mean": 0.0},
    }
    if seam_mae is not None:
        table["composite"]["seam_mae"] = seam_mae
    write_composite_tif(folder, 1.0)
    write_composite_tif(folder / "baselines" / "none", 2.0)
    write_composite_tif(folder / "baselines" / "s2cloudless", 1.2)
    write_composite_tif(folder / "reference", 0.9)
    (folder / "metrics.json").write_text(json.dumps(table))
    run = {
        "grid": {"height": 32, "width": 32},
        "stack": {"scenes_used": [{"datetime": "2019-01-03T10:00:00"},
                                  {"datetime": "2019-02-03T10:00:00"}]},
        "config": {
            "command": ["composite.py", f"stack.source={folder.name}", "ckpt=best.ckpt"],
            "stack": {"source": f"data/simulated/tiles/{folder.name}"},
            "masks": {"source": "model", "exclude": ["thick_cloud"], "buffer_m": 0,
                      "inference": {"resolution": 20}},
            "composite": {"q": 25, "method": "linear"},
            "evaluation": {"baselines": ["none", "s2cloudless"]},
            "quicklook": {"stretch": [0.0, 0.3]},
        },
    }  # fmt: skip
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    residual = {"composite": 0.0123, "none": 0.2345, "s2cloudless": 0.0456}
    return {
        "train": write_training_run(tmp_path / "train"),
        "composite": write_composite_run(tmp_path / "composite_a", residual),
        "neighbour": write_composite_run(tmp_path / "composite_b", residual, seam_mae=0.0031),
        "record": tmp_path / "record",
    }


def run_main(report, runs: dict[str, Path], capsys) -> str:
    argv = [f"--{key}={path}" for key, path in runs.items()]
    assert report.main(argv) == 0
    return capsys.readouterr().out


def test_headline_numbers_come_from_the_files(report, runs):
    numbers = report.headline_numbers(
        report.TrainingRun.load(runs["train"]),
        report.CompositeRunFiles.load(runs["composite"]),
        report.CompositeRunFiles.load(runs["neighbour"]),
    )
    assert list(numbers.values()) == [0.8123, 0.7777, 0.0123, 0.2345, 0.0456, 0.0031]


def test_main_prints_paths_and_headline_and_writes_the_same_in_the_record(report, runs, capsys):
    printed = run_main(report, runs, capsys)
    for name in ("composite.tif", "composite_rgb.png", "composite_gray.png", "map.html"):
        assert str(runs["composite"] / name) in printed
    assert "wandb sync outputs/demo/train/wandb/offline-run-x" in printed
    headline = printed.split("Headline:\n")[1].split("\nThe model-masked")[0]
    assert "0.8123" in headline and "0.2345" in headline and "0.0031" in headline
    readme = (runs["record"] / "README.md").read_text()
    assert headline in readme
    train_command = "python train.py experiment=demo trainer.max_epochs=6 hydra.run.dir=outputs/"
    assert f"{train_command}demo/train\n" in readme
    assert "python composite.py stack.source=composite_a ckpt=best.ckpt" in readme
    assert "least residual cloud" in readme and "NOT" not in readme
    copied = json.loads((runs["record"] / "metrics" / "composite_b.json").read_text())
    assert copied["composite"]["seam_mae"] == 0.0031


def test_figure_shows_both_composites_with_the_same_stretch(report, runs, capsys):
    run_main(report, runs, capsys)
    figure = runs["record"] / report.FIGURE_NAME
    assert figure.stat().st_size < 500_000
    pixels = np.asarray(Image.open(figure).convert("L"), dtype=float)
    left, right = np.array_split(pixels, 3, axis=1)[:2]
    # the unmasked baseline is twice as bright: with one stretch its panel is brighter
    assert right.mean() > left.mean() + 5


def test_paths_inside_the_repository_are_recorded_relative_to_it(report, tmp_path):
    root = tmp_path / "repo"
    inside = f"ckpt={root}/outputs/demo/train/checkpoints/best-epoch005.ckpt"
    assert report.repository_relative(inside, root) == (
        "ckpt=outputs/demo/train/checkpoints/best-epoch005.ckpt"
    )
    assert report.repository_relative(f"{root}/composite.py", root) == "composite.py"
    assert report.repository_relative(f"+x={root}/../elsewhere/a.tif", root) == (
        f"+x={root}/../elsewhere/a.tif"  # outside the repository: kept as given
    )
    for unchanged in ("hydra.run.dir=outputs/demo/train", "evaluation.baselines=[none,scl]", "-m"):
        assert report.repository_relative(unchanged, root) == unchanged


def test_recorded_commands_hold_no_absolute_path_inside_the_repository(report, runs, capsys):
    checkpoint = report.REPO_ROOT / "outputs" / "demo" / "train" / "checkpoints" / "best.ckpt"
    run_json = runs["composite"] / "run.json"
    run = json.loads(run_json.read_text())
    run["config"]["command"] = [
        str(report.REPO_ROOT / "composite.py"), f"ckpt={checkpoint}",
        "evaluation.baselines=[none,s2cloudless]", "evaluation.compare_with=/elsewhere/b.tif",
    ]  # fmt: skip
    run_json.write_text(json.dumps(run))
    run_main(report, runs, capsys)
    readme = (runs["record"] / "README.md").read_text()
    assert (
        "python composite.py ckpt=outputs/demo/train/checkpoints/best.ckpt "
        "'evaluation.baselines=[none,s2cloudless]' evaluation.compare_with=/elsewhere/b.tif\n"
    ) in readme
    assert str(report.REPO_ROOT) not in readme.split("## Commands")[1].split("## Configuration")[0]


def test_verdict_says_when_the_model_is_not_best(report, tmp_path):
    residual = {"composite": 0.3, "none": 0.2, "s2cloudless": 0.25}
    composite = report.CompositeRunFiles.load(write_composite_run(tmp_path / "a", residual))
    assert report.verdict(composite) == (
        "The model-masked composite does NOT have the least residual cloud: unmasked 25th "
        "percentile has 0.2 against 0.3."
    )


def test_verdict_names_a_tie(report, tmp_path):
    residual = {"composite": 0.0, "none": 0.2, "s2cloudless": 0.0}
    composite = report.CompositeRunFiles.load(write_composite_run(tmp_path / "a", residual))
    assert report.verdict(composite) == (
        "The model-masked composite has the least residual cloud of the compared composites "
        "(tied with s2cloudless-masked)."
    )


def test_missing_metrics_file_is_a_clear_error(report, runs):
    (runs["neighbour"] / "metrics.json").unlink()
    argv = [f"--{key}={path}" for key, path in runs.items()]
    with pytest.raises(SystemExit, match=r"composite_b/metrics\.json does not exist.*make demo"):
        report.main(argv)


def test_a_table_without_the_main_row_is_refused(report, runs):
    (runs["composite"] / "metrics.json").write_text(json.dumps({"baseline_none": {}}))
    with pytest.raises(ValueError, match="has no row 'composite'"):
        report.CompositeRunFiles.load(runs["composite"])


def test_readme_headline_is_the_committed_demo_record():
    """The numbers README.md shows are the ones the last `make demo` wrote to its record."""
    repository = Path(__file__).resolve().parents[1]
    record = (repository / "experiments" / "demo" / "README.md").read_text()
    headline = record.split("## Headline\n\n```\n")[1].split("```")[0]
    assert f"```\n{headline}```" in (repository / "README.md").read_text()
