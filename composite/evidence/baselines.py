"""Baselines: the mask sources the same stack is composited with again, and the quicklook reporter
every composite of the evidence gets."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

from cloudseg.inference.producers import lacking_bands
from cloudseg.sentinel2.bands import RGB_BANDS
from composite.evidence.settings import TEMPORAL_BASELINE, QuicklookSettings
from composite.masking import MaskSettings
from composite.pipeline import CompositeResult
from composite.quicklook import write_quicklooks
from composite.stack import Stack

log = logging.getLogger(__name__)


def baseline_masks(source: str, masks: MaskSettings) -> MaskSettings:
    """A baseline's masks: a single-date source alone, or ``temporal``: the temporal test alone
    (no single-date mask, rule ``union``)."""
    if source == TEMPORAL_BASELINE:
        return dataclasses.replace(masks, source="none", temporal="union")
    return dataclasses.replace(masks, source=source, temporal="none")


def plan_baselines(
    sources: Iterable[str], masks: MaskSettings, stack: Stack
) -> tuple[dict[str, MaskSettings], dict[str, str]]:
    """The mask settings of each baseline that applies to ``stack``, and why the others do not."""
    planned: dict[str, MaskSettings] = {}
    skipped: dict[str, str] = {}
    main_temporal = masks.temporal_settings.skip_reason(len(stack)) is None
    for source in sources:
        if source == "model" and not masks.checkpoint:
            skipped[source] = "no checkpoint: pass ckpt=/path/to/best.ckpt"
            continue
        try:
            settings = baseline_masks(source, masks)
        except ValueError as err:  # e.g. ocm without weights: the others still run
            skipped[source] = str(err)
            continue
        temporal_skip = settings.temporal_settings.skip_reason(len(stack))
        if source == TEMPORAL_BASELINE and temporal_skip is not None:
            skipped[source] = temporal_skip
            continue
        if settings.source == masks.source and (
            settings.temporal == masks.temporal or not main_temporal
        ):
            skipped[source] = "the main composite uses these masks"
            continue
        lacking = lacking_bands(settings.producer, stack.scenes)
        if lacking:
            scene_id, missing = next(iter(lacking.items()))
            skipped[source] = (
                f"{len(lacking)} of {len(stack)} scenes lack layers it needs (e.g. "
                f"{scene_id} lacks {missing})"
            )
            continue
        planned[source] = settings
    for source, reason in skipped.items():
        log.info("Baseline %s skipped: %s.", source, reason)
    return planned, skipped


def quicklook_reporter(
    settings: QuicklookSettings, stretch: tuple[float, float]
) -> Callable[[CompositeResult], dict[str, Any]]:
    """A reporter writing ``composite_rgb.png`` and ``composite_gray.png`` next to a composite
    with ``stretch`` (skipped, with the reason, when the composite lacks B02/B03/B04)."""

    def report(result: CompositeResult) -> dict[str, Any]:
        missing = [band for band in RGB_BANDS if band not in result.bands]
        if missing:
            reason = f"the composite has no {missing} (bands {list(result.bands)})"
            log.info("No quicklooks for %s: %s.", result.outputs.out_dir, reason)
            return {"skipped": reason}
        paths = write_quicklooks(
            result.outputs.composite,
            result.outputs.out_dir,
            max_size=settings.max_size,
            stretch=stretch,
        )
        return {kind: path.name for kind, path in paths.items()}

    return report
