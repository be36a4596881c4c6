"""Evidence that a composite is cloud-free and seamless.

All functions take reflectance arrays ``(band, y, x)`` float32 with NaN nodata (or paths, for the
seam measure) and return plain ``dict``s of floats, ready for the run JSON and W&B. Names:

- ``share_clear_obs_0`` / ``share_clear_obs_1_2`` / ``share_clear_obs_3plus``: how many clear
  observations stood behind each pixel (from the valid-count raster).
- ``residual_cloud`` / ``residual_shadow``: share of composite pixels brighter than the cloud-free
  reference by more than an absolute tolerance (cloud adds reflectance) / darker by more than a
  relative tolerance (shadow scales it down): cloud or shadow that got through.
- ``picked_contaminated``: for observation-picking methods on simulated stacks, the share of pixels
  whose chosen date was truly cloud or shadow there (exact, from the truth masks).
- ``mae_<band>``, ``rmse_<band>``, ``ssim_<band>``: error against a reference clear surface.
- ``seam_mae``, ``seam_rmse``, ``seam_p99_abs``, ``seam_share_over_tol``: two overlapping
  composites compared on their overlap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import rasterio
import torch
from rasterio.windows import from_bounds
from torchmetrics.functional.image import structural_similarity_index_measure

from cloudseg.sentinel2.bands import band_indices, canonical_band_name
from cloudseg.sentinel2.grid import Grid

#: Bands whose mean is the brightness used to spot residual cloud (bright) and shadow (dark).
BRIGHTNESS_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
#: Added visible reflectance beyond which a pixel counts as cloud-contaminated (thin cirrus adds
#: 0.02-0.1; sensor noise and the seasonal spread of a percentile stay below).
CLOUD_TOLERANCE = 0.03
#: Relative darkening beyond which a pixel counts as shadow-contaminated (shadows remove 50-80 %).
SHADOW_TOLERANCE = 0.3


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


def residual_contamination(
    composite: np.ndarray,
    reference: np.ndarray,
    bands: Sequence[str],
    cloud_tolerance: float = CLOUD_TOLERANCE,
    shadow_tolerance: float = SHADOW_TOLERANCE,
) -> dict[str, float]:
    """Share of valid composite pixels brighter (cloud) or darker (shadow) than the reference."""
    ours, truth = brightness(composite, bands), brightness(reference, bands)
    valid = np.isfinite(ours) & np.isfinite(truth)
    if not valid.any():
        raise ValueError("Composite and reference share no valid pixel.")
    ours, truth = ours[valid], truth[valid]
    return {
        "residual_cloud": float(np.mean(ours - truth > cloud_tolerance)),
        "residual_shadow": float(np.mean(ours < (1.0 - shadow_tolerance) * truth)),
    }


def picked_contamination(
    index: np.ndarray, truth_masks: np.ndarray, nodata_index: int = -1
) -> dict:
    """Share of pixels whose chosen date (provenance ``index``) was truly cloud/shadow there.

    ``truth_masks`` is ``(time, y, x)`` with classes 0 clear, 1-3 cloud/thin/shadow, 255 nodata.
    """
    picked = index != nodata_index
    if not picked.any():
        raise ValueError("No pixel has a chosen date; nothing to check against the truth.")
    rows, cols = np.nonzero(picked)
    classes = truth_masks[index[picked], rows, cols]
    return {"picked_contaminated": float(np.mean((classes >= 1) & (classes <= 3)))}


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
    difference = values[0] - values[1]
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
        "seam_decimation": factor,
    }
