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


def write_training_run(folder: Path, seed: int = 42, best_score: float = 0.8123) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    metrics = {
        "monitor": "val/iou_cloud_or_shadow_vs_clear",
        "mode": "max",
        "best_score": best_score,
        "best_checkpoint": str(folder / "checkpoints" / "best-epoch004.ckpt"),
        "fit": {"val/iou_cloud_or_shadow_vs_clear": 0.8001, "val/miou": 0.61},
        "test": {"test/iou_cloud_or_shadow_vs_clear": 0.7777, "test/iou_clear": 0.9},
        "wandb": {"sync_command": "wandb sync outputs/demo/train/wandb/offline-run-x"},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    config = {
        "seed": seed,
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
        "write-record": tmp_path / "record",
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
    readme = (runs["write-record"] / "README.md").read_text()
    assert headline in readme
    train_command = "python train.py experiment=demo trainer.max_epochs=6 hydra.run.dir=outputs/"
    assert f"{train_command}demo/train\n" in readme
    assert "python composite.py stack.source=composite_a ckpt=best.ckpt" in readme
    assert "least residual cloud" in readme and "NOT" not in readme
    copied = json.loads((runs["write-record"] / "metrics" / "composite_b.json").read_text())
    assert copied["composite"]["seam_mae"] == 0.0031


def test_figure_shows_both_composites_with_the_same_stretch(report, runs, capsys):
    run_main(report, runs, capsys)
    figure = runs["write-record"] / report.FIGURE_NAME
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
    readme = (runs["write-record"] / "README.md").read_text()
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


def write_demo_run(folder: Path, seed: int, best_score: float, composites: bool = True) -> Path:
    """A demo run folder as `make demo` writes it (train/, composite_a/, composite_b/), or as
    `make demo-record` writes another seed's (train/ only)."""
    residual = {"composite": 0.0123, "none": 0.2345, "s2cloudless": 0.0456}
    write_training_run(folder / "train", seed=seed, best_score=best_score)
    if composites:
        write_composite_run(folder / "composite_a", residual)
        write_composite_run(folder / "composite_b", residual, seam_mae=0.0031)
    return folder


def demo_run_arguments(folder: Path) -> list[str]:
    return [f"--train={folder / 'train'}", f"--composite={folder / 'composite_a'}",
            f"--neighbour={folder / 'composite_b'}"]  # fmt: skip


@pytest.fixture
def seed_record(report, tmp_path, capsys) -> Path:
    """A record of seeds 42, 43, 44 (best validation IoU 0.8123, 0.79, 0.83); 43 and 44 are
    trained and tested only, as `make demo-record` runs them."""
    folders = [
        write_demo_run(tmp_path / f"seed{seed}", seed, score, composites=seed == 42)
        for seed, score in ((42, 0.8123), (43, 0.79), (44, 0.83))
    ]
    record = tmp_path / "record"
    argv = [*demo_run_arguments(folders[0]), "--seed-runs", *map(str, folders),
            f"--write-record={record}"]  # fmt: skip
    assert report.main(argv) == 0
    capsys.readouterr()
    return record


def test_record_headline_gives_the_range_over_the_seeds(report, seed_record):
    spread = report.SeedSpread.load(seed_record)
    assert sorted(spread.seeds) == [42, 43, 44] and spread.record_seed == 42
    label = "val IoU cloud+shadow vs clear (best checkpoint)"
    assert spread.value_range(label) == (0.79, 0.83)
    readme = (seed_record / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith(label))
    assert line.split()[-3:] == ["0.79", "-", "0.83"] and "0.8123" in line
    assert "range over 3 seeds (42, 43, 44)" in readme
    residual = next(line for line in readme.splitlines() if line.startswith("residual cloud"))
    assert residual.split()[-4:] == ["0.0123", "seed", "42", "only"]
    assert "so 4 composite numbers are the seed-42 run's alone" in readme


def test_your_numbers_are_printed_beside_the_committed_ones_and_the_record_is_untouched(
    report, seed_record, tmp_path, capsys
):
    before = {p: p.stat().st_mtime_ns for p in seed_record.rglob("*")}
    yours = write_demo_run(tmp_path / "yours", 42, 0.8001)
    assert report.main([*demo_run_arguments(yours), f"--committed={seed_record}"]) == 0
    printed = capsys.readouterr().out
    lines = {line.split("  ")[0]: line for line in printed.splitlines()}
    assert lines["val IoU cloud+shadow vs clear (best checkpoint)"].split()[-5:] == [
        "0.8001", "0.8123", "0.79", "-", "0.83"
    ]  # fmt: skip
    seam = lines["seam MAE vs neighbouring tile (reflectance)"].split()
    assert seam[-5:] == ["0.0031", "0.0031", "seed", "42", "only"]
    assert "yours (seed 42)" in printed and "committed (seed 42)" in printed
    assert {p: p.stat().st_mtime_ns for p in seed_record.rglob("*")} == before


def test_a_record_whose_seed_runs_lack_its_own_run_is_refused(report, tmp_path):
    folders = [write_demo_run(tmp_path / f"seed{seed}", seed, 0.8) for seed in (42, 43)]
    argv = [*demo_run_arguments(folders[0]), "--seed-runs", str(folders[1]),
            f"--write-record={tmp_path / 'record'}"]  # fmt: skip
    with pytest.raises(SystemExit, match="seed 42 is not among the seed runs"):
        report.main(argv)
    assert not (tmp_path / "record").exists()


def test_committed_demo_record_is_consistent_and_is_the_readme_headline(report):
    """experiments/demo (written by `make demo-record`, never by `make demo`): its headline is the
    one its copied metrics files give, the record's seed is one of three whose range holds it,
    and README.md shows the same headline."""
    repository = Path(__file__).resolve().parents[1]
    record_dir = repository / "experiments" / "demo"
    spread = report.SeedSpread.load(record_dir)
    metrics = record_dir / "metrics"
    training = report.TrainingRun(metrics, json.loads((metrics / "train.json").read_text()), {}, [])
    composites = [
        report.CompositeRunFiles(metrics, json.loads((metrics / f"{name}.json").read_text()), {})
        for name in ("composite_a", "composite_b")
    ]
    assert report.headline_numbers(training, *composites) == spread.numbers
    assert len(spread.seeds) == 3
    for label, value in spread.numbers.items():
        low, high = spread.value_range(label)
        assert low <= value <= high, label
    record = (record_dir / "README.md").read_text()
    headline = record.split("## Headline\n\n```\n")[1].split("```")[0]
    assert headline == spread.headline_text() + "\n"
    assert f"```\n{headline}```" in (repository / "README.md").read_text()
