"""Sliding windows over a raster, grouped in strips, and the weights that blend them seamlessly.

A :class:`WindowPlan` covers a ``height`` x ``width`` raster with square windows of
``window_size`` pixels that overlap their neighbours by ``overlap`` pixels; the last window of a
row or column is shifted back to end exactly at the raster's edge, so every window lies inside
the raster and has the same shape. Windows are processed in horizontal strips (one row of
windows); after strip ``i`` the rows up to the next strip's first row are final, which is what
keeps the blending accumulator at strip size for any raster height.

Blending weights are a separable sine-squared ramp over the overlap on each side of a window that
has a neighbour there, and 1 elsewhere. On a side that touches the raster's edge the weight stays
1, so no pixel of the raster ever gets zero total weight. Two neighbours at exactly ``overlap``
pixels apart have weights summing to 1 (sin² + cos²); blended values are divided by the summed
weight anyway, so longer overlaps (the shifted last window) blend just as smoothly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window


def axis_starts(length: int, size: int, stride: int) -> tuple[int, ...]:
    """Offsets of windows of ``size`` every ``stride`` pixels along an axis of ``length``.

    The last window ends exactly at ``length``; an axis shorter than ``size`` gets one window.
    """
    if length <= size:
        return (0,)
    return (*range(0, length - size, stride), length - size)


def edge_ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blending weight: sin² ramps of ``overlap`` pixels on the requested ends, 1 inside.

    The ramp never reaches 0: its first value is ``sin²(pi / (4 * overlap))``.
    """
    weight = np.ones(length, dtype=np.float32)
    ramp_length = min(overlap, length)
    if ramp_length == 0:
        return weight
    ramp = np.sin(0.5 * np.pi * (np.arange(ramp_length) + 0.5) / ramp_length) ** 2
    ramp = ramp.astype(np.float32)
    if ramp_start:
        weight[:ramp_length] = np.minimum(weight[:ramp_length], ramp)
    if ramp_end:
        weight[-ramp_length:] = np.minimum(weight[-ramp_length:], ramp[::-1])
    return weight


@dataclass(frozen=True)
class WindowPlan:
    """Overlapping square windows over a ``height`` x ``width`` raster, in strips of rows."""

    height: int
    width: int
    window_size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Raster shape must be positive, got {self.height}x{self.width}.")
        if self.window_size <= 0:
            raise ValueError(f"window_size must be positive, got {self.window_size}.")
        if not 0 <= self.overlap < self.window_size:
            raise ValueError(
                f"overlap must be in [0, window_size) = [0, {self.window_size}), got "
                f"{self.overlap}; a quarter of the window (e.g. {self.window_size // 4}) works well."
            )

    @property
    def stride(self) -> int:
        return self.window_size - self.overlap

    @property
    def window_height(self) -> int:
        """Height of every window (the raster's height when it is smaller than a window)."""
        return min(self.window_size, self.height)

    @property
    def window_width(self) -> int:
        return min(self.window_size, self.width)

    @cached_property
    def row_starts(self) -> tuple[int, ...]:
        return axis_starts(self.height, self.window_size, self.stride)

    @cached_property
    def col_starts(self) -> tuple[int, ...]:
        return axis_starts(self.width, self.window_size, self.stride)

    @property
    def num_strips(self) -> int:
        return len(self.row_starts)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def strip_windows(self, strip: int) -> list[Window]:
        """The windows of strip ``strip``, left to right."""
        row = self.row_starts[strip]
        return [Window(col, row, self.window_width, self.window_height) for col in self.col_starts]

    def final_row_stop(self, strip: int) -> int:
        """Rows above this one are complete once strips ``0..strip`` are blended."""
        if strip + 1 < self.num_strips:
            return self.row_starts[strip + 1]
        return self.height

    def __iter__(self) -> Iterator[Window]:
        for strip in range(self.num_strips):
            yield from self.strip_windows(strip)

    def weights(self, window: Window) -> np.ndarray:
        """Blending weights ``(window_height, window_width)`` for one window of this plan."""
        row, col = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        rows = edge_ramp(height, self.overlap, row > 0, row + height < self.height)
        cols = edge_ramp(width, self.overlap, col > 0, col + width < self.width)
        return np.outer(rows, cols)
