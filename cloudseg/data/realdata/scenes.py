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

:class:`ProducerScene` shows a loaded scene to the mask producers of the registry
(:mod:`cloudseg.inference.producers`) as an opened scene, so the detectors run on it as they run
everywhere else.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from cloudseg.inference.real_scenes import discover_scenes
from cloudseg.sentinel2.bands import L1C_BANDS, resolve_bands
from cloudseg.sentinel2.grid import Grid, pixel_size_m
from cloudseg.sentinel2.product import product_level
from cloudseg.sentinel2.radiometry import QUANTIFICATION_VALUE
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


class ProducerScene:
    """A :class:`LoadedScene` read as mask producers read an opened scene
    (:class:`cloudseg.inference.predict.Scene`), from its arrays: on its own grid, or on a grid
    whose pixels are a whole multiple of its own with the same origin (the grids
    :func:`~cloudseg.sentinel2.grid.processing_grid` makes for detectors that run coarser) as
    block means. A block is NaN where any of its pixels is; blocks past the right or bottom edge
    average the pixels they cover. ``read`` gives SCL as stored and spectral bands as DN on the
    pre-04.00 scale (reflectance x 10000, offset 0; 0 where there is no data)."""

    def __init__(self, loaded: LoadedScene) -> None:
        self.loaded = loaded
        self.source = loaded.name
        self.bands = loaded.bands + (("SCL",) if loaded.scl is not None else ())
        self.metadata: dict[str, Any] = {"product_type": loaded.product_level}

    def grid(self, resolution: float | None = None) -> Grid:
        grid = self.loaded.grid
        return grid if resolution is None else grid.with_resolution(resolution)

    def layer_grid(self, band: str) -> Grid:
        return self.loaded.grid

    def read_reflectance(
        self, bands: Iterable[str] | str, grid: Grid | None = None, window: Window | None = None
    ) -> np.ndarray:
        names = self._resolve(bands)
        if "SCL" in names:
            raise SceneError(
                f"SCL of {self.source} is not a reflectance band; read it with read()."
            )
        stack = np.stack([self.loaded.band(name) for name in names])
        return self._window(self._on(stack, grid), window)

    def read(
        self, bands: Iterable[str] | str, grid: Grid | None = None, window: Window | None = None
    ) -> np.ndarray:
        names = self._resolve(bands)
        layers = []
        for name in names:
            if name == "SCL":
                if grid not in (None, self.loaded.grid):
                    raise SceneError(f"SCL of {self.source} is read on the scene's own grid only.")
                layers.append(self.loaded.scl.astype(np.uint16))
            else:
                reflectance = self._on(self.loaded.band(name)[np.newaxis], grid)[0]
                dn = np.clip(np.rint(reflectance * QUANTIFICATION_VALUE), 1, 65535)
                layers.append(np.where(np.isfinite(reflectance), dn, 0).astype(np.uint16))
        return self._window(np.stack(layers), window)

    def _resolve(self, bands: Iterable[str] | str) -> tuple[str, ...]:
        names = resolve_bands(bands)
        missing = [name for name in names if name not in self.bands]
        if missing:
            raise SceneError(f"{self.source} has no band {missing}; it has {list(self.bands)}.")
        return names

    @staticmethod
    def _window(array: np.ndarray, window: Window | None) -> np.ndarray:
        return array if window is None else array[(slice(None), *window.toslices())]

    def _on(self, stack: np.ndarray, grid: Grid | None) -> np.ndarray:
        """``(bands, y, x)`` on the scene grid brought onto ``grid`` by block means."""
        own = self.loaded.grid
        if grid is None or grid == own:
            return stack
        factor = round(grid.resolution / own.resolution)
        if (
            grid.crs != own.crs
            or factor < 1
            or not math.isclose(grid.resolution, own.resolution * factor, rel_tol=1e-6)
            or (grid.transform.c, grid.transform.f) != (own.transform.c, own.transform.f)
            or grid != own.with_resolution(grid.resolution)
        ):
            raise SceneError(
                f"{self.source} is read on its own grid or on one with pixels a whole multiple "
                f"of its {own.resolution:g} with the same origin; asked for {grid}."
            )
        height, width = grid.height * factor, grid.width * factor
        pad = [(0, 0), (0, height - stack.shape[1]), (0, width - stack.shape[2])]
        blocks = (stack.shape[0], grid.height, factor, grid.width, factor)
        covered = np.pad(np.ones(stack.shape[1:], np.float32), pad[1:]).reshape(blocks[1:])
        sums = np.pad(stack, pad).reshape(blocks).sum(axis=(-3, -1), dtype=np.float32)
        return sums / covered.sum(axis=(-3, -1), dtype=np.float32)


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
