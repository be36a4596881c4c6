"""Real Sentinel-2 scenes from a folder, loaded whole as reflectance arrays.

``find_real_scenes(folder)`` walks a folder such as ``../shared/realdata`` (or a user's own) and
returns every scene it can read: STAC items (``item.json``), band folders, multi-band GeoTIFFs and
eo-learn reflectance series (``*.npy`` of ``(time, y, x, 13)`` next to a ``bbox.geojson``; one
scene per date). Files that are not Sentinel-2 scenes (masks, probabilities, licences) are
skipped. The scenes here are small (clips, chips, downsampled granules): each is read whole.

Every real scene is split in two halves by column: the **west half** may feed training (the
spectral library, real backgrounds, curated labels) and the **east half** is held out for the
real-scene yardstick (:func:`training_columns`, :func:`holdout_columns`), so no lever is scored on
pixels it trained on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.data.importers.s2cloudless_labels import grid_from_bbox
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import open_scene
from cloudseg.sentinel2.sources import SceneError

METRES_PER_DEGREE = 111_320.0


@dataclass
class RealScene:
    """One real scene: reflectance ``(bands, y, x)`` float32 (NaN nodata) on ``grid``."""

    name: str
    bands: tuple[str, ...]
    reflectance: np.ndarray
    grid: Grid
    gsd_m: float
    product_level: str  # "l1c" (has B10, TOA) or "l2a" (bottom of atmosphere)
    scl: np.ndarray | None = None  # uint8 L2A scene classification on ``grid``
    sun_azimuth: float | None = None
    sun_elevation: float | None = None

    def band(self, name: str) -> np.ndarray:
        return self.reflectance[self.bands.index(name)]

    def has(self, bands: tuple[str, ...] | list[str]) -> bool:
        return all(band in self.bands for band in bands)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.reflectance).all(axis=0)


def training_columns(width: int) -> slice:
    """Columns of a real scene that training data may use (the west half)."""
    return slice(0, width // 2)


def holdout_columns(width: int) -> slice:
    """Columns held out for the real-scene yardstick (the east half)."""
    return slice(width // 2, width)


def ground_sampling_distance(grid: Grid) -> float:
    """Pixel size in metres (geographic grids converted at their centre latitude)."""
    if not grid.crs.is_geographic:
        return float(grid.resolution)
    south, north = grid.bounds[1], grid.bounds[3]
    lat = math.radians(0.5 * (south + north))
    x_m = abs(grid.transform.a) * METRES_PER_DEGREE * math.cos(lat)
    y_m = abs(grid.transform.e) * METRES_PER_DEGREE
    return float(round(0.5 * (x_m + y_m), 1))


def find_real_scenes(folder: str | os.PathLike, *, verbose: bool = True) -> list[RealScene]:
    """Every readable scene under ``folder``, sorted by name (see the module doc)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Real-scene folder {folder} does not exist; pass a folder of Sentinel-2 scenes "
            "(e.g. ../shared/realdata)."
        )
    scenes: list[RealScene] = []
    _walk(folder, folder, scenes, verbose)
    return sorted(scenes, key=lambda scene: scene.name)


def _walk(path: Path, root: Path, scenes: list[RealScene], verbose: bool) -> None:
    name = path.relative_to(root).as_posix() if path != root else path.name
    if path.is_dir():
        series = _series_files(path)
        if series:
            for file in series:
                scenes.extend(load_series(file))
            return
        item = path / "item.json"
        try:
            scenes.append(load_scene(item if item.exists() else path, name))
            return
        except SceneError:
            pass  # not a band folder: look inside
        for child in sorted(path.iterdir()):
            _walk(child, root, scenes, verbose)
        return
    if path.suffix.lower() not in (".tif", ".tiff", ".jp2"):
        return
    try:
        scenes.append(load_scene(path, name.rsplit(".", 1)[0]))
    except SceneError as err:
        if verbose:
            print(f"skipped {path}: not a Sentinel-2 scene ({str(err)[:120]})")


def load_scene(source: Path, name: str) -> RealScene:
    """One scene readable by :func:`cloudseg.sentinel2.reader.open_scene`, on its finest grid."""
    with open_scene(source) as scene:
        spectral = tuple(band for band in L1C_BANDS if band in scene.bands)
        if not spectral:
            raise SceneError(f"{source} has no spectral bands.")
        grid = scene.grid()
        reflectance = scene.read_reflectance(spectral, grid=grid)
        scl = scene.read(["SCL"], grid=grid)[0].astype(np.uint8) if "SCL" in scene.bands else None
        metadata = scene.metadata
    return RealScene(
        name=name,
        bands=spectral,
        reflectance=reflectance.astype(np.float32),
        grid=grid,
        gsd_m=ground_sampling_distance(grid),
        product_level="l1c" if "B10" in spectral else "l2a",
        scl=scl,
        sun_azimuth=metadata.get("sun_azimuth"),
        sun_elevation=metadata.get("sun_elevation"),
    )


def _series_files(folder: Path) -> list[Path]:
    """eo-learn-style reflectance series in ``folder``: 4-D float ``.npy`` with 13 bands."""
    if not (folder / "bbox.geojson").exists():
        return []
    found = []
    for file in sorted(folder.glob("*.npy")):
        array = np.load(file, mmap_mode="r")
        if array.ndim == 4 and array.shape[-1] == len(L1C_BANDS) and array.dtype.kind == "f":
            found.append(file)
    return found


def load_series(file: Path) -> list[RealScene]:
    """The dates of a ``(time, y, x, 13)`` L1C TOA reflectance series, one scene each."""
    array = np.load(file).astype(np.float32)
    grid = grid_from_bbox(file.parent / "bbox.geojson", array.shape[1:3])
    scenes = []
    for index, image in enumerate(array):
        reflectance = np.moveaxis(image, -1, 0).copy()
        reflectance[:, (reflectance <= 0).all(axis=0)] = np.nan
        scenes.append(
            RealScene(
                name=f"{file.parent.name}-{index}",
                bands=L1C_BANDS,
                reflectance=reflectance,
                grid=grid,
                gsd_m=ground_sampling_distance(grid),
                product_level="l1c",
            )
        )
    return scenes
