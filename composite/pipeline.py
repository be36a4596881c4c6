"""The reusable composite pipeline: a stack -> masks -> windowed composite -> outputs.

:func:`composite_stack` composites a stack already assembled, so a caller can composite one stack
several times (e.g. baselines with other mask sources onto the same grid). It knows nothing of
configs or of what is done with a finished composite; the app (:mod:`composite.run`) wires those.

Reporters are the hook for what comes after the rasters (metrics, quicklooks, map pages): each is
called with the :class:`CompositeResult` once the COGs exist, and what it returns (a JSON-ready
dict, or ``None``) is stored in ``run.json`` under ``reports.<name>``; ``run.json`` is written
after every reporter has run, so it still marks a finished run.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudseg.labels import CLASS_NAMES
from cloudseg.sentinel2.grid import Grid
from composite.cluster import Executor
from composite.driver import CompositeSettings, composite_windows
from composite.masking import MaskSet, MaskSettings, prepare_masks
from composite.output_grid import composite_bands, output_grid
from composite.outputs import CompositeOutputs, run_record, write_json, write_rasters
from composite.stack import Stack
from composite.temporal_rules import TemporalSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompositeResult:
    """A finished composite: where its outputs are and what went into them."""

    outputs: CompositeOutputs
    grid: Grid
    bands: tuple[str, ...]
    stack: Stack
    masks: MaskSet
    settings: CompositeSettings
    record: dict[str, Any]
    #: The multi-temporal test the composite's exclusion was made with (``None``: the
    #: single-date masks alone); measures that redo the exclusion pass it on.
    temporal: TemporalSettings | None = None


#: ``reporter(result) -> dict | None``; see the module docstring.
Reporter = Callable[[CompositeResult], Mapping[str, Any] | None]


def composite_stack(
    stack: Stack,
    mask_settings: MaskSettings,
    settings: CompositeSettings,
    *,
    out_dir: str | Path,
    work_dir: str | Path,
    executor: Executor,
    grid: Grid | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    config: Mapping[str, Any] | None = None,
    reporters: Mapping[str, Reporter] | None = None,
    progress: bool = True,
    timing_s: Mapping[str, float] | None = None,
) -> CompositeResult:
    """Mask ``stack``, composite it on ``grid`` (default: :func:`output_grid`) and write the
    outputs to ``out_dir``; window files live under ``work_dir`` until the outputs exist."""
    timing = dict(timing_s or {})
    started = time.perf_counter()
    masks, stack = prepare_masks(stack, mask_settings, executor, progress=progress)
    timing["masks"] = time.perf_counter() - started
    bands = composite_bands(stack, settings)
    grid = grid or output_grid(stack, settings, bands, bbox)
    started = time.perf_counter()
    run = composite_windows(
        stack, masks, settings, grid, bands, work_dir, executor, progress=progress,
        temporal=mask_settings.temporal_settings,
    )  # fmt: skip
    timing["windows"] = time.perf_counter() - started
    started = time.perf_counter()
    dates = [scene.datetime.date().isoformat() for scene in run.stack.scenes]
    tags = {
        "RUN_KEY": run.run_key,
        "Q": f"{settings.q:g}",
        "METHOD": settings.method,
        "KEY_BANDS": " ".join(settings.key_bands or ()),
        "NO_VALID": settings.no_valid,
        "MASK_SOURCE": masks.source,
        "EXCLUDE": " ".join(CLASS_NAMES[code] for code in masks.exclude_codes),
        "BUFFER_M": f"{masks.buffer_m:g}",
        "CHECKPOINT_SHA256": masks.checkpoint_sha256 or "",
        "SCENES": len(run.stack),
        "FIRST_DATE": min(dates),
        "LAST_DATE": max(dates),
    }
    outputs, totals = write_rasters(run, out_dir, tags, progress=progress)
    timing["outputs"] = time.perf_counter() - started
    log.info(
        "%d windows (%d reused), %d scenes, %d of %d pixels without a valid observation.",
        len(run.windows), run.reused_windows, len(run.stack), totals["no_valid"],
        grid.height * grid.width,
    )  # fmt: skip
    record = run_record(
        run,
        outputs,
        totals,
        masks=masks.record(),
        config={"command": sys.argv, **(config or {})},
        cluster=executor.describe(),
        timing_s=timing,
    )
    result = CompositeResult(
        outputs, grid, bands, run.stack, masks, settings, record, mask_settings.temporal_settings
    )
    reports = {name: reporter(result) for name, reporter in (reporters or {}).items()}
    if reports:
        record["reports"] = reports
    write_json(outputs.run_json, record)
    if not settings.keep_work:
        shutil.rmtree(run.work_dir, ignore_errors=True)
    return result
