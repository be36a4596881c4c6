"""What a composite is still made of: the surface errors against a reference, and the three ways
of finding residual cloud and shadow (the checkpoint run on the composite; the truth masks of the
dates an observation-picking composite records; the observations a ``linear`` percentile is
made of, found again with the kernel's ranks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio

from cloudseg.labels import CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.reader import open_scene
from composite.driver import COMPOSITE_NODATA, GDAL_CACHE_MB, make_job, read_window_stack
from composite.evidence.truth import (
    StackTruth,
    read_truth_masks,
    stack_truth_indices,
    truth_indices,
)
from composite.evidence.view import MetricsView, read_on_view, read_reflectance, view_strips
from composite.metrics import (
    BRIGHTNESS_BANDS,
    brightness_against_reference,
    composite_truth_contamination,
    residual_shares,
    surface_errors,
    truth_contamination,
)
from composite.pipeline import CompositeResult

if TYPE_CHECKING:
    from cloudseg.inference.predictor import WindowedPredictor


@dataclass(frozen=True)
class Reference:
    """The clear surface the composites are measured against."""

    path: Path
    kind: str  # "truth": the truth surfaces' composite; "file": evaluation.reference
    result: CompositeResult | None = None  # the truth composite (a row of the table)

    def record(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}


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
    composite: Path, predictor: WindowedPredictor, view: MetricsView
) -> dict[str, float]:
    """Run the checkpoint on the composite as on a scene (``predict_scene`` with the masks'
    inference spec) and return the shares of its predicted pixels that are cloud (thick or
    thin) and shadow. The class and probability COGs stay in ``<composite dir>/model_check/``."""
    from cloudseg.inference.predict import output_paths, predict_scene

    classes_path, probabilities_path = output_paths(composite.parent / "model_check", "composite")
    with open_scene(composite) as scene:
        predict_scene(
            predictor,
            scene,
            classes_path,
            probabilities_path,
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
    stack, bands and exclusion (single-date masks and the temporal test, as the composite
    ran) through :func:`composite.driver.make_job` and
    :func:`composite.driver.read_window_stack`, onto the metrics grid) and the observations its
    percentile is made of are found with the kernel's ranks, then looked up in the truth masks."""
    settings = composite.settings
    job, _ = make_job(
        composite.stack, composite.masks, settings, view.grid, composite.bands, Path(work_dir),
        composite.temporal,
    )  # fmt: skip
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
