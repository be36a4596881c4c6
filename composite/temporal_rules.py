"""How the temporal verdicts (:mod:`composite.temporal`) and the single-date mask make one exclusion.

Rules (``masks.temporal`` in ``conf/composite.yaml``), per observation, where ``mask`` is the
single-date exclusion and the verdict is the temporal test's:

- ``none``: the single-date mask alone (the test does not run);
- ``union``: excluded where either calls it cloud/shadow (``mask`` or verdict ``flag``/``strong``);
- ``veto``: the temporal test overrules a single-date call where the view matches the clear
  background within noise (verdict ``match``), and adds one where it departs (``flag``): the
  single-date call stands where the test has no clear opinion (``neutral``);
- ``vote``: both must agree (``mask`` and ``flag``), except where the test is sure on its own
  (``strong``): the fewest clear views dropped, the most trust in the test.

With masks ``none`` the single-date exclusion is empty, so ``union`` and ``veto`` are the temporal
test alone (flags), ``vote`` its strong departures only.

:class:`ExclusionSources` counts, per pixel, which source excluded its observations (``model`` =
the single-date mask whatever its source, ``temporal``, ``both``) and how many single-date calls
the temporal test overruled: the evidence of what the test changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from composite.temporal import (
    FLAG,
    MATCH,
    STRONG,
    TemporalBands,
    TemporalTest,
    valid_observations,
    verdicts,
)

TEMPORAL_RULES: tuple[str, ...] = ("none", "union", "veto", "vote")
#: The rule a composite uses unless told otherwise: on the demo's tiles and the held-out ones of
#: ``experiments/temporal`` it leaves the least cloud and shadow, and the seam against the
#: neighbouring tile is no larger than with the single-date mask alone.
DEFAULT_RULE = "veto"
#: Per-pixel counts kept per window (:class:`ExclusionSources`), in this order.
SOURCE_NAMES: tuple[str, ...] = ("model", "temporal", "both", "overruled")


def check_rule(rule: str) -> str:
    if rule not in TEMPORAL_RULES:
        raise ValueError(
            f"masks.temporal={rule!r} is not a rule; use one of {list(TEMPORAL_RULES)}."
        )
    return rule


def combine(rule: str, mask: np.ndarray, verdict: np.ndarray | None) -> np.ndarray:
    """The exclusion ``(dates, h, w)`` bool under ``rule`` (``verdict`` None: the mask alone)."""
    check_rule(rule)
    if rule == "none" or verdict is None:
        return mask
    flagged = verdict >= FLAG
    if rule == "union":
        return mask | flagged
    if rule == "veto":
        return (mask & (verdict != MATCH)) | flagged
    return (mask & flagged) | (verdict == STRONG)


@dataclass(frozen=True)
class ExclusionSources:
    """``counts``: ``(len(SOURCE_NAMES), h, w)`` int16, observations per pixel excluded by the
    single-date mask alone, the temporal test alone, both, and single-date calls overruled."""

    counts: np.ndarray

    @classmethod
    def of(
        cls, mask: np.ndarray, verdict: np.ndarray | None, excluded: np.ndarray, valid: np.ndarray
    ) -> ExclusionSources:
        """Counts over the ``valid`` observations (nodata is nobody's call)."""
        temporal = (verdict >= FLAG) if verdict is not None else np.zeros_like(mask)
        mask, excluded, temporal = mask & valid, excluded & valid, temporal & valid
        planes = (
            excluded & mask & ~temporal,
            excluded & ~mask,
            excluded & mask & temporal,
            mask & ~excluded,
        )
        return cls(np.stack([plane.sum(axis=0, dtype=np.int16) for plane in planes]))

    def totals(self) -> dict[str, int]:
        """Observations summed over the pixels, by source."""
        return {
            name: int(self.counts[i].sum(dtype=np.int64)) for i, name in enumerate(SOURCE_NAMES)
        }


@dataclass(frozen=True)
class TemporalSettings:
    """``masks.temporal`` (the rule) and ``masks.temporal_test`` (the test's settings)."""

    rule: str = DEFAULT_RULE
    test: TemporalTest = field(default_factory=TemporalTest)

    def __post_init__(self) -> None:
        check_rule(self.rule)
        if isinstance(self.test, dict):
            object.__setattr__(self, "test", TemporalTest(**self.test))

    def skip_reason(self, n_dates: int) -> str | None:
        """Why the test does not run on a stack of ``n_dates`` (``None``: it runs)."""
        if self.rule == "none":
            return "masks.temporal=none"
        if n_dates < self.test.min_dates:
            return (
                f"the stack has {n_dates} dates, fewer than masks.temporal_test.min_dates="
                f"{self.test.min_dates} the test needs: the single-date mask alone is used"
            )
        return None

    def record(self) -> dict:
        return {"rule": self.rule, "test": self.test.record()}


def window_exclusion(
    temporal: TemporalSettings | None, bands: tuple[str, ...], stack: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, ExclusionSources | None]:
    """The exclusion a composite window uses: the single-date ``mask`` combined with the
    temporal verdicts of ``stack`` (``(dates, bands, h, w)`` uint16 harmonised DN) under
    ``temporal.rule``, and which source excluded what (``None`` without the test). Per pixel,
    so a window's result equals the same pixels of the whole grid's."""
    if temporal is None:
        return mask, None
    valid = valid_observations(stack)
    verdict = verdicts(stack, TemporalBands.resolve(bands), ~mask, temporal.test, valid)
    exclude = combine(temporal.rule, mask, verdict)
    return exclude, ExclusionSources.of(mask, verdict, exclude, valid)
