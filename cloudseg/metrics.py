"""Segmentation metrics for the cloud mask, on torchmetrics, under one set of names.

``segmentation_metrics()`` returns one ``MetricCollection`` fed with class predictions
``(B, H, W)`` (argmax of the logits) and targets ``(B, H, W)``; pixels equal to ``IGNORE_INDEX``
are skipped. The task clones it with ``train/``, ``val/`` and ``test/`` prefixes. Names:

- per class (``CLASS_NAMES``): ``iou_<class>``, ``f1_<class>``, ``precision_<class>``,
  ``recall_<class>``, e.g. ``iou_thick_cloud``;
- over classes: ``miou`` (mean IoU), ``balanced_accuracy`` (mean per-class recall, i.e.
  torchmetrics' macro recall: a class neither present nor predicted is left out, one predicted
  but absent counts as recall 0), ``accuracy`` (overall pixel accuracy);
- binary views (``BINARY_VIEWS``), ``iou_<view>``, ``f1_<view>``, ``precision_<view>``,
  ``recall_<view>``:
  ``cloud_vs_rest`` (thick + thin cloud against clear + shadow) and
  ``cloud_or_shadow_vs_clear`` (everything a composite excludes against clear; the default
  checkpoint monitor is ``val/iou_cloud_or_shadow_vs_clear``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.wrappers import ClasswiseWrapper
from torchmetrics.wrappers.transformations import MetricInputTransformer

from cloudseg.labels import CLASS_NAMES, DEFAULT_EXCLUDED, IGNORE_INDEX, class_codes

#: Binary views of the four classes: view name -> the classes counted as positive.
BINARY_VIEWS: dict[str, tuple[str, ...]] = {
    "cloud_vs_rest": ("thick_cloud", "thin_cloud"),
    "cloud_or_shadow_vs_clear": DEFAULT_EXCLUDED,
}
#: The metric the checkpoint callback keeps the best of (and sweeps optimise), and its direction.
DEFAULT_MONITOR = "val/iou_cloud_or_shadow_vs_clear"
DEFAULT_MONITOR_MODE = "max"


class BinaryView(MetricInputTransformer):
    """Feed a binary metric (or collection) with ``class in positive`` instead of class codes.

    Ignored target pixels stay ``ignore_index`` so the wrapped metric skips them.
    """

    def __init__(
        self,
        wrapped_metric: MetricCollection,
        positive_classes: Sequence[int],
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(wrapped_metric)
        self.ignore_index = ignore_index
        self.register_buffer("positive", torch.tensor(list(positive_classes)), persistent=False)

    def transform_pred(self, pred: Tensor) -> Tensor:
        return torch.isin(pred, self.positive).long()

    def transform_target(self, target: Tensor) -> Tensor:
        positive = torch.isin(target, self.positive).long()
        return torch.where(target == self.ignore_index, target, positive)


def segmentation_metrics(
    class_names: Sequence[str] = CLASS_NAMES, ignore_index: int = IGNORE_INDEX
) -> MetricCollection:
    """Per-class, averaged and binary-view metrics, named as in the module docstring."""
    labels = list(class_names)
    multiclass = {"num_classes": len(labels), "ignore_index": ignore_index}
    per_class = {
        "iou": MulticlassJaccardIndex(average=None, **multiclass),
        "f1": MulticlassF1Score(average=None, **multiclass),
        "precision": MulticlassPrecision(average=None, **multiclass),
        "recall": MulticlassRecall(average=None, **multiclass),
    }
    metrics: dict = {
        name: ClasswiseWrapper(metric, labels=labels, prefix=f"{name}_")
        for name, metric in per_class.items()
    }
    metrics["miou"] = MulticlassJaccardIndex(average="macro", **multiclass)
    metrics["balanced_accuracy"] = MulticlassRecall(average="macro", **multiclass)
    metrics["accuracy"] = MulticlassAccuracy(average="micro", **multiclass)
    for view, positive_names in BINARY_VIEWS.items():
        binary = MetricCollection(
            {
                "iou": BinaryJaccardIndex(ignore_index=ignore_index),
                "f1": BinaryF1Score(ignore_index=ignore_index),
                "precision": BinaryPrecision(ignore_index=ignore_index),
                "recall": BinaryRecall(ignore_index=ignore_index),
            },
            postfix=f"_{view}",
        )
        metrics[view] = BinaryView(binary, class_codes(positive_names), ignore_index)
    return MetricCollection(metrics, compute_groups=False)


def confusion_matrix_metric(
    num_classes: int = len(CLASS_NAMES), ignore_index: int = IGNORE_INDEX
) -> MulticlassConfusionMatrix:
    """Pixel counts, rows = true class, columns = predicted class (ignored pixels skipped)."""
    return MulticlassConfusionMatrix(num_classes=num_classes, ignore_index=ignore_index)


def metric_names(class_names: Sequence[str] = CLASS_NAMES) -> list[str]:
    """Every name ``segmentation_metrics()`` reports (without a stage prefix), sorted."""
    names = [f"{m}_{c}" for m in ("iou", "f1", "precision", "recall") for c in class_names]
    names += ["miou", "balanced_accuracy", "accuracy"]
    names += [f"{m}_{v}" for m in ("iou", "f1", "precision", "recall") for v in BINARY_VIEWS]
    return sorted(names)
