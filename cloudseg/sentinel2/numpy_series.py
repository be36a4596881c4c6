"""A time series stored as numpy arrays (eo-learn's ``EOPatch`` export) as scenes ``open_scene`` reads.

eo-learn keeps a series as ``(dates, y, x, bands)`` float32 reflectance in one ``.npy`` file with
no georeference; the grid is in a ``bbox.geojson`` beside it (a polygon in a projected CRS named
by its ``crs`` member). :func:`write_series_scenes` writes each date as a multi-band COG (uint16
DN = reflectance x 10000, nodata 0, band names in the descriptions), so every reader, producer
and picture works on it unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_bounds

from cloudseg.sentinel2.bands import L1C_BANDS, resolve_bands
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import reflectance_to_dn
from cloudseg.sentinel2.sources import SceneError

#: The file names of an eo-learn series folder (``data.npy`` + ``bbox.geojson``).
SERIES_FILE = "REFERENCE_SCENES.npy"
BBOX_FILE = "bbox.geojson"
#: eo-learn's band order for all 13 L1C bands (B8A after B08): the registry's canonical order.
EOLEARN_BANDS: tuple[str, ...] = L1C_BANDS


@dataclass(frozen=True)
class NumpySeries:
    """A series folder: the array file, its grid and its band names."""

    array_path: Path
    grid: Grid
    bands: tuple[str, ...]
    dates: int


def is_series_folder(folder: Path) -> bool:
    return (folder / SERIES_FILE).is_file() and (folder / BBOX_FILE).is_file()


def describe_series(folder: str | os.PathLike, bands: Sequence[str] = EOLEARN_BANDS) -> NumpySeries:
    """Read the array header and the bbox; check they fit together."""
    folder = Path(folder)
    array_path, bbox_path = folder / SERIES_FILE, folder / BBOX_FILE
    if not array_path.is_file() or not bbox_path.is_file():
        raise SceneError(f"{folder} is not a numpy series: it needs {SERIES_FILE} and {BBOX_FILE}.")
    array = np.load(array_path, mmap_mode="r")
    bands = resolve_bands(bands)
    if array.ndim != 4 or array.shape[3] != len(bands):
        raise SceneError(
            f"{array_path} has shape {array.shape}; expected (dates, y, x, {len(bands)}) for "
            f"bands {list(bands)}."
        )
    dates, height, width, _ = array.shape
    return NumpySeries(array_path, _bbox_grid(bbox_path, height, width), bands, dates)


def _bbox_grid(path: Path, height: int, width: int) -> Grid:
    try:
        geometry = json.loads(path.read_text())
        crs = CRS.from_user_input(geometry["crs"]["properties"]["name"])
        xs, ys = zip(*geometry["coordinates"][0], strict=True)
    except (KeyError, ValueError, TypeError) as err:
        raise SceneError(
            f"{path}: expected a GeoJSON polygon with a 'crs' member naming its CRS "
            f"(as eo-learn writes bbox.geojson): {err}"
        ) from err
    transform = from_bounds(min(xs), min(ys), max(xs), max(ys), width, height)
    return Grid(crs, transform, height, width)


def write_series_scenes(series: NumpySeries, out_dir: str | os.PathLike) -> list[Path]:
    """One COG per date in ``out_dir`` (``<index>.tif``); existing files are rewritten."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    array = np.load(series.array_path, mmap_mode="r")
    paths = []
    for index in range(series.dates):
        reflectance = np.moveaxis(np.asarray(array[index], dtype=np.float32), -1, 0)
        path = out_dir / f"{index}.tif"
        write_cog(
            path,
            reflectance_to_dn(reflectance),
            series.grid,
            nodata=0,
            band_names=list(series.bands),
            tags={"SOURCE": f"{series.array_path}[{index}]"},
        )
        paths.append(path)
    return paths
