"""Ground sampling distance: scenes rendered at 10 m seen as a 20, 30 or 60 m sensor sees them.

A coarser pixel integrates the light of the finer ones under it (:func:`block_mean`); its label
is the class covering most of it (:func:`block_mode`, ignore only where ignore is the majority).
Real cumulus at 30 m are a few pixels wide with mixed edges, which is what a 10 m simulated scene
averaged over 3 x 3 blocks shows, and what a model trained only at 10 m has never seen.
"""

from __future__ import annotations

import numpy as np
from affine import Affine

from cloudseg.labels import IGNORE_INDEX, NUM_CLASSES
from cloudseg.sentinel2.grid import Grid

#: Ground sampling distances the simulator and the real-background renderer produce.
SUPPORTED_GSD_M: tuple[int, ...] = (10, 20, 30, 60)
BASE_GSD_M = 10


def gsd_factor(gsd_m: float, base_m: float = BASE_GSD_M) -> int:
    """Integer block size that turns ``base_m`` pixels into ``gsd_m`` pixels."""
    factor = gsd_m / base_m
    if factor < 1 or not np.isclose(factor, round(factor)):
        raise ValueError(
            f"GSD {gsd_m} m is not a whole multiple of {base_m} m; use one of {SUPPORTED_GSD_M}."
        )
    return int(round(factor))


def _blocks(array: np.ndarray, factor: int) -> np.ndarray:
    """``(..., y, x)`` cut to whole blocks and reshaped ``(..., y/f, f, x/f, f)``."""
    height, width = array.shape[-2] // factor, array.shape[-1] // factor
    if height == 0 or width == 0:
        raise ValueError(f"A {array.shape[-2:]} array has no whole {factor} x {factor} block.")
    cut = array[..., : height * factor, : width * factor]
    return cut.reshape(*array.shape[:-2], height, factor, width, factor)


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes (NaN where any is NaN)."""
    if factor == 1:
        return array.copy()
    return _blocks(array, factor).mean(axis=(-3, -1), dtype=np.float32)


def block_mode(mask: np.ndarray, factor: int) -> np.ndarray:
    """The commonest class of each block of a uint8 class mask (ties go to the lower code;
    ignore only where it is the commonest)."""
    if factor == 1:
        return mask.copy()
    blocks = _blocks(mask, factor)
    codes = np.where(blocks == IGNORE_INDEX, NUM_CLASSES, blocks)
    counts = np.stack([(codes == code).sum(axis=(-3, -1)) for code in range(NUM_CLASSES + 1)])
    mode = counts.argmax(axis=0).astype(np.uint8)
    mode[mode == NUM_CLASSES] = IGNORE_INDEX
    return mode


def repeat_blocks(array: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel of a coarse array repeated ``factor`` x ``factor`` times, edge-padded or cut
    to ``shape`` (the inverse of :func:`block_mean` for masks)."""
    fine = np.repeat(np.repeat(array, factor, axis=-2), factor, axis=-1)
    pad_y, pad_x = max(shape[0] - fine.shape[-2], 0), max(shape[1] - fine.shape[-1], 0)
    if pad_y or pad_x:
        fine = np.pad(fine, [(0, 0)] * (fine.ndim - 2) + [(0, pad_y), (0, pad_x)], mode="edge")
    return fine[..., : shape[0], : shape[1]]


def coarser_grid(grid: Grid, factor: int) -> Grid:
    """The grid of :func:`block_mean`'s output: same origin, ``factor`` x larger pixels."""
    return Grid(
        grid.crs, grid.transform * Affine.scale(factor), grid.height // factor, grid.width // factor
    )
