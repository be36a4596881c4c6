"""Reading what importers start from: a labeled image and its metadata, as uint16 DN on one grid.

Images are opened with :func:`cloudseg.sentinel2.reader.open_scene`, so anything it reads works:
a multi-band GeoTIFF (bands named by their descriptions or by ``band_names``), a folder or SAFE
of band files, or a STAC item; bands of mixed resolution are brought onto one grid.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS, resolve_bands
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import BASELINE_04_OFFSET
from cloudseg.sentinel2.reader import Scene, open_scene

_DATE_PATTERN = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?:T\d{6})?(?!\d)")
_TILE_PATTERN = re.compile(r"(?:^|[_\-./])T?(\d{2}[C-X][A-Z]{2})(?=$|[_\-./])")


@dataclass
class SceneImage:
    """One scene's pixels and the metadata a manifest row needs."""

    dn: np.ndarray  # (bands, y, x) uint16, 0 = nodata
    grid: Grid
    bands: tuple[str, ...]
    processing_baseline: str = ""
    date: str = ""
    tile: str = ""
    source: str = ""


def date_from_text(text: str) -> str:
    """The first ``YYYYMMDD``/``YYYY-MM-DD`` date in a name or timestamp as ISO, or ``""``."""
    for match in _DATE_PATTERN.finditer(str(text)):
        try:
            return dt.date(*(int(part) for part in match.groups())).isoformat()
        except ValueError:
            continue
    return ""


def tile_from_text(text: str) -> str:
    """The MGRS tile id (``29RKH``) in a product or file name such as ``..._T29RKH_...``, or ``""``."""
    match = _TILE_PATTERN.search(Path(str(text)).name)
    return match.group(1) if match else ""


def assert_same_grid(grid: Grid, other: Grid, what: str, other_what: str) -> None:
    """Raise a clear error if two rasters do not share CRS, transform and shape."""
    same = (
        grid.crs == other.crs
        and grid.shape == other.shape
        and grid.transform.almost_equals(other.transform, precision=1e-6)
    )
    if not same:
        raise ValueError(
            f"{other_what} is not on the grid of {what}: {_describe(other)} vs {_describe(grid)}. "
            f"Labels must be drawn on the image's own pixels; resample the label raster onto "
            f"the image grid (e.g. `gdalwarp -r near -te ... -tr ...`) or label the right image."
        )


def _describe(grid: Grid) -> str:
    t = grid.transform
    return (
        f"{grid.crs.to_string()} {grid.width}x{grid.height} px, origin ({t.c}, {t.f}), pixel {t.a}"
    )


def read_scene_image(
    source: str | os.PathLike,
    bands: Sequence[str] | str | None = None,
    *,
    band_names: Sequence[str] | None = None,
    resolution: float | None = None,
) -> tuple[SceneImage, Scene]:
    """Read ``bands`` (default: every spectral band) of a scene onto its grid at ``resolution``
    (default: its finest native grid) as uint16 DN.

    ``band_names`` names the bands of a single raster file in file order when its band
    descriptions do not. Returns the image and the open scene, for reading more layers (SCL)
    on the same grid.
    """
    scene = open_scene(source, band_names=band_names)
    if bands is None:
        bands = [name for name in scene.bands if name not in AUXILIARY_LAYERS]
    bands = resolve_bands(bands)
    grid = scene.grid(resolution)
    metadata = scene.metadata
    baseline = str(metadata.get("processing_baseline") or "")
    if not baseline and scene.offset == BASELINE_04_OFFSET:
        baseline = "04.00"  # the offset is known (product metadata) even where the baseline is not
    image = SceneImage(
        dn=scene.read(bands, grid=grid),
        grid=grid,
        bands=bands,
        processing_baseline=baseline,
        date=date_from_text(metadata.get("date", "")) or date_from_text(Path(str(source)).name),
        tile=str(metadata.get("tile_id") or "") or tile_from_text(source),
        source=str(source),
    )
    return image, scene


def read_raster_on_grid(
    path: str | os.PathLike, grid: Grid, what: str, image_name: str
) -> tuple[np.ndarray, float | None]:
    """Band 1 of a raster that must lie on ``grid`` (the image's), and its nodata value."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    with rasterio.open(path) as src:
        assert_same_grid(grid, Grid.from_dataset(src), f"image {image_name}", f"{what} {path}")
        return src.read(1), src.nodata
