"""Run a per-image classifier over a large raster one window at a time, with context margins.

Detectors that hold a whole image in memory (ukis-csmask, OmniCloudMask) run on windows of
``window`` pixels, each read with ``margin`` pixels of context on every side (clipped at the
edges) so that its borders see their neighbours; only the window's own pixels are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window


@dataclass(frozen=True)
class WindowTile:
    """One window of the output (``write``) and the larger window read for it (``read``)."""

    write: Window
    read: Window

    @property
    def inner(self) -> tuple[slice, slice]:
        """Where ``write`` sits inside the array read for ``read``."""
        row = int(self.write.row_off - self.read.row_off)
        col = int(self.write.col_off - self.read.col_off)
        return slice(row, row + int(self.write.height)), slice(col, col + int(self.write.width))

    @property
    def outer(self) -> tuple[slice, slice]:
        """Where ``write`` sits in the whole image."""
        row, col = int(self.write.row_off), int(self.write.col_off)
        return slice(row, row + int(self.write.height)), slice(col, col + int(self.write.width))


def window_tiles(shape: tuple[int, int], size: int, margin: int) -> Iterator[WindowTile]:
    """Non-overlapping ``size`` windows covering ``shape``, each with its ``margin`` read window."""
    if size <= 0 or margin < 0:
        raise ValueError(f"window size must be > 0 and margin >= 0, got {size} and {margin}.")
    height, width = shape
    for row in range(0, height, size):
        for col in range(0, width, size):
            write = Window(col, row, min(size, width - col), min(size, height - row))
            top, left = max(0, row - margin), max(0, col - margin)
            bottom = min(height, row + int(write.height) + margin)
            right = min(width, col + int(write.width) + margin)
            yield WindowTile(write, Window(left, top, right - left, bottom - top))


def run_windowed(
    read: Callable[[Window], np.ndarray],
    shape: tuple[int, int],
    classify: Callable[[np.ndarray], np.ndarray],
    *,
    window: int,
    margin: int,
    fill: int,
) -> np.ndarray:
    """``classify(read(window))`` window by window into one uint8 ``shape`` raster."""
    out = np.full(shape, fill, dtype=np.uint8)
    for tile in window_tiles(shape, window, margin):
        out[tile.outer] = classify(read(tile.read))[tile.inner]
    return out
