"""The mask commands the README shows, end to end: predict masks of a real L1C SAFE, evaluate
every producer on a labeled set."""

from __future__ import annotations

import json

import numpy as np
import rasterio

from cloudseg.inference.cli import evaluate_main, predict_main


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
