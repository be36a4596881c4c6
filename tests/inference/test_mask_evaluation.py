"""evaluate_masks: the training metrics per producer, omission/commission, tables and figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cloudseg.inference.evaluate import evaluate_masks, omission_commission
from cloudseg.inference.producers import MaskProducer, build_producer
from cloudseg.inference.spec import InferenceSpec
from cloudseg.sentinel2.bands import L1C_BANDS
from helpers.composite import tiny_checkpoint


class Oracle(MaskProducer):
    """Returns the reference mask (metrics must be perfect)."""

    name = "oracle"

    def predict(self, scene):
        with rasterio.open(str(scene.source).replace("/images/", "/masks/")) as dataset:
            return dataset.read(1)


class AllClear(MaskProducer):
    name = "all_clear"
    emits = ("clear",)

    def predict(self, scene):
        return np.zeros(scene.grid().shape, dtype=np.uint8)


def test_metrics_tables_and_figure(labeled_dataset, tmp_path):
    checkpoint = str(tiny_checkpoint(tmp_path / "tiny.ckpt", L1C_BANDS))
    inference = InferenceSpec(window_size=32, overlap=8, device="cpu")
    producers = [
        Oracle(),
        *(
            build_producer(name, checkpoint=checkpoint, inference=inference)
            for name in ("model", "s2cloudless", "scl", "threshold")
        ),
        AllClear(),
    ]
    out = tmp_path / "evaluation"
    report = evaluate_masks(
        labeled_dataset, producers, out, worst=2, command="pytest", progress=False
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["producers"].keys() == {p.name for p in producers}
    assert saved["scenes"] == 3 and saved["command"] == "pytest"

    oracle = report["producers"]["oracle"]
    assert oracle["scenes"] == 3 and oracle["coverage"] == 1.0
    assert oracle["metrics"]["balanced_accuracy"] == pytest.approx(1.0)
    assert oracle["metrics"]["iou_cloud_vs_rest"] == pytest.approx(1.0)
    assert (
        oracle["metrics"]["omission_cloud"] == 0.0 == oracle["metrics"]["commission_cloud_shadow"]
    )
    assert np.trace(np.array(oracle["confusion_matrix"])) == 3 * (48 * 48 - 4)

    assert report["producers"]["scl"]["scenes"] == 0
    assert set(report["producers"]["scl"]["skipped_scenes"]) == {"scene1", "scene2", "scene3"}
    threshold = report["producers"]["threshold"]["metrics"]
    assert threshold["balanced_accuracy"] > 0.9  # clean textbook spectra
    all_clear = report["producers"]["all_clear"]["metrics"]
    assert all_clear["omission_cloud"] == 1.0 and all_clear["commission_cloud"] is None
    assert report["producers"]["s2cloudless"]["not_applicable"]  # binary producer

    table = (out / "metrics.md").read_text()
    assert "| oracle | 3 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in table  # ..., miou, view
    assert "s2cloudless too, which has no shadow class" in table
    view = ("iou_cloud_or_shadow_vs_clear", "f1_cloud_or_shadow_vs_clear")
    for name, result in report["producers"].items():
        cells = summary_row(table, name)
        if name == "all_clear":  # predicts no cloud or shadow: not a measurement
            assert [cells[key] for key in view] == ["n/a", "n/a"]
        elif result["scenes"]:  # every other producer, s2cloudless included, is scored
            expected = cloud_or_shadow_scores(np.array(result["confusion_matrix"]))
            for key in view:
                value = result["metrics"][key]
                assert value == pytest.approx(expected[key], abs=1e-6), (name, key)
                assert cells[key] == f"{value:.3f}", (name, key)
    assert "| s2cloudless | thin_cloud | n/a | n/a | n/a | n/a |" in table
    assert "scl: 3 scenes lack SCL" in table
    assert len(report["worst_scenes"]) == 2
    errors = [entry["error"] for entry in report["worst_scenes"]]
    assert errors == sorted(errors, reverse=True) and errors[0] == 0.0  # oracle ranks
    assert (out / "worst_scenes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def summary_row(table: str, producer: str) -> dict[str, str]:
    """The cells of ``producer``'s row in the summary table, by column name."""
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| producer | scenes |"))
    row = next(line for line in lines if line.startswith(f"| {producer} | "))
    names = [cell.strip() for cell in header.strip("|").split("|")]
    return dict(zip(names, (cell.strip() for cell in row.strip("|").split("|")), strict=True))


def cloud_or_shadow_scores(confusion: np.ndarray) -> dict[str, float]:
    """IoU and F1 of thick + thin + shadow against clear, from a 4-class confusion matrix."""
    true_positive = confusion[1:, 1:].sum()
    false_positive, false_negative = confusion[0, 1:].sum(), confusion[1:, 0].sum()
    union = true_positive + false_positive + false_negative
    return {
        "iou_cloud_or_shadow_vs_clear": true_positive / union,
        "f1_cloud_or_shadow_vs_clear": 2 * true_positive / (union + true_positive),
    }


def test_omission_and_commission_from_a_confusion_matrix():
    confusion = np.array(  # rows: reference clear, thick, thin, shadow; columns: predicted
        [[50, 5, 0, 5], [10, 30, 0, 0], [0, 5, 5, 0], [4, 0, 0, 6]]
    )
    errors = omission_commission(confusion)
    assert errors["omission_cloud"] == pytest.approx(10 / 50)  # 40 of 50 cloud found
    assert errors["commission_cloud"] == pytest.approx(5 / 45)
    assert errors["omission_cloud_shadow"] == pytest.approx(4 / 10)
    assert errors["commission_cloud_shadow"] == pytest.approx(5 / 11)


def test_an_empty_split_names_the_splits_present(labeled_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"splits present: \['test', 'train'\]"):
        evaluate_masks(labeled_dataset, [AllClear()], tmp_path, split="val", progress=False)


def test_scenes_without_a_split_are_assigned_as_training_assigns_them(tmp_path, labeled_scene):
    from affine import Affine

    from cloudseg.data.manifest import DatasetWriter, read_manifest
    from cloudseg.data.splits import assign_splits
    from cloudseg.sentinel2.grid import Grid

    root = tmp_path / "unsplit"
    with DatasetWriter(root) as writer:
        for index in range(8):
            dn, mask = labeled_scene(index, size=16)
            grid = Grid("EPSG:32632", Affine(10, 0, 300000, 0, -10, 5000000), 16, 16)
            writer.add(f"scene{index}", dn, mask, grid, L1C_BANDS, site=f"site{index}",
                       date="2021-06-01", label_source="simulated")  # fmt: skip
    expected = assign_splits(read_manifest(root), seed=3)
    expected = sorted(expected.loc[expected["split"] == "test", "scene_id"])
    report = evaluate_masks(root, [AllClear()], tmp_path / "out", split_seed=3, progress=False)
    assert report["splits_assigned_with_seed"] == 3
    assert sorted(scene["scene_id"] for scene in report["per_scene"]) == expected
    assert "splits assigned by site with seed 3" in (tmp_path / "out" / "metrics.md").read_text()
