"""Quicklook pictures of a composite: true-colour RGB and grayscale PNGs, small and comparable.

Both use a fixed reflectance stretch by default (0 to 0.3, the usual Sentinel-2 true-colour range),
so the composite and its baselines can be put side by side without each being stretched on its own.
Nodata is transparent. Large rasters are read through their overviews, so memory stays small.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
import rasterio
import rasterio.io
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


def png_bytes(rgba: np.ndarray, optimize: bool = False) -> bytes:
    """PNG-encode an RGBA array. ``optimize`` (zlib level 9) saves ~6 % of the bytes of a
    1024 px quicklook but takes ~8x longer (3.4 s against 0.4 s), so it is off by default."""
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=optimize)
    return buffer.getvalue()


def write_png(path: str | os.PathLike, rgba: np.ndarray) -> Path:
    """Write an RGBA array as PNG, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(rgba))
    return Path(path)


@contextmanager
def _preview_source(
    path: str | os.PathLike, crs: str | None, resampling: Resampling
) -> Iterator[rasterio.io.DatasetReaderBase]:
    """The raster, or a ``WarpedVRT`` of it in ``crs``; a raster without nodata gets an alpha band
    in the VRT, so the area the warp adds around it is masked, not zero."""
    with rasterio.open(path) as dataset:
        if not crs:
            yield dataset
            return
        with WarpedVRT(
            dataset, crs=crs, resampling=resampling, add_alpha=dataset.nodata is None
        ) as vrt:
            yield vrt


def _read_preview(
    src: rasterio.io.DatasetReaderBase,
    indexes: Sequence[int],
    max_size: int,
    resampling: Resampling,
) -> np.ndarray:
    """``indexes`` of ``src`` at most ``max_size`` px on the long side, float32, NaN where masked."""
    factor = max(1.0, max(src.height, src.width) / max_size)
    out_shape = (
        len(indexes),
        max(1, round(src.height / factor)),
        max(1, round(src.width / factor)),
    )
    data = src.read(list(indexes), out_shape=out_shape, resampling=resampling, masked=True)
    return data.astype(np.float32).filled(np.nan)


def read_bands_preview(
    path: str | os.PathLike, bands: Sequence[str], max_size: int = 1024, crs: str | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Read named bands of a reflectance COG at most ``max_size`` px on its long side.

    Returns (float32 reflectance with NaN nodata, bounds in the read CRS). Band names are matched
    against the file's band descriptions, as ``write_cog`` writes them. Integer rasters are taken
    as DN (reflectance x 10000, offset already harmonised). ``crs`` (e.g. ``"EPSG:3857"`` for web
    maps) warps the preview on the fly.
    """
    with _preview_source(path, crs, Resampling.bilinear) as src:
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
        values = _read_preview(src, indexes, max_size, Resampling.average)
        if np.issubdtype(src.dtypes[0], np.integer):
            values /= 10000.0
        return values, tuple(src.bounds)


def read_band_values_preview(
    path: str | os.PathLike, band: int = 1, max_size: int = 1024, crs: str | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """One band's stored values (counts, dates, classes) at most ``max_size`` px on its long side,
    by nearest neighbour (values are never mixed). Returns (float32 ``(y, x)`` with NaN where
    masked, bounds in the read CRS); ``crs`` warps as :func:`read_bands_preview` does."""
    with _preview_source(path, crs, Resampling.nearest) as src:
        values = _read_preview(src, [band], max_size, Resampling.nearest)
        return values[0], tuple(src.bounds)


#: Colour of pixels with no valid observation in :func:`count_rgba` (a red no ramp colour has).
NO_OBSERVATION_RGB = (228, 26, 28)


def count_rgba(count: np.ndarray, max_count: int, colormap: str = "viridis") -> np.ndarray:
    """(y, x) valid-observation counts -> (y, x, 4) uint8 RGBA: ``colormap`` from 1 (dark) to
    ``max_count`` (bright), 0 in :data:`NO_OBSERVATION_RGB`, NaN (no raster there) transparent."""
    if max_count < 1:
        raise ValueError(f"max_count={max_count} must be >= 1 (the number of scenes).")
    finite = np.isfinite(count)
    values = np.where(finite, count, 0.0)
    ramp = matplotlib.colormaps[colormap]
    scaled = np.clip((values - 1.0) / max(max_count - 1, 1), 0.0, 1.0)
    rgba = (ramp(scaled) * 255).round().astype(np.uint8)
    rgba[values == 0, :3] = NO_OBSERVATION_RGB
    rgba[..., 3] = np.where(finite, 255, 0)
    return rgba


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
