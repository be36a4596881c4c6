"""Reading on the metrics grid: the composite grid, decimated by an integer factor when it holds
more than ``evaluation.max_pixels`` pixels, and the stack's footprint on it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from tqdm.auto import tqdm

from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import open_scene
from composite.stack import Stack

#: Memory for one strip of truth masks with provenance or the stack, when finding residual cloud.
STRIP_BYTES = 256 << 20


@dataclass(frozen=True)
class MetricsView:
    """The grid metrics are computed on: the composite grid, or it decimated by ``factor``
    (floor: a partial block at the right/bottom edge is left out), and the stack's footprint on
    it (pixels where at least one scene has data)."""

    composite_grid: Grid
    grid: Grid
    factor: int
    footprint: np.ndarray
    max_pixels: int

    def record(self) -> dict[str, Any]:
        return {
            "read": "full" if self.factor == 1 else "decimated",
            "factor": self.factor,
            "shape": [self.grid.height, self.grid.width],
            "max_pixels": self.max_pixels,
            "footprint_pixels": int(self.footprint.sum()),
        }


def metrics_grid(grid: Grid, max_pixels: int) -> tuple[Grid, int]:
    """``grid`` decimated by the smallest integer factor that leaves at most ``max_pixels``."""
    factor = max(1, math.ceil(math.sqrt(grid.height * grid.width / max_pixels)))
    if factor == 1:
        return grid, 1
    decimated = Grid(
        grid.crs,
        grid.transform * Affine.scale(factor),
        max(1, grid.height // factor),
        max(1, grid.width // factor),
    )
    return decimated, factor


def stack_footprint(stack: Stack, band: str, grid: Grid, progress: bool = True) -> np.ndarray:
    """True where at least one scene of ``stack`` has data in ``band`` on ``grid``."""
    footprint = np.zeros(grid.shape, dtype=bool)
    for scene in tqdm(stack.scenes, desc="stack footprint", unit="scene", disable=not progress):
        with scene.open() as opened:
            footprint |= opened.read([band], grid=grid)[0] != 0
    return footprint


def metrics_view(
    grid: Grid, stack: Stack, band: str, max_pixels: int, progress: bool = True
) -> MetricsView:
    view_grid, factor = metrics_grid(grid, max_pixels)
    footprint = stack_footprint(stack, band, view_grid, progress)
    return MetricsView(grid, view_grid, factor, footprint, max_pixels)


def read_on_view(
    path: str | Path,
    view: MetricsView,
    indexes: Sequence[int] = (1,),
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Stored values (counts, dates, classes) of a raster on the composite grid, on the metrics
    grid by nearest neighbour: ``(len(indexes), rows, width)``."""
    first, last = rows or (0, view.grid.height)
    factor = view.factor
    window = Window(0, first * factor, view.grid.width * factor, (last - first) * factor)
    with rasterio.open(path) as dataset:
        if Grid.from_dataset(dataset) != view.composite_grid:
            raise ValueError(f"{path} is not on the composite grid; cannot read it for metrics.")
        return dataset.read(
            list(indexes),
            window=window,
            out_shape=(len(indexes), last - first, view.grid.width),
            resampling=Resampling.nearest,
        )


def read_reflectance(path: str | Path, bands: Sequence[str], view: MetricsView) -> np.ndarray:
    """Reflectance (float32, NaN nodata) of ``bands`` of a composite or reference COG on the
    metrics grid, through the scene reader (exact where aligned, bilinear otherwise)."""
    with open_scene(path) as scene:
        missing = [band for band in bands if band not in scene.bands]
        if missing:
            raise ValueError(
                f"{path} has no bands {missing} (it has {list(scene.bands)}); a reference must "
                "hold the composite's bands, named in its band descriptions."
            )
        return scene.read_reflectance(bands, grid=view.grid)


def view_strips(view: MetricsView, bytes_per_pixel: int) -> Iterator[Window]:
    """Full-width windows of the metrics grid of at most ``STRIP_BYTES`` at ``bytes_per_pixel``."""
    width = view.grid.width
    rows = max(1, STRIP_BYTES // (bytes_per_pixel * width))
    for first in range(0, view.grid.height, rows):
        yield Window(0, first, width, min(rows, view.grid.height - first))
