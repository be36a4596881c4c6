"""A raster grid (CRS + affine transform + shape), the helpers to derive one from another,
:func:`tile_windows` (the one way a raster is cut into blocks), :func:`bounds_intersect` and
:func:`reproject_nearest`, the one way class rasters (masks, SCL-like codes) move between grids."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, subdivide

from cloudseg.sentinel2.errors import SceneError

#: ``(left, bottom, right, top)``.
Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class Grid:
    """Where a raster's pixels are: ``crs``, ``transform`` (north-up) and ``height`` x ``width``."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "crs", CRS.from_user_input(self.crs))
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Grid shape must be positive, got {self.height}x{self.width}.")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return (west, south, east, north)

    def window_grid(self, window: rasterio.windows.Window) -> Grid:
        """The sub-grid covered by a pixel window of this grid."""
        window = window.round_offsets().round_lengths()
        return Grid(
            self.crs,
            rasterio.windows.transform(window, self.transform),
            int(window.height),
            int(window.width),
        )

    def with_resolution(self, resolution: float) -> Grid:
        """Same bounds and origin at another pixel size (e.g. a 10 m grid as 60 m)."""
        left, bottom, right, top = self.bounds
        width = max(1, math.ceil(round((right - left) / resolution, 6)))
        height = max(1, math.ceil(round((top - bottom) / resolution, 6)))
        return Grid(self.crs, Affine(resolution, 0, left, 0, -resolution, top), height, width)

    def bounds_in(self, crs: CRS) -> tuple[float, float, float, float]:
        return transform_bounds(self.crs, crs, *self.bounds, densify_pts=21)

    def overlaps(self, other: Grid) -> bool:
        b = other.bounds_in(self.crs) if other.crs != self.crs else other.bounds
        return bounds_intersect(self.bounds, b)

    def to_profile(self) -> dict:
        return {
            "crs": self.crs,
            "transform": self.transform,
            "height": self.height,
            "width": self.width,
        }

    @classmethod
    def from_dataset(cls, dataset) -> Grid:
        """The grid of an open rasterio dataset."""
        if dataset.crs is None:
            raise SceneError(
                f"{dataset.name} has no CRS; Sentinel-2 rasters must be georeferenced."
            )
        return cls(dataset.crs, dataset.transform, dataset.height, dataset.width)


def bounds_intersect(a: Bounds, b: Bounds) -> bool:
    """Whether two ``(left, bottom, right, top)`` boxes in one CRS share an area (touching
    edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tile_windows(height: int, width: int, size: int) -> tuple[Window, ...]:
    """Non-overlapping windows of at most ``size`` x ``size`` px covering a ``height`` x
    ``width`` raster, row-major (:func:`rasterio.windows.subdivide`)."""
    return tuple(subdivide(Window(0, 0, width, height), size, size))


def reproject_nearest(
    source: np.ndarray | rasterio.Band, source_grid: Grid, target: Grid, nodata: int
) -> np.ndarray:
    """Class codes from ``source`` on ``target`` by nearest neighbour (GDAL's warper), 2-D.

    ``source`` is a 2-D array on ``source_grid`` or a band of an open dataset on it
    (``rasterio.band(dataset, 1)``: GDAL then reads only the pixels under ``target``). Source
    pixels equal to ``nodata`` are not used; target pixels they or the outside of the source
    cover are ``nodata``. The result has the source's dtype.
    """
    out = np.full(target.shape, nodata, dtype=source.dtype)
    reproject(
        source,
        out,
        src_transform=source_grid.transform,
        src_crs=source_grid.crs,
        src_nodata=nodata,
        dst_transform=target.transform,
        dst_crs=target.crs,
        dst_nodata=nodata,
        resampling=Resampling.nearest,
    )
    return out


#: Metres per degree of latitude (for pixel sizes of grids in geographic coordinates).
METRES_PER_DEGREE = 111_320.0


def pixel_size_m(grid: Grid) -> float:
    """The pixel size in metres (north-south, for a grid in degrees)."""
    if grid.crs.is_geographic:
        return grid.resolution * METRES_PER_DEGREE
    return grid.resolution * grid.crs.linear_units_factor[1]


def processing_grid(grid: Grid, resolution_m: float) -> Grid:
    """``grid`` at about ``resolution_m`` metres, or ``grid`` itself where its pixels are as
    coarse already (detectors that run at a set pixel size: s2cloudless, ukis-csmask)."""
    size = pixel_size_m(grid)
    if size >= resolution_m:
        return grid
    return grid.with_resolution(grid.resolution * resolution_m / size)
