"""The windowed composite: the masked percentile over the output grid, window by window, resumable.

For each window of the output grid, every scene is read onto that window (its DN harmonised onto
the pre-04.00 scale, so baselines mix without a 0.1 jump), its mask gives the exclusion
(:func:`composite.masking.exclusion_window`), and :func:`composite.percentile.masked_percentile`
computes the composite, the count of valid observations and, for observation-picking methods, the
date index each value came from. Memory is one window of the stack (scenes x bands x window^2 x 2
bytes) whatever the size of the output grid.

Each finished window is saved to ``<work_dir>/<run key>/windows/<n>.npz`` (atomically), where the
run key is a hash of everything the result depends on (scenes and their files, masks, grid, bands,
percentile settings). A run that is killed and started again finds its finished windows under the
same key and computes only the rest, so its outputs are identical to an uninterrupted run. Windows
run as tasks of an :class:`composite.cluster.Executor` (this process, or Dask workers that write
their window files themselves).

A scene that turns out to be unreadable while its windows are read (a truncated file whose
header is intact) is dropped from the stack with a warning, and the composite starts again
without it under the new run key; it is listed as skipped in the run JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.cog import atomic_path
from cloudseg.sentinel2.errors import SCENE_READ_ERRORS, UnreadableScene
from cloudseg.sentinel2.grid import Grid, bounds_intersect, tile_windows
from cloudseg.sentinel2.radiometry import harmonize_dn
from cloudseg.sentinel2.reader import Scene
from composite.cluster import Executor
from composite.masking import MaskSet, exclusion_window
from composite.output_grid import grid_record
from composite.percentile import METHODS, NO_VALID_POLICIES, masked_percentile
from composite.stack import Stack, StackScene
from composite.temporal import TemporalBands, haze_guard_note
from composite.temporal_rules import TemporalSettings, window_exclusion

log = logging.getLogger(__name__)

#: Bump when the window file format or the meaning of its contents changes (invalidates resumes).
WORK_FORMAT = 1
#: Composite DN are harmonised to offset 0: reflectance = DN / 10000; 0 is nodata.
COMPOSITE_NODATA = 0
#: GDAL's block cache (MB) while reading windows and writing outputs: keeps memory independent
#: of the grid size (GDAL's default is 5 % of the machine's RAM).
GDAL_CACHE_MB = 128


def _bands_of(key: str, bands: tuple[str, ...]) -> tuple[str, ...]:
    """``resolve_bands`` whose error names the config key and its value."""
    try:
        return resolve_bands(bands)
    except ValueError as err:
        raise ValueError(f"{key}={list(bands)}: {err}") from None


@dataclass(frozen=True)
class CompositeSettings:
    """What to compute and on which grid.

    Attributes:
        q: the percentile, 0-100 (25: Sentinel Hub's cloudless mosaic recipe).
        method: ``linear`` (numpy's default interpolation), ``lower`` or ``nearest`` (a real
            observation per band, with its date in the provenance raster).
        key_bands: pick one date per pixel for every band, ranked by the mean of these bands
            (needs ``lower`` or ``nearest``): a date-consistent composite.
        no_valid: pixels without any valid observation get nodata (``nodata``) or the
            percentile of all their observations, masks ignored (``all_observations``).
        bands: output bands (``None``: every spectral band all scenes have).
        window_size: pixels per window side (memory: scenes x bands x window^2 x 2 bytes).
        resolution: output pixel size in metres (``None``: the finest native one of ``bands``).
        crs: output CRS (``None``: the most common among the scenes).
        bounds: ``(left, bottom, right, top)`` in ``crs`` (``None``: the stack's bbox if it has
            one, else the union of the scenes).
        keep_work: keep the window files after the outputs are written.
    """

    q: float = 25.0
    method: str = "linear"
    key_bands: tuple[str, ...] | None = None
    no_valid: str = "nodata"
    bands: tuple[str, ...] | None = None
    window_size: int = 512
    resolution: float | None = None
    crs: str | None = None
    bounds: tuple[float, float, float, float] | None = None
    keep_work: bool = False

    def __post_init__(self) -> None:
        if not 0 <= float(self.q) <= 100:
            raise ValueError(f"composite.q={self.q} must lie in [0, 100].")
        if self.method not in METHODS:
            raise ValueError(f"composite.method={self.method!r}; use one of {list(METHODS)}.")
        if self.no_valid not in NO_VALID_POLICIES:
            raise ValueError(
                f"composite.no_valid={self.no_valid!r}; use one of {list(NO_VALID_POLICIES)}."
            )
        if self.key_bands is not None:
            if self.method == "linear":
                raise ValueError(
                    "composite.key_bands picks one date per pixel, which needs composite.method="
                    "lower or nearest (linear interpolates between two dates)."
                )
            object.__setattr__(self, "key_bands", _bands_of("composite.key_bands", self.key_bands))
        if self.bands is not None:
            object.__setattr__(self, "bands", _bands_of("composite.bands", self.bands))
        if self.window_size < 1:
            raise ValueError(f"composite.window_size={self.window_size} must be >= 1 pixel.")
        if self.bounds is not None:
            bounds = tuple(float(v) for v in self.bounds)
            if len(bounds) != 4 or not (bounds[0] < bounds[2] and bounds[1] < bounds[3]):
                raise ValueError(
                    f"composite.bounds={list(self.bounds)} is not [left, bottom, right, top] "
                    "with left < right and bottom < top."
                )
            object.__setattr__(self, "bounds", bounds)
        if self.bounds is not None and self.crs is None:
            raise ValueError("composite.bounds needs composite.crs (the CRS the bounds are in).")

    @property
    def picks_observations(self) -> bool:
        """Each output value is one real observation, so its date can be recorded."""
        return self.method != "linear"


@dataclass(frozen=True)
class WindowJob:
    """Everything a window task needs (sent once to each worker)."""

    grid: Grid
    bands: tuple[str, ...]
    scenes: tuple[StackScene, ...]
    footprints: tuple[tuple[float, float, float, float], ...]
    mask_paths: tuple[str | None, ...]
    exclude_codes: tuple[int, ...]
    buffer_m: float
    q: float
    method: str
    key: tuple[int, ...] | None
    no_valid: str
    windows_dir: str
    #: The multi-temporal test and its rule (``None``: the single-date mask alone).
    temporal: TemporalSettings | None = None

    def window_path(self, index: int) -> Path:
        return Path(self.windows_dir) / f"{index:06d}.npz"


@dataclass(frozen=True)
class WindowOutcome:
    """A finished window, or the scene that could not be read in it."""

    index: int
    failed_scene: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class CompositeRun:
    """The finished windows of a run, ready to be written out (:mod:`composite.outputs`)."""

    job: WindowJob
    windows: tuple[Window, ...]
    stack: Stack
    run_key: str
    work_dir: Path
    reused_windows: int
    computed_windows: int
    #: The temporal test of this run for ``run.json`` (rule, whether it ran and why not).
    temporal: dict[str, Any] | None = None


# -- one window --------------------------------------------------------------------------------

_open_scenes = threading.local()
#: Parsed scenes a thread keeps between windows (then it starts over).
MAX_CACHED_SCENES = 2048


def _scene(scene: StackScene) -> Scene:
    """The scene, kept per thread: its description is parsed once per worker thread, its files
    are opened for each read and closed after it (see :func:`read_window_stack`)."""
    cache = _open_scenes.__dict__.setdefault("scenes", {})
    key = (scene.source, scene.scene_id, scene.fingerprint)  # same content may lie elsewhere
    if key not in cache:
        if len(cache) >= MAX_CACHED_SCENES:
            cache.clear()
        cache[key] = scene.open()
    return cache[key]


def read_window_observations(job: WindowJob, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(stack (scenes, bands, h, w) uint16 harmonised DN, mask (scenes, h, w) bool)``: the
    window's observations and what the single-date masks exclude.

    Scenes that do not cover the window are all nodata. A read error raises
    :class:`UnreadableScene` naming the scene.
    """
    height, width = int(window.height), int(window.width)
    stack = np.zeros((len(job.scenes), len(job.bands), height, width), dtype=np.uint16)
    exclude = np.zeros((len(job.scenes), height, width), dtype=bool)
    window_bounds = job.grid.window_grid(window).bounds
    for t, scene in enumerate(job.scenes):
        if not bounds_intersect(job.footprints[t], window_bounds):
            continue
        opened = _scene(scene)
        try:
            dn = opened.read(job.bands, grid=job.grid, window=window)
            stack[t] = harmonize_dn(dn, scene.offset)
            if job.mask_paths[t] is not None:
                exclude[t] = exclusion_window(
                    job.mask_paths[t], job.grid, window, job.exclude_codes, job.buffer_m
                )
        except SCENE_READ_ERRORS as err:
            raise UnreadableScene(scene.scene_id, err) from err
        finally:
            opened.close()  # an open multi-band GeoTIFF holds a decoded tile: ~7 MB at 13 bands
    return stack, exclude


def read_window_stack(job: WindowJob, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(stack (scenes, bands, h, w) uint16 harmonised DN, exclude (scenes, h, w) bool)``: the
    window's observations and the exclusion the composite uses (the single-date masks, combined
    with the temporal test under its rule where ``job.temporal`` says so)."""
    stack, mask = read_window_observations(job, window)
    return stack, window_exclusion(job.temporal, job.bands, stack, mask)[0]


def compute_window(job: WindowJob, item: tuple[int, Window]) -> WindowOutcome:
    """Composite one window and save it as ``<windows_dir>/<index>.npz`` (atomically)."""
    index, window = item
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            stack, mask = read_window_observations(job, window)
    except UnreadableScene as err:
        return WindowOutcome(index, err.scene_id, f"{type(err.error).__name__}: {err.error}")
    exclude, sources = window_exclusion(job.temporal, job.bands, stack, mask)
    result = masked_percentile(
        stack,
        exclude,
        job.q,
        method=job.method,
        nodata=COMPOSITE_NODATA,
        key=job.key,
        no_valid=job.no_valid,
        out_dtype=np.uint16,
    )
    arrays: dict[str, Any] = {
        "composite": result.composite,
        "count": result.count,
        "fallback": result.fallback,
    }
    if result.index is not None:
        arrays["index"] = result.index if result.index.ndim == 3 else result.index[np.newaxis]
    if sources is not None:
        arrays["sources"] = sources.counts
    with atomic_path(job.window_path(index)) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return WindowOutcome(index)


# -- the whole grid ----------------------------------------------------------------------------


def make_job(
    stack: Stack,
    masks: MaskSet,
    settings: CompositeSettings,
    grid: Grid,
    bands: tuple[str, ...],
    work_root: Path,
    temporal: TemporalSettings | None = None,
) -> tuple[WindowJob, str]:
    """The window job for ``stack`` and its run key (which names its work folder).

    ``temporal`` runs the multi-temporal test where the stack is long enough
    (:meth:`TemporalSettings.skip_reason`); its settings are then part of the run key.
    """
    key = None
    if settings.key_bands is not None:
        missing = [band for band in settings.key_bands if band not in bands]
        if missing:
            raise ValueError(
                f"composite.key_bands {missing} are not among the output bands {list(bands)}."
            )
        key = tuple(bands.index(band) for band in settings.key_bands)
    mask_paths = tuple(masks.paths.get(scene.scene_id) for scene in stack.scenes)
    if masks.source != "none" and any(path is None for path in mask_paths):
        raise ValueError("Some scenes of the stack have no mask; prepare masks for this stack.")
    description = {
        "format": WORK_FORMAT,
        "grid": grid_record(grid),
        "bands": list(bands),
        "q": float(settings.q),
        "method": settings.method,
        "key": list(key) if key else None,
        "no_valid": settings.no_valid,
        "window_size": settings.window_size,
        "masks": {
            "source": masks.source,
            "key": masks.key,
            "exclude": list(masks.exclude_codes),
            "buffer_m": masks.buffer_m,
        },
        "scenes": [[s.scene_id, s.fingerprint, s.offset] for s in stack.scenes],
    }
    if temporal is not None and temporal.skip_reason(len(stack.scenes)) is None:
        TemporalBands.resolve(bands)  # the test's bands are there: fail before any window
        description["temporal"] = temporal.record()  # absent otherwise: older keys stay valid
    else:
        temporal = None
    run_key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]
    job = WindowJob(
        grid=grid,
        bands=bands,
        scenes=tuple(stack.scenes),
        footprints=tuple(band_footprint(scene, bands, grid.crs) for scene in stack.scenes),
        mask_paths=mask_paths,
        exclude_codes=masks.exclude_codes,
        buffer_m=masks.buffer_m,
        q=float(settings.q),
        method=settings.method,
        key=key,
        no_valid=settings.no_valid,
        windows_dir=str(work_root / run_key / "windows"),
        temporal=temporal,
    )
    return job, run_key


def band_footprint(
    scene: StackScene, bands: tuple[str, ...], crs: CRS
) -> tuple[float, float, float, float]:
    """Bounds (in ``crs``) covered by every one of ``bands`` of ``scene``: windows outside them
    are not read (the reader refuses a window outside a layer)."""
    with scene.open() as opened:
        boxes = [opened.layer_grid(band).bounds_in(crs) for band in bands]
    return (
        max(box[0] for box in boxes),
        max(box[1] for box in boxes),
        min(box[2] for box in boxes),
        min(box[3] for box in boxes),
    )


def composite_windows(
    stack: Stack,
    masks: MaskSet,
    settings: CompositeSettings,
    grid: Grid,
    bands: tuple[str, ...],
    work_root: str | Path,
    executor: Executor,
    *,
    progress: bool = True,
    temporal: TemporalSettings | None = None,
) -> CompositeRun:
    """Compute every window not finished yet; returns the finished run (see the module docs).

    Scenes found unreadable on the way are dropped and the run restarts without them.
    """
    work_root = Path(work_root)
    windows = tile_windows(grid.height, grid.width, settings.window_size)
    while True:
        job, run_key = make_job(stack, masks, settings, grid, bands, work_root, temporal)
        Path(job.windows_dir).mkdir(parents=True, exist_ok=True)
        pending = [(i, w) for i, w in enumerate(windows) if not job.window_path(i).is_file()]
        reused = len(windows) - len(pending)
        log.info(
            "Composite %s: %d windows of %d px on a %dx%d grid, %d already done (work folder %s).",
            run_key, len(windows), settings.window_size, grid.height, grid.width, reused,
            work_root / run_key,
        )  # fmt: skip
        temporal_record = temporal_note(temporal, job, len(stack.scenes))
        failed: dict[str, str] = {}
        for outcome in executor.map(
            compute_window, job, pending, desc="composite windows", progress=progress
        ):
            if outcome.failed_scene is not None:
                failed[outcome.failed_scene] = outcome.error
                break  # stops the iteration: pending tasks are cancelled
        if not failed:
            return CompositeRun(
                job, windows, stack, run_key, work_root / run_key, reused, len(pending),
                temporal_record,
            )  # fmt: skip
        for scene_id, error in failed.items():
            log.warning(
                "Scene %s is unreadable (%s); dropping it and restarting the composite.",
                scene_id, error,
            )  # fmt: skip
        if not settings.keep_work:
            shutil.rmtree(work_root / run_key, ignore_errors=True)
        stack = stack.without(failed, "unreadable while compositing")
        if not stack.scenes:
            raise ValueError("Every scene of the stack turned out unreadable.")


def temporal_note(
    temporal: TemporalSettings | None, job: WindowJob, n_dates: int
) -> dict[str, Any] | None:
    """What ``run.json`` says of the temporal test; a stack too short for it is logged."""
    if temporal is None:
        return None
    reason = temporal.skip_reason(n_dates)
    if reason is not None and temporal.rule != "none":
        log.warning("Temporal test (masks.temporal=%s) not run: %s.", temporal.rule, reason)
    note = {**temporal.record(), "applied": job.temporal is not None, "skipped_because": reason}
    if job.temporal is not None:
        note["haze_guard"] = haze_guard_note(TemporalBands.resolve(job.bands), temporal.test)
        log.info("Temporal test haze guard %s.", note["haze_guard"])
    return note
