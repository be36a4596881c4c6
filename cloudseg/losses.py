"""Segmentation losses for the cloud mask: cross-entropy, Dice, or their weighted sum.

All of them skip pixels labelled ``IGNORE_INDEX`` (nodata, unlabeled) and take logits
``(B, C, H, W)`` and integer targets ``(B, H, W)``. Dice is segmentation_models_pytorch's
multiclass soft Dice (mean over classes; a class absent from the batch contributes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import Tensor, nn

from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES

LOSS_NAMES = ("ce", "dice", "ce_dice")


class CrossEntropyDiceLoss(nn.Module):
    """``ce_weight * CE(weighted by class) + dice_weight * Dice``, both ignoring ``ignore_index``.

    Set a weight to 0 to drop a term (``ce_weight=0`` is pure Dice, ``dice_weight=0`` pure CE).
    Class weights rescale the cross-entropy term only (Dice already balances classes).
    """

    def __init__(
        self,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        if ce_weight < 0 or dice_weight < 0 or ce_weight + dice_weight == 0:
            raise ValueError(
                f"Loss term weights must be >= 0 and not both 0; got ce_weight={ce_weight}, "
                f"dice_weight={dice_weight}."
            )
        weight = None
        if class_weights is not None:
            if len(class_weights) != num_classes or any(w < 0 for w in class_weights):
                raise ValueError(
                    f"class_weights {list(class_weights)} must hold {num_classes} non-negative "
                    f"numbers, one per class in the order {list(CLASS_NAMES)}."
                )
            weight = torch.as_tensor(list(class_weights), dtype=torch.float32)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.cross_entropy = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.dice = DiceLoss(mode="multiclass", from_logits=True, ignore_index=ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()  # the loss in float32 under mixed precision
        loss = logits.new_zeros(())
        if self.ce_weight:
            loss = loss + self.ce_weight * self.cross_entropy(logits, target)
        if self.dice_weight:
            loss = loss + self.dice_weight * self.dice(logits, target)
        return loss


def build_loss(
    name: str = "ce_dice",
    *,
    dice_weight: float = 1.0,
    class_weights: Sequence[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> CrossEntropyDiceLoss:
    """The loss called ``name``: ``"ce"``, ``"dice"`` or ``"ce_dice"`` (CE + dice_weight * Dice)."""
    if name == "ce":
        terms = {"ce_weight": 1.0, "dice_weight": 0.0}
    elif name == "dice":
        terms = {"ce_weight": 0.0, "dice_weight": 1.0}
    elif name == "ce_dice":
        terms = {"ce_weight": 1.0, "dice_weight": dice_weight}
    else:
        raise ValueError(f"Unknown loss {name!r}; choose one of {LOSS_NAMES}.")
    if class_weights is not None and name == "dice":
        raise ValueError("class_weights weight the cross-entropy term; loss 'dice' has none.")
    return CrossEntropyDiceLoss(**terms, class_weights=class_weights, ignore_index=ignore_index)
