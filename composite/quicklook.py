"""Quicklook pictures of a composite: true-colour RGB and grayscale PNGs, small and comparable.

Both use a fixed reflectance stretch by default (0 to 0.3, the usual Sentinel-2 true-colour range),
so the composite and its baselines can be put side by side without each being stretched on its own.
Nodata is transparent. Large rasters are read through their overviews, so memory stays small.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from cloudseg.sentinel2.bands import RGB_BANDS, canonical_band_name
from cloudseg.sentinel2.cog import atomic_path

DEFAULT_STRETCH = (0.0, 0.3)


def stretch_to_uint8(
    reflectance: np.ndarray, stretch: tuple[float, float] = DEFAULT_STRETCH, gamma: float = 1.0
) -> np.ndarray:
    """Map reflectance in ``[low, high]`` linearly (then by ``gamma``) onto 0-255; NaN -> 0."""
    low, high = stretch
    if not high > low:
        raise ValueError(f"Stretch must have high > low, got {stretch}.")
    scaled = np.clip((reflectance.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    if gamma != 1.0:
        scaled = scaled ** (1.0 / gamma)
    return np.nan_to_num(scaled * 255.0, nan=0.0).round().astype(np.uint8)


def auto_stretch(reflectance: np.ndarray, percentiles: tuple[float, float] = (2, 98)) -> tuple:
    """A stretch from percentiles of all finite values (for scenes far from the usual range)."""
    finite = reflectance[np.isfinite(reflectance)]
    if finite.size == 0:
        return DEFAULT_STRETCH
    low, high = np.percentile(finite, percentiles)
    return (float(low), float(max(high, low + 1e-6)))


def rgba_image(
    reflectance: np.ndarray, stretch: tuple[float, float] = DEFAULT_STRETCH, gamma: float = 1.0
) -> np.ndarray:
    """(3, y, x) RGB or (y, x) gray reflectance -> (y, x, 4) uint8 RGBA, nodata transparent."""
    channels = reflectance[np.newaxis] if reflectance.ndim == 2 else reflectance
    if channels.shape[0] not in (1, 3):
        raise ValueError(f"Expected 1 or 3 channels, got array of shape {reflectance.shape}.")
    rgb = stretch_to_uint8(channels, stretch, gamma)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    alpha = np.where(np.all(np.isfinite(channels), axis=0), 255, 0).astype(np.uint8)
    return np.dstack([*rgb, alpha])


def png_bytes(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_png(path: str | os.PathLike, rgba: np.ndarray) -> Path:
    """Write an RGBA array as PNG, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(rgba))
    return Path(path)


def read_bands_preview(
    path: str | os.PathLike, bands: Sequence[str], max_size: int = 1024, crs: str | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Read named bands of a reflectance COG at most ``max_size`` px on its long side.

    Returns (float32 reflectance with NaN nodata, bounds in the read CRS). Band names are matched
    against the file's band descriptions, as ``write_cog`` writes them. Integer rasters are taken
    as DN (reflectance x 10000, offset already harmonised). ``crs`` (e.g. ``"EPSG:3857"`` for web
    maps) warps the preview on the fly.
    """
    with (
        rasterio.open(path) as dataset,
        (
            WarpedVRT(dataset, crs=crs, resampling=Resampling.bilinear)
            if crs
            else nullcontext(dataset)
        ) as src,
    ):
        available = [canonical_band_name(d) if d else "" for d in src.descriptions]
        indexes = []
        for name in bands:
            name = canonical_band_name(name)
            if name not in available:
                raise ValueError(
                    f"{path} has no band {name}; its bands are {available}. Choose quicklook bands "
                    f"among them."
                )
            indexes.append(available.index(name) + 1)
        factor = max(1.0, max(src.height, src.width) / max_size)
        out_shape = (
            len(indexes),
            max(1, round(src.height / factor)),
            max(1, round(src.width / factor)),
        )
        data = src.read(indexes, out_shape=out_shape, resampling=Resampling.average, masked=True)
        values = data.astype(np.float32).filled(np.nan)
        if np.issubdtype(src.dtypes[0], np.integer):
            values /= 10000.0
        return values, tuple(src.bounds)


def write_quicklooks(
    composite_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str = "composite",
    max_size: int = 1024,
    stretch: tuple[float, float] | str = DEFAULT_STRETCH,
) -> dict[str, Path]:
    """Write ``<name>_rgb.png`` and ``<name>_gray.png`` (mean of the visible bands) for a composite COG.

    ``stretch="auto"`` uses the 2-98 percentiles of the RGB preview for both pictures.
    """
    out_dir = Path(out_dir)
    rgb, _ = read_bands_preview(composite_path, RGB_BANDS, max_size)
    chosen = auto_stretch(rgb) if stretch == "auto" else tuple(stretch)
    gray = rgb.mean(axis=0)  # nodata (NaN in every band) stays nodata
    return {
        "rgb": write_png(out_dir / f"{name}_rgb.png", rgba_image(rgb, chosen)),
        "gray": write_png(out_dir / f"{name}_gray.png", rgba_image(gray, chosen)),
    }
