"""How a model's probabilities become a mask: :class:`MaskRule` and :class:`InferenceSpec`.

Both are frozen and validated once, at construction, and neither needs torch, so the composite
side can build, hash and pass them around without loading a model.

:class:`MaskRule` turns class probabilities ``(classes, ...)`` into class codes of
:mod:`cloudseg.labels`: the argmax, changed by two optional rules, applied in this order:

1. ``cloud_threshold`` (in (0, 1)): cloud where ``p(thick_cloud) + p(thin_cloud) >=
   cloud_threshold`` (thick or thin by the larger of the two), the likelier of clear /
   cloud_shadow elsewhere;
2. ``clear_threshold`` (in (0, 1]), for masks that feed a composite, where a missed cloud costs
   far more than a dropped clear observation: a pixel stays clear only if ``p(clear) >=
   clear_threshold``; a clear pixel below it takes the likeliest of thick_cloud, thin_cloud and
   cloud_shadow. It only ever removes pixels from clear, so with both rules cloud_threshold still
   makes every pixel with ``p(thick_cloud) + p(thin_cloud) >= cloud_threshold`` cloud, and clear
   still needs ``p(clear) >= clear_threshold``: each rule keeps its meaning. The other pixels keep
   their class.

Pixels with a NaN probability (nodata, e.g. decoded from the probability raster) are
``CLASS_NODATA``. ``MaskRule()`` (no threshold) is the plain argmax: what ``cloudfree-predict``
and ``cloudfree-evaluate-masks`` use unless told otherwise; composites choose
``clear_threshold=0.9`` (``composite.masking.COMPOSITE_INFERENCE``).

:class:`InferenceSpec` is everything about running a checkpoint over a scene: the grid it runs
on (``resolution``), the sliding windows, the batch, the device and precision, flip
test-time augmentation and the :class:`MaskRule`. One spec goes, as one argument, to
:class:`~cloudseg.inference.predictor.WindowedPredictor`, the ``model`` mask producer, composite
masks and the command lines (whose option defaults are read from it).
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD

#: Class raster value where a mask makes no prediction (no data, saturated...).
CLASS_NODATA = IGNORE_INDEX
#: The classes a pixel below ``clear_threshold`` can take.
NOT_CLEAR: tuple[int, ...] = (THICK_CLOUD, THIN_CLOUD, CLOUD_SHADOW)
#: Model inputs must have height and width divisible by this (the ViT patch size).
SIZE_MULTIPLE = 16


def _check_probability(name: str, value: float | None, one_allowed: bool) -> None:
    if value is None:
        return
    upper = "1]" if one_allowed else "1)"
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not number or not (0.0 < value < 1.0 or (one_allowed and value == 1.0)):
        raise ValueError(
            f"{name} must be a probability in (0, {upper}, got {value!r}; give a value such as "
            "0.8, or None (null in configs; leave the option out on the command line) for none."
        )


@dataclass(frozen=True)
class MaskRule:
    """The decision rule from probabilities to classes (see the module docstring)."""

    cloud_threshold: float | None = None
    clear_threshold: float | None = None

    def __post_init__(self) -> None:
        _check_probability("cloud_threshold", self.cloud_threshold, one_allowed=False)
        _check_probability("clear_threshold", self.clear_threshold, one_allowed=True)

    def classes(self, probabilities: np.ndarray) -> np.ndarray:
        """Class codes (uint8) from probabilities ``(classes, ...)``."""
        if self.cloud_threshold is None:
            classes = np.argmax(probabilities, axis=0).astype(np.uint8)
        else:
            classes = self._cloud_threshold_classes(probabilities)
        if self.clear_threshold is not None:
            unsure = (classes == CLEAR) & (probabilities[CLEAR] < self.clear_threshold)
            classes[unsure] = likeliest_not_clear(probabilities)[unsure]
        classes[np.isnan(probabilities).any(axis=0)] = CLASS_NODATA
        return classes

    def _cloud_threshold_classes(self, probabilities: np.ndarray) -> np.ndarray:
        thick, thin = probabilities[THICK_CLOUD], probabilities[THIN_CLOUD]
        cloud_class = np.where(thick >= thin, THICK_CLOUD, THIN_CLOUD)
        other_class = np.where(
            probabilities[CLEAR] >= probabilities[CLOUD_SHADOW], CLEAR, CLOUD_SHADOW
        )
        return np.where(thick + thin >= self.cloud_threshold, cloud_class, other_class).astype(
            np.uint8
        )

    def tags(self) -> dict[str, str | float]:
        """The rule as raster tags (``none`` for an unset threshold)."""
        return {
            "CLOUD_THRESHOLD": "none" if self.cloud_threshold is None else self.cloud_threshold,
            "CLEAR_THRESHOLD": "none" if self.clear_threshold is None else self.clear_threshold,
        }


def likeliest_not_clear(probabilities: np.ndarray) -> np.ndarray:
    """The most probable of thick_cloud, thin_cloud and cloud_shadow (ties: in that order)."""
    codes = np.array(NOT_CLEAR, dtype=np.uint8)
    return codes[np.argmax(probabilities[list(NOT_CLEAR)], axis=0)]


@dataclass(frozen=True)
class InferenceSpec:
    """How a checkpoint runs over a scene and how its probabilities become classes.

    ``resolution`` (metres; ``None``: the scene's own grid) runs the model on a coarser grid and
    upsamples its probabilities bilinearly. ``window_size`` (pixels, a multiple of 16; ``None``:
    the checkpoint's training patch size) and ``overlap`` (pixels; ``None``: a quarter of the
    window) set the sliding windows; ``batch_size`` windows go through the model at once
    (``None``: as many as make 8 x 256^2 input pixels, e.g. 8 windows of 256 px or 128 of
    64 px). ``device`` ``"auto"`` picks CUDA when available; ``amp`` uses autocast there
    (bfloat16 where supported, else float16; never on CPU). ``flips`` averages the probabilities
    of the image and its horizontal and vertical flips. ``rule`` turns probabilities into
    classes.
    """

    resolution: float | None = None
    window_size: int | None = None
    overlap: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    amp: bool = True
    flips: bool = False
    rule: MaskRule = field(default_factory=MaskRule)

    def __post_init__(self) -> None:
        if not isinstance(self.rule, MaskRule):
            raise TypeError(f"rule must be a MaskRule, got {self.rule!r}.")
        if self.resolution is not None and not self.resolution > 0:
            raise ValueError(
                f"resolution={self.resolution!r} must be a pixel size in metres > 0 (e.g. 20 or "
                "60), or None to run on the scene's own grid."
            )
        if self.window_size is not None and (
            self.window_size <= 0 or self.window_size % SIZE_MULTIPLE
        ):
            suggestion = SIZE_MULTIPLE * max(1, round(self.window_size / SIZE_MULTIPLE))
            raise ValueError(
                f"window_size {self.window_size} is not a positive multiple of {SIZE_MULTIPLE} "
                f"(the ViT patch size); use e.g. {suggestion}."
            )
        if self.overlap is not None and self.overlap < 0:
            raise ValueError(f"overlap={self.overlap} must be >= 0 pixels (None: window/4).")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")

    def digest(self) -> str:
        """Short hash of what changes the mask (not device, batch size or AMP)."""
        relevant: dict[str, Any] = {
            "resolution": self.resolution,
            "cloud_threshold": self.rule.cloud_threshold,
            "window_size": self.window_size,
            "overlap": self.overlap,
            "flips": self.flips,
        }
        if self.rule.clear_threshold is not None:  # absent when unset: older masks stay valid
            relevant["clear_threshold"] = self.rule.clear_threshold
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
