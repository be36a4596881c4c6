"""What the evidence is told (``evaluation:`` and ``quicklook:`` of conf/composite.yaml, and the
``logger`` group): checked once, each part handed to the code that uses it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudseg.inference.producers import producer_names
from composite.quicklook import DEFAULT_STRETCH

#: The baseline that is the temporal test alone (no single-date mask, rule ``union``).
TEMPORAL_BASELINE = "temporal"


def baseline_names() -> tuple[str, ...]:
    """What ``evaluation.baselines`` may list: every mask producer, and the temporal test."""
    return (*producer_names(), TEMPORAL_BASELINE)


@dataclass(frozen=True)
class EvaluationSettings:
    """What the evidence compares (``evaluation:`` in conf/composite.yaml).

    Attributes:
        baselines: mask sources to composite the same stack with (see the module docstring).
        reference: a clear-surface reflectance COG to measure against (overrides the truth).
        truth: use a simulated stack's truth (reference surface and masks) when there is one.
        model_residual: run the checkpoint (``ckpt``) on every composite, if one is given.
        compare_with: the composite of an overlapping neighbouring tile (seam error).
        seam_tolerance: reflectance difference counted in ``seam_share_over_tol``.
        max_pixels: metrics on at most this many pixels (a decimated read beyond).
        enabled: ``False`` (``evaluation=none``): no evidence at all, the stack is composited once.
    """

    baselines: tuple[str, ...] = ("none", "scl", "s2cloudless", TEMPORAL_BASELINE)
    reference: str | None = None
    truth: bool = True
    model_residual: bool = True
    compare_with: str | None = None
    seam_tolerance: float = 0.01
    max_pixels: int = 4096 * 4096
    enabled: bool = True

    def __post_init__(self) -> None:
        baselines = tuple(self.baselines or ())
        allowed = baseline_names()
        unknown = [source for source in baselines if source not in allowed]
        if unknown:
            raise ValueError(
                f"evaluation.baselines lists {unknown}; use mask sources among {list(allowed)}."
            )
        if len(set(baselines)) != len(baselines):
            raise ValueError(f"evaluation.baselines={list(baselines)} repeats a source.")
        object.__setattr__(self, "baselines", baselines)
        expected = {
            "reference": "a clear-surface reflectance COG",
            "compare_with": "the neighbouring tile's composite.tif",
        }
        for key, what in expected.items():
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(
                    f"evaluation.{key}={path} does not exist; give the path of {what} (or null)."
                )
        if self.max_pixels < 1:
            raise ValueError(f"evaluation.max_pixels={self.max_pixels} must be >= 1.")
        if self.seam_tolerance <= 0:
            raise ValueError(f"evaluation.seam_tolerance={self.seam_tolerance} must be > 0.")


@dataclass(frozen=True)
class QuicklookSettings:
    """The pictures (``quicklook:`` in conf/composite.yaml): PNG size and reflectance stretch
    (``[low, high]``, shared by every composite so they compare, or ``auto``: 2-98 percentiles of
    the main composite)."""

    max_size: int = 1024
    stretch: tuple[float, float] | str = DEFAULT_STRETCH

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"quicklook.max_size={self.max_size} must be >= 1 pixel.")
        if isinstance(self.stretch, str):
            if self.stretch != "auto":
                raise ValueError(f"quicklook.stretch={self.stretch!r}; use [low, high] or auto.")
            return
        stretch = tuple(float(value) for value in self.stretch)
        if len(stretch) != 2 or not stretch[0] < stretch[1]:
            raise ValueError(
                f"quicklook.stretch={list(self.stretch)} must be [low, high], low<high."
            )
        object.__setattr__(self, "stretch", stretch)


@dataclass(frozen=True)
class EvidenceSettings:
    """Everything the evidence needs from the config; ``logger`` is the ``logger`` group's
    content (``None``/empty: no W&B)."""

    evaluation: EvaluationSettings = dataclasses.field(default_factory=EvaluationSettings)
    quicklook: QuicklookSettings = dataclasses.field(default_factory=QuicklookSettings)
    logger: dict[str, Any] | None = None


def evidence_settings(config: Mapping[str, Any]) -> EvidenceSettings | None:
    """Checked settings from the resolved config container (keys ``evaluation``, ``quicklook``,
    ``logger``); ``None`` when ``evaluation.enabled`` is false (``evaluation=none``)."""
    evaluation = dict(config.get("evaluation") or {})
    if not evaluation.get("enabled", True):
        return None
    quicklook = dict(config.get("quicklook") or {})
    return EvidenceSettings(
        evaluation=EvaluationSettings(**evaluation),
        quicklook=QuicklookSettings(**quicklook),
        logger=dict(config.get("logger") or {}) or None,
    )
