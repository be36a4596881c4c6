"""Losses, metrics and the W&B chip rendering of the training task, on hand-made tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudseg.callbacks import ConfusionMatrixLogger, chip_to_display
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.losses import build_loss
from cloudseg.metrics import BINARY_VIEWS, DEFAULT_MONITOR, metric_names, segmentation_metrics

# 2 x 4 pixels; the last column is ignored in the target.
TARGET = torch.tensor([[[0, 0, 1, 255], [2, 3, 3, 255]]])
PREDICTION = torch.tensor([[[0, 1, 1, 3], [2, 3, 0, 0]]])


def _iou(pred: np.ndarray, true: np.ndarray) -> float:
    return float((pred & true).sum() / (pred | true).sum())


def test_metric_values_match_hand_counts():
    metrics = segmentation_metrics().clone(prefix="val/")
    metrics.update(PREDICTION, TARGET)
    values = {name: float(value) for name, value in metrics.compute().items()}

    valid = (TARGET != IGNORE_INDEX).numpy()
    true, pred = TARGET.numpy()[valid], PREDICTION.numpy()[valid]
    per_class_iou = [_iou(pred == c, true == c) for c in range(len(CLASS_NAMES))]
    for code, name in enumerate(CLASS_NAMES):
        assert values[f"val/iou_{name}"] == pytest.approx(per_class_iou[code])
    # clear: 1 of 2 true clear found, 2 predicted clear -> precision 1/2, recall 1/2
    assert values["val/precision_clear"] == pytest.approx(0.5)
    assert values["val/recall_clear"] == pytest.approx(0.5)
    assert values["val/recall_cloud_shadow"] == pytest.approx(0.5)
    assert values["val/miou"] == pytest.approx(np.mean(per_class_iou))
    recalls = [np.mean(pred[true == c] == c) for c in range(len(CLASS_NAMES))]
    assert values["val/balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert values["val/accuracy"] == pytest.approx(np.mean(pred == true))
    cloud = [1, 2]
    assert values["val/iou_cloud_vs_rest"] == pytest.approx(
        _iou(np.isin(pred, cloud), np.isin(true, cloud))
    )
    obscured = [1, 2, 3]
    assert values["val/iou_cloud_or_shadow_vs_clear"] == pytest.approx(
        _iou(np.isin(pred, obscured), np.isin(true, obscured))
    )
    assert sorted(values) == [f"val/{name}" for name in metric_names()]
    assert DEFAULT_MONITOR in values


def test_binary_views_name_existing_classes():
    for view, positive in BINARY_VIEWS.items():
        assert set(positive) <= set(CLASS_NAMES), view
    assert BINARY_VIEWS["cloud_or_shadow_vs_clear"] == ("thick_cloud", "thin_cloud", "cloud_shadow")


def test_loss_ignores_ignored_pixels_and_rewards_the_truth():
    target = torch.tensor([[[0, 1], [3, IGNORE_INDEX]]])
    good = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 20
    for name in ("ce", "dice", "ce_dice"):
        loss = build_loss(name)
        changed = good.clone()
        changed[0, :, 1, 1] = torch.tensor([-5.0, 9.0, 3.0, 1.0])  # only the ignored pixel
        assert loss(changed, target) == pytest.approx(float(loss(good, target)), abs=1e-6)
        assert float(loss(good, target)) < 1e-3
        assert float(loss(-good, target)) > 0.5


def test_class_weights_scale_the_cross_entropy():
    target = torch.tensor([[[0, 1]]])
    logits = torch.zeros(1, 4, 1, 2)
    plain = build_loss("ce")(logits, target)
    weighted = build_loss("ce", class_weights=[1.0, 3.0, 1.0, 1.0])(logits, target)
    assert float(weighted) == pytest.approx(float(plain))  # uniform logits: same per-pixel loss
    logits[0, 1, 0, 1] = 2.0  # pixel of class 1 now right, pixel of class 0 unchanged
    assert float(build_loss("ce", class_weights=[1.0, 3.0, 1.0, 1.0])(logits, target)) < float(
        build_loss("ce")(logits, target)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "focal"}, "Unknown loss"),
        ({"name": "ce", "class_weights": [1.0, 2.0]}, "one per class"),
        ({"name": "dice", "class_weights": [1.0] * 4}, "cross-entropy"),
    ],
)
def test_bad_loss_settings_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_loss(**kwargs)


def test_chip_display_turns_normalised_bands_back_into_true_colour():
    bands = ["B02", "B03", "B04", "B08"]
    normalization = {"bands": bands, "mean": [0.1, 0.1, 0.1, 0.3], "std": [0.05] * 4}
    reflectance = np.zeros((4, 2, 2), np.float32)
    reflectance[:, 0, 0] = 0.6  # cloud: white
    reflectance[2, 1, 1] = 0.15  # red 0.15 of max 0.3: half red
    image = (reflectance - 0.1) / 0.05
    image[3] = (reflectance[3] - 0.3) / 0.05
    picture = chip_to_display(image, bands, normalization, max_reflectance=0.3)
    assert picture.shape == (2, 2, 3) and picture.dtype == np.uint8
    assert picture[0, 0].tolist() == [255, 255, 255]
    assert picture[1, 1].tolist() == [128, 0, 0]  # channels are R, G, B = B04, B03, B02
    grey = chip_to_display(image[3:], ["B08"], None)
    assert grey.shape == (2, 2, 3) and (grey[..., 0] == grey[..., 2]).all()


def test_confusion_matrix_logger_rejects_unknown_stage():
    with pytest.raises(ValueError, match="train"):
        ConfusionMatrixLogger(stages=("train",))
