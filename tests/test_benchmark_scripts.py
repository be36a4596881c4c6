"""The benchmark scripts the README lists run on small inputs (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.slow
def test_temporal_evaluation_record_runs_small(tmp_path):
    """experiments/temporal_evaluation.py on one small tile pair (the tuning site, so with its
    sweep) and a tiny checkpoint: every case and setting is measured and written."""
    from cloudseg.data.simulate.products import write_overlapping_tiles
    from helpers.composite import tiny_checkpoint

    tiles = write_overlapping_tiles(
        tmp_path / "tiles", n_dates=16, size=64, overlap=16, site="sim-site01", progress=False
    ).parent
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    arguments = (
        f"--tiles {tiles} --ckpt {checkpoint} --cache {tmp_path / 'cache'} "
        f"--record {tmp_path / 'record'}"
    )
    series = REPO.parent / "shared" / "realdata" / "eolearn-5dates"
    if series.is_dir():  # the real series, where ../shared/realdata is there
        arguments += f" --realdata {series}"
    completed = subprocess.run(
        [sys.executable, "experiments/temporal_evaluation.py", *arguments.split()],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "record" / "metrics.json").read_text())
    (site,) = record["sites"].values()
    assert site["site"] == "sim-site01" and set(site["tiles"]) == {"tile_a", "tile_b"}
    assert "model + temporal (veto)" in site["seam"]
    assert len(record["sweep"]["sim-site01"]) == 24
    assert (tmp_path / "record" / "exclusion_sources.png").is_file()
    assert "### sim-site01 (tuning site" in (tmp_path / "record" / "README.md").read_text()
    if series.is_dir():
        assert set(record["real"]["flagged_share_per_date"]) == {
            "none",
            "model",
            "ukis",
            "s2cloudless",
        }
        assert record["real"]["mae_ratio_to_unmasked"]["none + none"] == 1.0
