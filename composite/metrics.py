"""Evidence that a composite is cloud-free and seamless.

Most functions take reflectance arrays ``(band, y, x)`` float32 with NaN nodata (or paths, for
the seam measure) and return plain ``dict``s of floats, ready for the run JSON and W&B. Names:

- ``share_clear_obs_0`` / ``share_clear_obs_1_2`` / ``share_clear_obs_3plus``: how many clear
  observations stood behind each pixel (from the valid-count raster).
- ``residual_cloud`` / ``residual_shadow`` (simulated stacks, where the truth masks are known):
  share of the composite's pixels whose value is made of an observation the truth calls thick
  or thin cloud / cloud shadow, in any band: cloud or shadow that got through the masks.
  Which observations a value is made of comes from the percentile's ranks
  (:func:`percentile_observations`, for any method) or from the provenance raster of an
  observation-picking composite; :func:`truth_contamination` then looks them up in the truth.
- ``brighter_than_reference`` / ``darker_than_reference``: share of composite pixels brighter
  than a reference clear surface by more than an absolute tolerance / darker by more than a
  relative one. Cloud brightens and shadow darkens, but so does anything that makes the
  composite's date sample differ from the reference's: on a seasonal surface (snow, phenology)
  dropping the cloudy dates shifts the percentile too. Useful with a user-supplied reference on
  real data; on simulated stacks the residuals above are the measure of cloud.
- ``mae_<band>``, ``rmse_<band>``, ``ssim_<band>``: error against a reference clear surface.
- ``seam_mae``, ``seam_rmse``, ``seam_p99_abs``, ``seam_share_over_tol``: two overlapping
  composites compared on their overlap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
import torch
from rasterio.windows import from_bounds
from torchmetrics.functional.image import structural_similarity_index_measure

from cloudseg.labels import CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import band_indices, canonical_band_name
from cloudseg.sentinel2.grid import Grid
from composite.percentile import METHODS, NO_VALID_POLICIES
from composite.percentile.ranks import rank_table

#: Bands whose mean is the brightness compared with the reference.
BRIGHTNESS_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
#: Added visible reflectance beyond which a pixel counts as brighter than the reference (thin
#: cirrus adds 0.02-0.1; sensor noise stays below, a shifted seasonal sample may not).
BRIGHTER_TOLERANCE = 0.03
#: Relative darkening beyond which a pixel counts as darker than the reference (shadows remove
#: 50-80 %).
DARKER_TOLERANCE = 0.3
#: Truth classes whose observations make a composite value cloud- / shadow-contaminated.
CLOUD_CLASSES: tuple[int, ...] = (THICK_CLOUD, THIN_CLOUD)
SHADOW_CLASSES: tuple[int, ...] = (CLOUD_SHADOW,)
#: Key of an unusable observation when ranking uint16 values: sorts after (or ties with) every
#: kept value, and below the ranks of the kept ones it is never read.
_UNUSABLE_KEY = np.uint16(np.iinfo(np.uint16).max)


def observation_shares(count: np.ndarray, valid_area: np.ndarray | None = None) -> dict[str, float]:
    """Shares of pixels with 0, 1-2 and >= 3 clear observations (over ``valid_area`` if given)."""
    counts = count[valid_area] if valid_area is not None else count.ravel()
    if counts.size == 0:
        raise ValueError("No pixels to summarise: the valid area is empty.")
    return {
        "share_clear_obs_0": float(np.mean(counts == 0)),
        "share_clear_obs_1_2": float(np.mean((counts >= 1) & (counts <= 2))),
        "share_clear_obs_3plus": float(np.mean(counts >= 3)),
    }


def brightness(reflectance: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """Mean reflectance of the visible bands (NaN where any is nodata)."""
    return reflectance[band_indices(BRIGHTNESS_BANDS, bands)].mean(axis=0)


def brightness_against_reference(
    composite: np.ndarray,
    reference: np.ndarray,
    bands: Sequence[str],
    brighter_tolerance: float = BRIGHTER_TOLERANCE,
    darker_tolerance: float = DARKER_TOLERANCE,
) -> dict[str, float]:
    """Share of valid composite pixels brighter / darker than the reference
    (``brighter_than_reference`` / ``darker_than_reference``).

    Residual cloud brightens a pixel and residual shadow darkens it, but these shares also move
    with seasonal sampling: a composite that dropped the cloudy dates of a seasonal surface
    (snow, phenology) has another percentile than a reference made of all dates. Where the
    truth masks are known, :func:`truth_contamination` measures cloud and shadow themselves.
    """
    ours, truth = brightness(composite, bands), brightness(reference, bands)
    valid = np.isfinite(ours) & np.isfinite(truth)
    if not valid.any():
        raise ValueError("Composite and reference share no valid pixel.")
    ours, truth = ours[valid], truth[valid]
    return {
        "brighter_than_reference": float(np.mean(ours - truth > brighter_tolerance)),
        "darker_than_reference": float(np.mean(ours < (1.0 - darker_tolerance) * truth)),
    }


# -- residual cloud and shadow against the truth masks -------------------------------------------


@dataclass(frozen=True)
class TruthContamination:
    """Per-pixel ``(y, x)`` bool maps of what a composite's values are made of, by the truth."""

    cloud: np.ndarray
    """Some band's value is made of an observation the truth calls thick or thin cloud."""
    shadow: np.ndarray
    """Some band's value is made of an observation the truth calls cloud shadow."""
    valid: np.ndarray
    """The composite has a value (made of at least one observation)."""

    def counts(self) -> np.ndarray:
        """``[cloud, shadow, valid]`` pixel counts (int64), to sum over strips."""
        return np.array([self.cloud.sum(), self.shadow.sum(), self.valid.sum()], np.int64)


def residual_shares(counts: np.ndarray, name: str = "The composite") -> dict[str, float]:
    """``residual_cloud`` / ``residual_shadow`` from summed :meth:`TruthContamination.counts`
    (``name``: what the counts are of, for the error)."""
    cloud, shadow, valid = (int(value) for value in counts)
    if not valid:
        raise ValueError(f"{name} has no pixel with a value on the metrics grid.")
    return {"residual_cloud": cloud / valid, "residual_shadow": shadow / valid}


def truth_contamination(used: np.ndarray, truth: np.ndarray) -> TruthContamination:
    """What the observations ``used`` by a composite were, by the truth.

    used: ``(k, y, x)`` int date indices into ``truth`` of the observations the values are made
        of (one plane per band and order statistic, or per provenance band), -1 where none.
    truth: ``(time, y, x)`` uint8 truth classes (0 clear, 1 thick, 2 thin cloud, 3 shadow,
        255 nodata).
    """
    if used.ndim != 3 or truth.ndim != 3 or used.shape[1:] != truth.shape[1:]:
        raise ValueError(
            f"used {used.shape} must be (k, y, x) and truth {truth.shape} (time, y, x) with the "
            "same (y, x)."
        )
    rows, cols = np.indices(truth.shape[1:])
    cloud = np.zeros(truth.shape[1:], dtype=bool)
    shadow = np.zeros(truth.shape[1:], dtype=bool)
    for plane in used:
        drawn = plane >= 0
        classes = truth[np.where(drawn, plane, 0), rows, cols]
        cloud |= drawn & np.isin(classes, CLOUD_CLASSES)
        shadow |= drawn & np.isin(classes, SHADOW_CLASSES)
    return TruthContamination(cloud, shadow, (used >= 0).any(axis=0))


def percentile_observations(
    stack: np.ndarray,
    exclude: np.ndarray,
    q: float,
    method: str = "linear",
    *,
    nodata: int = 0,
    no_valid: str = "nodata",
) -> np.ndarray:
    """The observations each value of ``masked_percentile(stack, exclude, q, method=...)`` is
    made of: ``(2, band, y, x)`` int64 date indices, -1 where none.

    ``[0]`` is the lower order statistic (the picked one for lower/nearest), ``[1]`` the upper
    one of ``linear`` where its interpolation weight is not 0. Ranks and weights come from the
    kernel's own :func:`composite.percentile.ranks.rank_table`, and observations are kept as the
    kernel keeps them: not excluded and no band equal to ``nodata`` (an observation with nodata
    in one band is dropped from every band); with ``no_valid="all_observations"`` a pixel with
    nothing kept falls back to its observations ignoring ``exclude``. Ties: a value held by
    several kept observations is made of the earliest of them, the date the kernel's provenance
    records for lower/nearest.

    stack: ``(time, band, y, x)`` uint16 (harmonised DN); exclude: ``(time, y, x)`` bool.
    Memory: the stack, plus about 10 bytes per date and pixel for one band's ranking.
    """
    if stack.ndim != 4 or stack.dtype != np.uint16:
        raise ValueError(
            f"stack must be (time, band, y, x) uint16 DN, got {stack.shape} {stack.dtype}."
        )
    if exclude.shape != (stack.shape[0], *stack.shape[2:]):
        raise ValueError(f"exclude {exclude.shape} must be (time, y, x) of stack {stack.shape}.")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; use one of {METHODS}.")
    if no_valid not in NO_VALID_POLICIES:
        raise ValueError(f"no_valid={no_valid!r} is not a policy; use one of {NO_VALID_POLICIES}.")
    observed = (stack != nodata).all(axis=1)
    kept = observed & ~exclude
    if no_valid == "all_observations":
        kept |= observed & ~kept.any(axis=0)
    n_dates, n_bands = stack.shape[:2]
    kept = np.ascontiguousarray(kept.reshape(n_dates, -1).T)  # (pixel, time): sorts run along time
    n_kept = kept.sum(axis=1)
    table = rank_table(np.array([q], np.float64), n_dates, method, rank_dtype=np.int64)
    ranks = (table.lower[0][n_kept], table.upper[0][n_kept])
    counted = (n_kept > 0, (n_kept > 0) & (table.weight[0][n_kept] > 0))
    used = np.full((2, n_bands, kept.shape[0]), -1, np.int64)
    for band in range(n_bands):
        values = np.ascontiguousarray(stack[:, band].reshape(n_dates, -1).T)
        for side, dates in enumerate(dates_at_ranks(values, kept, ranks)):
            used[side, band] = np.where(counted[side], dates, -1)
    return used.reshape(2, *stack.shape[1:])


def dates_at_ranks(
    values: np.ndarray, kept: np.ndarray, ranks: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """For each rank array ``(pixel,)``, the date of the kept observation at that rank of
    ``values`` ``(pixel, time)`` uint16 in ascending order; of several kept observations with
    that value, the earliest."""
    keys = np.where(kept, values, _UNUSABLE_KEY)  # sorts after the kept values (ties: see below)
    ordered = np.sort(keys, axis=-1)
    dates = []
    for rank in ranks:
        value = np.take_along_axis(ordered, rank[:, None], axis=-1)
        dates.append(np.argmax((keys == value) & kept, axis=-1))  # the first kept date holding it
    return dates


def composite_truth_contamination(
    stack: np.ndarray,
    exclude: np.ndarray,
    truth: np.ndarray,
    q: float,
    method: str = "linear",
    *,
    nodata: int = 0,
    no_valid: str = "nodata",
) -> TruthContamination:
    """Which pixels of the masked percentile of ``stack`` draw on cloud / shadow observations by
    the ``truth`` classes ``(time, y, x)`` (see :func:`percentile_observations` for the stack,
    the exclusion and the ranks, :func:`truth_contamination` for the classes)."""
    if truth.shape != exclude.shape:
        raise ValueError(f"truth {truth.shape} must be (time, y, x) like exclude {exclude.shape}.")
    used = percentile_observations(stack, exclude, q, method, nodata=nodata, no_valid=no_valid)
    return truth_contamination(used.reshape(-1, *stack.shape[2:]), truth)


def surface_errors(
    composite: np.ndarray, reference: np.ndarray, bands: Sequence[str]
) -> dict[str, float]:
    """MAE, RMSE and SSIM per band against a reference clear surface, over pixels valid in both."""
    if composite.shape != reference.shape:
        raise ValueError(
            f"Composite {composite.shape} and reference {reference.shape} must have the same shape."
        )
    errors: dict[str, float] = {}
    for position, name in enumerate(bands):
        name = canonical_band_name(name)
        ours, truth = composite[position], reference[position]
        valid = np.isfinite(ours) & np.isfinite(truth)
        if not valid.any():
            raise ValueError(f"Band {name}: composite and reference share no valid pixel.")
        difference = ours[valid] - truth[valid]
        errors[f"mae_{name}"] = float(np.mean(np.abs(difference)))
        errors[f"rmse_{name}"] = float(np.sqrt(np.mean(difference**2)))
        errors[f"ssim_{name}"] = masked_ssim(ours, truth, valid)
    return errors


def masked_ssim(image: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    """SSIM (torchmetrics, Gaussian 11 px window) averaged over pixels valid in both images.

    Invalid pixels are filled with the reference before filtering, so they cannot add structure.
    """
    filled = np.where(valid, image, reference)
    filled = np.nan_to_num(filled, nan=0.0)
    target = np.nan_to_num(reference, nan=0.0)
    low, high = float(target[valid].min()), float(target[valid].max())
    _, ssim_map = structural_similarity_index_measure(
        torch.from_numpy(np.ascontiguousarray(filled, np.float32))[None, None],
        torch.from_numpy(np.ascontiguousarray(target, np.float32))[None, None],
        data_range=max(high - low, 1e-6),
        return_full_image=True,
    )
    return float(ssim_map[0, 0].numpy()[valid].mean())


def seam_error(
    composite_a: str | os.PathLike,
    composite_b: str | os.PathLike,
    tolerance: float = 0.01,
    max_pixels: int | None = None,
) -> dict[str, float]:
    """Compare two composites of neighbouring tiles on their overlap (same CRS and pixel grid).

    Reads only the overlap. Values are compared as reflectance (DN / 10000 for integer rasters) over
    pixels valid in both. Also reports the overlap size, so a tiny overlap is not over-read.
    ``max_pixels`` bounds memory: a larger overlap is read decimated by an integer factor (through
    the COG overviews), reported as ``seam_decimation`` (1: every pixel).
    """
    with rasterio.open(composite_a) as a, rasterio.open(composite_b) as b:
        grid_a, grid_b = Grid.from_dataset(a), Grid.from_dataset(b)
        if grid_a.crs != grid_b.crs or grid_a.resolution != grid_b.resolution:
            raise ValueError(
                f"{composite_a} and {composite_b} must share CRS and resolution to compare their "
                f"overlap (got {grid_a.crs}/{grid_a.resolution} m and {grid_b.crs}/{grid_b.resolution} m); "
                "composite both tiles onto one grid first."
            )
        if not grid_a.overlaps(grid_b):
            raise ValueError(f"{composite_a} and {composite_b} do not overlap.")
        left = max(grid_a.bounds[0], grid_b.bounds[0])
        bottom = max(grid_a.bounds[1], grid_b.bounds[1])
        right = min(grid_a.bounds[2], grid_b.bounds[2])
        top = min(grid_a.bounds[3], grid_b.bounds[3])
        values = []
        for dataset in (a, b):
            window = from_bounds(left, bottom, right, top, dataset.transform)
            window = window.round_offsets().round_lengths()
            height, width = int(window.height), int(window.width)
            factor = 1
            if max_pixels is not None and height * width > max_pixels:
                factor = math.ceil(math.sqrt(height * width / max_pixels))
            out_shape = (dataset.count, max(1, height // factor), max(1, width // factor))
            data = dataset.read(window=window, out_shape=out_shape, masked=True)
            data = data.astype(np.float32).filled(np.nan)
            if np.issubdtype(dataset.dtypes[0], np.integer):
                data /= 10000.0
            values.append(data)
    if values[0].shape != values[1].shape:
        raise ValueError(
            f"The overlap of {composite_a} and {composite_b} is not pixel-aligned "
            f"({values[0].shape} vs {values[1].shape}); use one grid origin for both tiles."
        )
    return {**seam_statistics(values[0], values[1], tolerance), "seam_decimation": factor}


def seam_statistics(first: np.ndarray, second: np.ndarray, tolerance: float) -> dict[str, float]:
    """The ``seam_*`` measures of two ``(bands, h, w)`` reflectance arrays of one overlap (NaN
    where a composite has no value): compared where both have one."""
    difference = first - second
    valid = np.isfinite(difference)
    if not valid.any():
        raise ValueError("The overlapping composites share no valid pixel.")
    absolute = np.abs(difference[valid])
    return {
        "seam_overlap_px": int(np.all(valid, axis=0).sum()),
        "seam_mae": float(absolute.mean()),
        "seam_rmse": float(np.sqrt(np.mean(absolute**2))),
        "seam_p99_abs": float(np.percentile(absolute, 99)),
        "seam_share_over_tol": float(np.mean(absolute > tolerance)),
    }
