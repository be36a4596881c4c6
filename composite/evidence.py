"""Evidence that a composite is cloud-free and seamless, computed in the same run.

:class:`EvidenceReporter` is the reporter :func:`composite.run.run_composite` attaches unless the
config says ``evaluation=none`` (its result is ``run.json["reports"]["evidence"]``). Once the main
composite is written, it

1. composites **baselines**: the same stack onto the same grid and bands with other mask sources
   (``evaluation.baselines``; ``none`` is Sentinel Hub's plain 25th percentile without SCL) into
   ``<out>/baselines/<source>/``, each with its own quicklooks and ``run.json``, through the main
   run's executor. A source that does not apply is skipped with its reason: the main run's own
   source; ``scl`` when a scene has no SCL layer; ``s2cloudless`` when a scene lacks one of its
   10 L1C bands (B10 included); ``model`` without ``ckpt``;
2. finds a **reference clear surface**: ``evaluation.reference`` (a reflectance COG with band
   descriptions), else, on a simulated stack (a ``stack.json`` listing each scene's truth next to
   the scenes), the same percentile settings applied to the truth surfaces with no masks on the
   same grid, written once per run to ``<out>/reference/``;
3. computes the **metrics** of every composite (main, baselines, the truth reference itself as a
   sanity row) with :mod:`composite.metrics`:

   - ``share_clear_obs_0`` / ``_1_2`` / ``_3plus`` from ``count.tif``, over the stack's footprint
     (pixels where at least one scene has data);
   - ``model_residual_cloud`` / ``model_residual_shadow``: the checkpoint (``ckpt``) run on the
     composite as a scene, exactly as the masks run it, written to ``<composite dir>/model_check/``;
     the share of its predicted pixels that are thick or thin cloud / cloud shadow;
   - ``residual_cloud`` / ``residual_shadow`` (simulated stacks, not the reference row): the
     share of pixels whose value, in any band, is made of an observation the truth masks call
     cloud (thick or thin) / shadow. For observation-picking methods the observations are the
     dates in ``provenance.tif``; for ``linear`` they are found again from the stack: each strip
     of the metrics grid is read as the composite's windows are (the composite's own stack and
     exclusion masks, :func:`composite.driver.read_window_stack`) and ranked with the kernel's
     ranks (:func:`composite.metrics.percentile_observations`);
   - against the reference: ``brighter_than_reference`` / ``darker_than_reference`` (brightness
     beyond a tolerance; they also move with seasonal sampling, see :mod:`composite.metrics`)
     and ``mae_<band>``, ``rmse_<band>``, ``ssim_<band>`` with their means over bands
     (``mae_mean``...);
   - ``seam_*`` (main composite only): the overlap with ``evaluation.compare_with``, another
     tile's composite.

   Metrics are computed on the composite grid when it has at most ``evaluation.max_pixels``
   pixels, else on that grid decimated by an integer factor (rasterio ``out_shape`` reads through
   the COG overviews; reflectance through the scene reader); ``run.json`` records which. The
   table goes to ``<out>/metrics.json`` (``{composite: {metric: value}}``) and ``<out>/metrics.md``;
4. writes ``<out>/composite_rgb.png``, ``<out>/composite_gray.png`` and ``<out>/map.html`` (an
   offline Leaflet page: the composite, each baseline, the truth reference, the valid-count raster;
   an info panel with dates, percentile, mask source and headline metrics);
5. logs the table, headline scalars and quicklooks to W&B when ``logger=wandb``
   (:mod:`composite.wandb_log`).

Names of the table's rows: ``composite`` (the main run), ``baseline_<source>``, ``reference``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from tqdm.auto import tqdm

from cloudseg.labels import CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import RGB_BANDS
from cloudseg.sentinel2.cog import atomic_path
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import open_scene
from composite.cluster import Executor
from composite.driver import COMPOSITE_NODATA, GDAL_CACHE_MB, make_job, read_window_stack
from composite.masking import (
    MASK_SOURCES,
    InferenceSettings,
    MaskSettings,
    load_predictor,
    read_classes,
    required_bands,
)
from composite.metrics import (
    BRIGHTNESS_BANDS,
    brightness_against_reference,
    composite_truth_contamination,
    observation_shares,
    residual_shares,
    seam_error,
    surface_errors,
    truth_contamination,
)
from composite.outputs import write_json
from composite.pipeline import CompositeResult, composite_stack
from composite.quicklook import DEFAULT_STRETCH, auto_stretch, read_bands_preview, write_quicklooks
from composite.stack import Stack, StackSettings, build_stack
from composite.wandb_log import log_evidence
from composite.webmap import MapLayer, count_map_layer, map_layers_from_cog, write_map_page

if TYPE_CHECKING:
    from cloudseg.inference.predictor import WindowedPredictor

log = logging.getLogger(__name__)

MAIN = "composite"
REFERENCE = "reference"
METRICS_JSON = "metrics.json"
METRICS_MD = "metrics.md"
MAP_PAGE = "map.html"
#: Metrics logged as W&B scalars (``<composite>/<metric>``) and shown on the map page.
HEADLINE_METRICS: tuple[str, ...] = (
    "share_clear_obs_0",
    "share_clear_obs_3plus",
    "residual_cloud",
    "residual_shadow",
    "brighter_than_reference",
    "darker_than_reference",
    "model_residual_cloud",
    "model_residual_shadow",
    "mae_mean",
    "ssim_mean",
    "seam_mae",
    "seam_p99_abs",
)
#: Memory for one strip of truth masks with provenance or the stack, when finding residual cloud.
STRIP_BYTES = 256 << 20


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
    """

    baselines: tuple[str, ...] = ("none", "scl", "s2cloudless")
    reference: str | None = None
    truth: bool = True
    model_residual: bool = True
    compare_with: str | None = None
    seam_tolerance: float = 0.01
    max_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        baselines = tuple(self.baselines or ())
        unknown = [source for source in baselines if source not in MASK_SOURCES]
        if unknown:
            raise ValueError(
                f"evaluation.baselines lists {unknown}; use mask sources among {list(MASK_SOURCES)}."
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
    ``logger``); ``None`` when ``evaluation`` is null (``evaluation=none``: no evidence)."""
    if config.get("evaluation", {}) is None:
        return None
    evaluation = dict(config.get("evaluation") or {})
    quicklook = dict(config.get("quicklook") or {})
    return EvidenceSettings(
        evaluation=EvaluationSettings(**evaluation),
        quicklook=QuicklookSettings(**quicklook),
        logger=dict(config.get("logger") or {}) or None,
    )


# -- baselines ---------------------------------------------------------------------------------


def plan_baselines(
    sources: Iterable[str], masks: MaskSettings, stack: Stack
) -> tuple[dict[str, MaskSettings], dict[str, str]]:
    """The mask settings of each baseline that applies to ``stack``, and why the others do not."""
    planned: dict[str, MaskSettings] = {}
    skipped: dict[str, str] = {}
    for source in sources:
        if source == masks.source:
            skipped[source] = "the main composite uses this mask source"
            continue
        if source == "model" and not masks.checkpoint:
            skipped[source] = "no checkpoint: pass ckpt=/path/to/best.ckpt"
            continue
        settings = dataclasses.replace(masks, source=source)
        needed = required_bands(settings)
        lacking = [s for s in stack.scenes if any(band not in s.bands for band in needed)]
        if lacking:
            missing = sorted({band for band in needed if band not in lacking[0].bands})
            skipped[source] = (
                f"{len(lacking)} of {len(stack)} scenes lack layers it needs (e.g. "
                f"{lacking[0].scene_id} lacks {missing})"
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


# -- the simulator's truth and the reference surface ---------------------------------------------


@dataclass(frozen=True)
class StackTruth:
    """A simulated stack's truth for the scenes of a stack (``stack.json`` of
    :func:`cloudseg.data.simulate.products.write_stack`)."""

    description: Path
    #: Truth surface (reflectance x 10000, offset 0) of each scene, in stack order.
    surfaces: tuple[str, ...]
    #: Sensing dates ``YYYYMMDD`` (as in ``provenance.tif``), ascending, and their truth masks.
    mask_dates: np.ndarray
    mask_paths: tuple[str, ...]


def find_truth(source: str | Sequence[str], stack: Stack) -> StackTruth | None:
    """The truth of ``stack`` when its source is a simulated stack folder (or its ``scenes/``)
    whose ``stack.json`` lists every scene; ``None`` otherwise."""
    if not isinstance(source, str) or not Path(source).is_dir():
        return None
    folder = Path(source)
    candidates = [folder / "stack.json"]
    if folder.name == "scenes":
        candidates.append(folder.parent / "stack.json")
    description = next((path for path in candidates if path.is_file()), None)
    if description is None:
        return None
    root = description.parent
    entries = json.loads(description.read_text())["dates"]
    by_scene = {(root / entry["scene"]).resolve(): entry for entry in entries}
    chosen = []
    for scene in stack.scenes:
        entry = by_scene.get(Path(scene.source).resolve())
        if entry is None:
            log.warning(
                "%s does not list scene %s: no truth metrics for this stack.", description,
                scene.source,
            )  # fmt: skip
            return None
        chosen.append(entry)
    dates = [int(scene.datetime.strftime("%Y%m%d")) for scene in stack.scenes]
    if len(set(dates)) != len(dates):
        log.warning("Two scenes of the stack share a sensing date: no truth metrics.")
        return None
    order = np.argsort(dates)
    return StackTruth(
        description=description,
        surfaces=tuple(str(root / entry["surface"]) for entry in chosen),
        mask_dates=np.asarray(dates, dtype=np.uint32)[order],
        mask_paths=tuple(str(root / chosen[i]["mask"]) for i in order),
    )


@dataclass(frozen=True)
class Reference:
    """The clear surface the composites are measured against."""

    path: Path
    kind: str  # "truth": the truth surfaces' composite; "file": evaluation.reference
    result: CompositeResult | None = None  # the truth composite (a row of the table)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}


# -- reading on the metrics grid -----------------------------------------------------------------


@dataclass(frozen=True)
class MetricsView:
    """The grid metrics are computed on: the composite grid, or it decimated by ``factor``
    (floor: a partial block at the right/bottom edge is left out), and the stack's footprint on
    it (pixels where at least one scene has data)."""

    composite_grid: Grid
    grid: Grid
    factor: int
    footprint: np.ndarray
    max_pixels: int

    def record(self) -> dict[str, Any]:
        return {
            "read": "full" if self.factor == 1 else "decimated",
            "factor": self.factor,
            "shape": [self.grid.height, self.grid.width],
            "max_pixels": self.max_pixels,
            "footprint_pixels": int(self.footprint.sum()),
        }


def metrics_grid(grid: Grid, max_pixels: int) -> tuple[Grid, int]:
    """``grid`` decimated by the smallest integer factor that leaves at most ``max_pixels``."""
    factor = max(1, math.ceil(math.sqrt(grid.height * grid.width / max_pixels)))
    if factor == 1:
        return grid, 1
    decimated = Grid(
        grid.crs,
        grid.transform * Affine.scale(factor),
        max(1, grid.height // factor),
        max(1, grid.width // factor),
    )
    return decimated, factor


def stack_footprint(stack: Stack, band: str, grid: Grid, progress: bool = True) -> np.ndarray:
    """True where at least one scene of ``stack`` has data in ``band`` on ``grid``."""
    footprint = np.zeros(grid.shape, dtype=bool)
    for scene in tqdm(stack.scenes, desc="stack footprint", unit="scene", disable=not progress):
        with scene.open() as opened:
            footprint |= opened.read([band], grid=grid)[0] != 0
    return footprint


def metrics_view(
    grid: Grid, stack: Stack, band: str, max_pixels: int, progress: bool = True
) -> MetricsView:
    view_grid, factor = metrics_grid(grid, max_pixels)
    footprint = stack_footprint(stack, band, view_grid, progress)
    return MetricsView(grid, view_grid, factor, footprint, max_pixels)


def read_on_view(
    path: str | Path,
    view: MetricsView,
    indexes: Sequence[int] = (1,),
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Stored values (counts, dates, classes) of a raster on the composite grid, on the metrics
    grid by nearest neighbour: ``(len(indexes), rows, width)``."""
    first, last = rows or (0, view.grid.height)
    factor = view.factor
    window = Window(0, first * factor, view.grid.width * factor, (last - first) * factor)
    with rasterio.open(path) as dataset:
        if Grid.from_dataset(dataset) != view.composite_grid:
            raise ValueError(f"{path} is not on the composite grid; cannot read it for metrics.")
        return dataset.read(
            list(indexes),
            window=window,
            out_shape=(len(indexes), last - first, view.grid.width),
            resampling=Resampling.nearest,
        )


def read_reflectance(path: str | Path, bands: Sequence[str], view: MetricsView) -> np.ndarray:
    """Reflectance (float32, NaN nodata) of ``bands`` of a composite or reference COG on the
    metrics grid, through the scene reader (exact where aligned, bilinear otherwise)."""
    with open_scene(path) as scene:
        missing = [band for band in bands if band not in scene.bands]
        if missing:
            raise ValueError(
                f"{path} has no bands {missing} (it has {list(scene.bands)}); a reference must "
                "hold the composite's bands, named in its band descriptions."
            )
        return scene.read_reflectance(bands, grid=view.grid)


# -- metrics of one composite ------------------------------------------------------------------


def reference_metrics(
    composite: Path, reference: Path, bands: Sequence[str], view: MetricsView
) -> dict[str, float]:
    """Brighter/darker than the reference and per-band errors (with their means) against it,
    one band at a time; brighter/darker need B02, B03 and B04."""
    metrics: dict[str, float] = {}
    if all(band in bands for band in BRIGHTNESS_BANDS):
        metrics.update(
            brightness_against_reference(
                read_reflectance(composite, BRIGHTNESS_BANDS, view),
                read_reflectance(reference, BRIGHTNESS_BANDS, view),
                BRIGHTNESS_BANDS,
            )
        )
    errors: dict[str, float] = {}
    for band in bands:
        errors.update(
            surface_errors(
                read_reflectance(composite, [band], view),
                read_reflectance(reference, [band], view),
                [band],
            )
        )
    metrics.update(errors)
    for kind in ("mae", "rmse", "ssim"):
        values = [errors[f"{kind}_{band}"] for band in bands]
        metrics[f"{kind}_mean"] = float(np.mean(values))
    return metrics


def model_residual(
    composite: Path, predictor: WindowedPredictor, inference: InferenceSettings, view: MetricsView
) -> dict[str, float]:
    """Run the checkpoint on the composite as on a scene (``predict_scene`` with the masks'
    inference settings) and return the shares of its predicted pixels that are cloud (thick or
    thin) and shadow. The class and probability COGs stay in ``<composite dir>/model_check/``."""
    from cloudseg.inference.predict import output_paths, predict_scene

    classes_path, probabilities_path = output_paths(composite.parent / "model_check", "composite")
    with open_scene(composite) as scene:
        predict_scene(
            predictor,
            scene,
            classes_path,
            probabilities_path,
            resolution=inference.resolution,
            cloud_threshold=inference.cloud_threshold,
            clear_threshold=inference.clear_threshold,
            tags={"SCENE_ID": f"composite {composite}"},
        )
    classes = read_on_view(classes_path, view)[0]
    predicted = classes != IGNORE_INDEX
    if not predicted.any():
        raise ValueError(f"The model predicted no pixel of {composite} (all nodata?).")
    classes = classes[predicted]
    return {
        "model_residual_cloud": float(np.isin(classes, (THICK_CLOUD, THIN_CLOUD)).mean()),
        "model_residual_shadow": float((classes == CLOUD_SHADOW).mean()),
    }


def truth_indices(dates: np.ndarray, truth: StackTruth) -> np.ndarray:
    """Provenance dates ``YYYYMMDD`` -> index into ``truth.mask_dates`` (-1 where 0: nodata)."""
    positions = np.searchsorted(truth.mask_dates, dates)
    positions = np.clip(positions, 0, len(truth.mask_dates) - 1)
    picked = dates != 0
    unknown = picked & (truth.mask_dates[positions] != dates)
    if unknown.any():
        raise ValueError(
            f"Provenance date {int(dates[unknown][0])} is not a scene of the truth in "
            f"{truth.description}; was the composite made from another stack?"
        )
    return np.where(picked, positions, -1)


def stack_truth_indices(stack: Stack, truth: StackTruth) -> np.ndarray:
    """Index into ``truth.mask_paths`` of each scene of ``stack``, in stack order."""
    dates = np.array([int(s.datetime.strftime("%Y%m%d")) for s in stack.scenes], np.uint32)
    return truth_indices(dates, truth)


def read_truth_masks(truth: StackTruth, indices: Iterable[int], grid: Grid) -> np.ndarray:
    """``(len(indices), y, x)`` truth classes of the scenes ``indices`` on ``grid``."""
    return np.stack([read_classes(truth.mask_paths[index], grid) for index in indices])


def view_strips(view: MetricsView, bytes_per_pixel: int) -> Iterator[Window]:
    """Full-width windows of the metrics grid of at most ``STRIP_BYTES`` at ``bytes_per_pixel``."""
    width = view.grid.width
    rows = max(1, STRIP_BYTES // (bytes_per_pixel * width))
    for first in range(0, view.grid.height, rows):
        yield Window(0, first, width, min(rows, view.grid.height - first))


def picked_dates_contamination(
    provenance: Path, truth: StackTruth, view: MetricsView
) -> dict[str, float]:
    """``residual_cloud`` / ``residual_shadow`` of an observation-picking composite: the dates
    of ``provenance`` (every band) looked up in the truth masks, strip by strip (truth masks of
    all dates for a strip of rows at a time: memory stays at ``STRIP_BYTES``)."""
    with rasterio.open(provenance) as dataset:
        n_bands = dataset.count
    # per pixel: one uint8 mask per date, a uint32 date and an int64 index per band, temporaries
    bytes_per_pixel = len(truth.mask_paths) + 12 * n_bands + 32
    totals = np.zeros(3, np.int64)
    for window in view_strips(view, bytes_per_pixel):
        rows = (window.row_off, window.row_off + window.height)
        masks = read_truth_masks(truth, range(len(truth.mask_paths)), view.grid.window_grid(window))
        dates = read_on_view(provenance, view, range(1, n_bands + 1), rows=rows)
        used = np.stack([truth_indices(band_dates, truth) for band_dates in dates])
        totals += truth_contamination(used, masks).counts()
    return residual_shares(totals, f"{provenance}")


def percentile_contamination(
    composite: CompositeResult, truth: StackTruth, view: MetricsView, work_dir: str | Path
) -> dict[str, float]:
    """``residual_cloud`` / ``residual_shadow`` of a composite that records no dates
    (``linear``): each strip of the metrics grid is read as the composite's windows are (its
    stack, bands and exclusion masks through :func:`composite.driver.make_job` and
    :func:`composite.driver.read_window_stack`, onto the metrics grid) and the observations its
    percentile is made of are found with the kernel's ranks, then looked up in the truth masks."""
    settings = composite.settings
    job, _ = make_job(
        composite.stack, composite.masks, settings, view.grid, composite.bands, Path(work_dir)
    )
    order = stack_truth_indices(composite.stack, truth)
    n_dates, n_bands = len(job.scenes), len(job.bands)
    # per pixel and date: uint16 per band, exclusion, truth class, ~17 B of one band's ranking
    bytes_per_pixel = n_dates * (2 * n_bands + 20) + 16 * n_bands
    totals = np.zeros(3, np.int64)
    for window in view_strips(view, bytes_per_pixel):
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            stack, exclude = read_window_stack(job, window)
        masks = read_truth_masks(truth, order, view.grid.window_grid(window))
        contamination = composite_truth_contamination(
            stack, exclude, masks, settings.q, settings.method, nodata=COMPOSITE_NODATA,
            no_valid=settings.no_valid,
        )  # fmt: skip
        totals += contamination.counts()
    return residual_shares(totals, f"{composite.outputs.composite}")


# -- the reporter --------------------------------------------------------------------------------


class EvidenceReporter:
    """Baselines, reference, metrics, pictures and W&B for a finished composite (see the module
    docstring), called with the main :class:`CompositeResult`.

    Besides its own settings it needs the main run's mask settings (baselines vary their source;
    ``ckpt`` runs on the composites), the stack's source (a simulated stack's truth), the work
    folder and the executor the baselines run on, and the config to log to W&B.
    """

    def __init__(
        self,
        settings: EvidenceSettings,
        *,
        masks: MaskSettings,
        stack_source: str | Sequence[str],
        work_dir: str | Path,
        executor: Executor,
        progress: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.masks = masks
        self.stack_source = stack_source
        self.work_dir = work_dir
        self.executor = executor
        self.progress = progress
        self.config = dict(config or {})

    @property
    def evaluation(self) -> EvaluationSettings:
        return self.settings.evaluation

    def __call__(self, result: CompositeResult) -> dict[str, Any]:
        out_dir = result.outputs.out_dir
        timing: dict[str, float] = {}
        stretch = self.shared_stretch(result)
        report: dict[str, Any] = {
            "quicklooks": quicklook_reporter(self.settings.quicklook, stretch)(result)
        }
        with timed(timing, "baselines"):
            planned, skipped = plan_baselines(self.evaluation.baselines, self.masks, result.stack)
            baselines = {
                source: self.composite_again(
                    result, result.stack, masks, out_dir / "baselines" / source, stretch
                )
                for source, masks in planned.items()
            }
        report["baselines"] = {
            "computed": {source: str(b.outputs.out_dir) for source, b in baselines.items()},
            "skipped": skipped,
        }
        with timed(timing, "reference"):
            truth = find_truth(self.stack_source, result.stack) if self.evaluation.truth else None
            reference = self.reference(result, truth, stretch)
        report["reference"] = reference.record() if reference else None
        composites = {MAIN: result, **{f"baseline_{s}": b for s, b in baselines.items()}}
        if reference is not None and reference.result is not None:
            composites[REFERENCE] = reference.result
        with timed(timing, "metrics"):
            view, table, not_computed = self.measure(composites, reference, truth)
        report["metrics_grid"] = view.record()
        report["metrics"] = table
        report["not_computed"] = not_computed
        write_json(out_dir / METRICS_JSON, table)
        with atomic_path(out_dir / METRICS_MD) as tmp:
            tmp.write_text(metrics_markdown(table, composites))
        report["metrics_json"], report["metrics_md"] = METRICS_JSON, METRICS_MD
        with timed(timing, "map"):
            report["map"] = self.map_page(result, composites, table, stretch).name
        with timed(timing, "wandb"):
            report["wandb"] = log_evidence(
                self.settings.logger,
                out_dir,
                table=table,
                headline=headline(table),
                images=self.quicklook_images(composites),
                config=self.config,
            )
        report["timing_s"] = {key: round(value, 3) for key, value in timing.items()}
        return report

    def measure(
        self,
        composites: Mapping[str, CompositeResult],
        reference: Reference | None,
        truth: StackTruth | None,
    ) -> tuple[MetricsView, dict[str, dict[str, float]], dict[str, dict[str, str]]]:
        """The metrics grid, the table and, per composite, why some metrics were not computed."""
        main = composites[MAIN]
        view = metrics_view(
            main.grid, main.stack, main.bands[0], self.evaluation.max_pixels, self.progress
        )
        table: dict[str, dict[str, float]] = {}
        not_computed: dict[str, dict[str, str]] = {}
        for name, composite in tqdm(
            composites.items(), desc="composite metrics", disable=not self.progress
        ):
            table[name], why = self.metrics(name, composite, reference, truth, view)
            if why:
                not_computed[name] = why
        if self.evaluation.compare_with:
            table[MAIN].update(
                seam_error(
                    main.outputs.composite,
                    self.evaluation.compare_with,
                    tolerance=self.evaluation.seam_tolerance,
                    max_pixels=self.evaluation.max_pixels,
                )
            )
        return view, table, not_computed

    def shared_stretch(self, result: CompositeResult) -> tuple[float, float]:
        """The stretch every picture uses; ``auto``: from the main composite's RGB preview."""
        stretch = self.settings.quicklook.stretch
        if stretch != "auto":
            return tuple(stretch)
        if not all(band in result.bands for band in RGB_BANDS):
            return DEFAULT_STRETCH
        rgb, _ = read_bands_preview(
            result.outputs.composite, RGB_BANDS, self.settings.quicklook.max_size
        )
        return auto_stretch(rgb)

    def composite_again(
        self,
        result: CompositeResult,
        stack: Stack,
        masks: MaskSettings,
        out_dir: Path,
        stretch: tuple[float, float],
    ) -> CompositeResult:
        """``stack`` composited like the main run (same grid, bands and percentile settings)
        with ``masks``, into ``out_dir``, with its quicklooks."""
        log.info("Compositing %s (mask source %s) for comparison.", out_dir, masks.source)
        return composite_stack(
            stack,
            masks,
            dataclasses.replace(result.settings, bands=result.bands),
            out_dir=out_dir,
            work_dir=self.work_dir,
            executor=self.executor,
            grid=result.grid,
            config={"compared_with": str(result.outputs.out_dir)},
            reporters={"quicklooks": quicklook_reporter(self.settings.quicklook, stretch)},
            progress=self.progress,
        )

    def reference(
        self,
        result: CompositeResult,
        truth: StackTruth | None,
        stretch: tuple[float, float],
    ) -> Reference | None:
        """``evaluation.reference``, else the truth surfaces composited without masks."""
        if self.evaluation.reference:
            return Reference(Path(self.evaluation.reference), "file")
        if truth is None:
            return None
        log.info("Simulated stack (%s): compositing its truth surfaces.", truth.description)
        truth_stack = build_stack(
            StackSettings(source=truth.surfaces, deduplicate=False), progress=self.progress
        )
        composite = self.composite_again(
            result,
            truth_stack,
            MaskSettings(source="none", cache_dir=self.masks.cache_dir),
            result.outputs.out_dir / "reference",
            stretch,
        )
        return Reference(composite.outputs.composite, "truth", composite)

    def metrics(
        self,
        name: str,
        composite: CompositeResult,
        reference: Reference | None,
        truth: StackTruth | None,
        view: MetricsView,
    ) -> tuple[dict[str, float], dict[str, str]]:
        """The metrics of one composite, and why the ones it lacks were not computed."""
        metrics = observation_shares(read_on_view(composite.outputs.count, view)[0], view.footprint)
        missing: dict[str, str] = {}
        if metrics["share_clear_obs_0"] == 1.0:
            log.warning(
                "%s has no valid pixel: every observation was masked (masks.inference."
                "clear_threshold or masks.exclude too strict for this model?).",
                composite.outputs.composite,
            )
            return metrics, {"all": "the composite has no valid pixel (every observation masked)"}
        masks = self.masks
        if not (self.evaluation.model_residual and masks.checkpoint):
            missing["model_residual"] = "no checkpoint (ckpt) or evaluation.model_residual=false"
        else:
            predictor = load_predictor(masks.checkpoint, masks.inference, self.progress)
            lacking = [band for band in predictor.bands if band not in composite.bands]
            if lacking:
                missing["model_residual"] = f"the composite lacks the model's bands {lacking}"
            else:
                metrics.update(
                    model_residual(composite.outputs.composite, predictor, masks.inference, view)
                )
        if reference is None:
            missing["reference"] = "no evaluation.reference and no simulated truth"
        else:
            metrics.update(
                reference_metrics(
                    composite.outputs.composite, reference.path, composite.bands, view
                )
            )
            if not all(band in composite.bands for band in BRIGHTNESS_BANDS):
                missing["brightness"] = (
                    f"brighter/darker_than_reference need {list(BRIGHTNESS_BANDS)}"
                )
        if name == REFERENCE:
            missing["residual"] = "the reference is the truth surfaces: none of it is cloud"
        elif truth is None:
            missing["residual"] = (
                "residual cloud/shadow need a simulated stack's truth masks (stack.json) and "
                "evaluation.truth=true; brighter/darker_than_reference compare brightness instead"
            )
        else:
            metrics.update(self.residual(composite, truth, view))
        return metrics, missing

    def residual(
        self, composite: CompositeResult, truth: StackTruth, view: MetricsView
    ) -> dict[str, float]:
        """``residual_cloud`` / ``residual_shadow``: the observations a composite is made of,
        from its provenance when it records them, else from its stack and masks."""
        if composite.outputs.provenance is not None:
            return picked_dates_contamination(composite.outputs.provenance, truth, view)
        return percentile_contamination(composite, truth, view, self.work_dir)

    def map_page(
        self,
        result: CompositeResult,
        composites: Mapping[str, CompositeResult],
        table: Mapping[str, Mapping[str, float]],
        stretch: tuple[float, float],
    ) -> Path:
        """``<out>/map.html``: every composite of the table and the main valid-count raster."""
        bands = RGB_BANDS if all(band in result.bands for band in RGB_BANDS) else result.bands
        layers: list[MapLayer] = []
        bounds = None
        for name, composite in composites.items():
            layer, layer_bounds = map_layers_from_cog(
                composite.outputs.composite,
                name=layer_name(name, composite),
                bands=bands,
                max_size=self.settings.quicklook.max_size,
                stretch=stretch,
                visible=name == MAIN,
            )
            layers.append(layer)
            bounds = bounds or layer_bounds
        count_layer, _ = count_map_layer(
            result.outputs.count,
            name=f"valid observations (0 red, 1..{len(result.stack)} dark to bright)",
            max_count=len(result.stack),
            max_size=self.settings.quicklook.max_size,
        )
        layers.append(count_layer)
        return write_map_page(
            result.outputs.out_dir / MAP_PAGE,
            layers,
            bounds,
            title="cloudfree composite",
            info=map_info(result, table),
        )

    @staticmethod
    def quicklook_images(composites: Mapping[str, CompositeResult]) -> dict[str, Path]:
        """The quicklook PNGs that exist, as ``<composite>_rgb``/``<composite>_gray``."""
        images = {}
        for name, composite in composites.items():
            for kind in ("rgb", "gray"):
                path = composite.outputs.out_dir / f"composite_{kind}.png"
                if path.is_file():
                    images[f"{name}_{kind}"] = path
        return images


@contextmanager
def timed(timing: dict[str, float], key: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timing[key]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timing[key] = timing.get(key, 0.0) + time.perf_counter() - started


# -- tables and captions -----------------------------------------------------------------------


def layer_name(name: str, composite: CompositeResult) -> str:
    """The map's name for a composite of the table."""
    if name == REFERENCE:
        return "reference: truth surfaces, no masks"
    label = "composite" if name == MAIN else "baseline"
    return f"{label}: {composite.masks.source} masks"


def headline(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``<composite>/<metric>`` for the :data:`HEADLINE_METRICS` each composite has."""
    return {
        f"{name}/{metric}": row[metric]
        for name, row in table.items()
        for metric in HEADLINE_METRICS
        if metric in row
    }


def map_info(result: CompositeResult, table: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """The map page's info panel: what went in, and the main composite's headline metrics."""
    dates = [scene.datetime.date() for scene in result.stack.scenes]
    info = {
        "dates": f"{len(dates)} scenes, {min(dates)} to {max(dates)}",
        "percentile": f"q={result.settings.q:g}, {result.settings.method}",
        "mask source": result.masks.source,
    }
    for metric in HEADLINE_METRICS:
        values = {name: row[metric] for name, row in table.items() if metric in row}
        if values:
            info[metric] = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
    return info


def metrics_markdown(
    table: Mapping[str, Mapping[str, float]], composites: Mapping[str, CompositeResult]
) -> str:
    """The table as markdown, one row per metric and one column per composite."""
    names = list(table)
    metrics: dict[str, None] = {}
    for row in table.values():
        metrics.update(dict.fromkeys(row))
    header = ["metric", *(f"{name} ({composites[name].masks.source})" for name in names)]
    lines = [
        "# Composite metrics",
        "",
        "Columns: the composites (mask source); definitions in composite/evidence.py.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for metric in metrics:
        cells = [_format(table[name].get(metric)) for name in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
