"""Real Sentinel-2 scenes from a folder, loaded whole as reflectance arrays.

``find_real_scenes(folder)`` finds the scenes of a folder such as ``../shared/realdata`` (or a
user's own) as the real-scene evaluation does (STAC items, band folders, multi-band GeoTIFFs,
eo-learn reflectance series, one scene per date; files that are not scenes are skipped) and
reads each whole: the scenes used for training data are small (clips, chips, downsampled
granules).

Every real scene is split in two halves by column: the **west half** may feed training (the
spectral library, real backgrounds, curated labels) and the **east half** is held out for the
real-scene yardstick (:func:`training_columns`, :func:`holdout_columns`), so no lever is scored on
pixels it trained on.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.inference.real_scenes import discover_scenes
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid, pixel_size_m
from cloudseg.sentinel2.product import product_level
from cloudseg.sentinel2.reader import open_scene
from cloudseg.sentinel2.sources import SceneError


@dataclass
class LoadedScene:
    """One real scene read whole: reflectance ``(bands, y, x)`` float32 (NaN nodata) on ``grid``."""

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


def find_real_scenes(folder: str | os.PathLike, *, verbose: bool = True) -> list[LoadedScene]:
    """Every scene under ``folder`` that :func:`~cloudseg.inference.real_scenes.discover_scenes`
    finds (the real-scene evaluation's rules), loaded whole, sorted by name."""
    with tempfile.TemporaryDirectory(prefix="cloudfree-realdata-") as work_dir:
        found, not_scenes = discover_scenes(folder, work_dir)
        if verbose:
            for name, reason in not_scenes.items():
                print(f"skipped {name}: {reason}")
        # a series given as the folder itself is named "/<date index>": prefix the folder
        names = [Path(folder).name + s.name if s.name.startswith("/") else s.name for s in found]
        scenes = [load_scene(s.source, name) for s, name in zip(found, names, strict=True)]
    return sorted(scenes, key=lambda scene: scene.name)


def load_scene(source: str | os.PathLike, name: str) -> LoadedScene:
    """One scene readable by :func:`cloudseg.sentinel2.reader.open_scene`, on its finest grid."""
    with open_scene(source) as scene:
        spectral = tuple(band for band in L1C_BANDS if band in scene.bands)
        if not spectral:
            raise SceneError(f"{source} has no spectral bands.")
        grid = scene.grid()
        reflectance = scene.read_reflectance(spectral, grid=grid)
        scl = scene.read(["SCL"], grid=grid)[0].astype(np.uint8) if "SCL" in scene.bands else None
        metadata = scene.metadata
        level = product_level(scene) or ("l1c" if "B10" in spectral else "l2a")
    return LoadedScene(
        name=name,
        bands=spectral,
        reflectance=reflectance.astype(np.float32),
        grid=grid,
        gsd_m=round(pixel_size_m(grid), 1),
        product_level=level,
        scl=scl,
        sun_azimuth=metadata.get("sun_azimuth"),
        sun_elevation=metadata.get("sun_elevation"),
    )
