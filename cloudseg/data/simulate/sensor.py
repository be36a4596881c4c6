"""What the MSI instrument does to the light: coarser 20 m and 60 m bands, noise, swath gaps.

Band resolution is simulated cheaply and the way L1C products present it at 10 m: each 20 m or
60 m band is averaged over its native pixel (2 x 2 or 6 x 6 blocks of 10 m pixels, aligned on the
world's 60 m lattice like real MGRS tiles) and repeated back to 10 m. Blocks are aligned to the
world, not to the raster, so neighbouring tiles see the same coarse pixels.
"""

from __future__ import annotations

import numpy as np

from cloudseg.data.simulate.noise import stable_key, white_noise
from cloudseg.sentinel2.bands import BANDS

#: The coarsest native pixel in 10 m pixels: render regions start and end on this lattice.
BLOCK_LATTICE_PX = 6
_BLOCK_BY_BAND = tuple(band.resolution_m // 10 for band in BANDS)
#: Noise standard deviation = floor + gain * reflectance (roughly the L1C SNR at 10-30 % albedo).
NOISE_FLOOR = np.array(
    [0.0008, 0.0006, 0.0006, 0.0006, 0.0007, 0.0007, 0.0007, 0.0006, 0.0007, 0.0010, 0.0004,
     0.0008, 0.0010], dtype=np.float32,
)  # fmt: skip
NOISE_GAIN = 0.004


def block_aligned(start: int, stop: int) -> tuple[int, int]:
    """Widen the pixel range ``[start, stop)`` to whole 60 m blocks of the world lattice."""
    return (start // BLOCK_LATTICE_PX) * BLOCK_LATTICE_PX, -(-stop // BLOCK_LATTICE_PX) * (
        BLOCK_LATTICE_PX
    )


def apply_band_resolutions(reflectance: np.ndarray) -> np.ndarray:
    """Average each band over its native pixel and repeat it back to 10 m.

    ``reflectance`` is ``(13, y, x)`` on a region whose extent is whole 60 m blocks of the world
    lattice (see :func:`block_aligned`); 10 m bands are returned unchanged.
    """
    n_bands, height, width = reflectance.shape
    if n_bands != len(BANDS) or height % BLOCK_LATTICE_PX or width % BLOCK_LATTICE_PX:
        raise ValueError(
            f"Expected (13, y, x) on whole {BLOCK_LATTICE_PX}-px blocks, got {reflectance.shape}."
        )
    out = reflectance.copy()
    for index, block in enumerate(_BLOCK_BY_BAND):
        if block == 1:
            continue
        coarse = reflectance[index].reshape(height // block, block, width // block, block)
        coarse = coarse.mean(axis=(1, 3), dtype=np.float32)
        out[index] = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)
    return out


def add_sensor_noise(
    reflectance: np.ndarray, cols: np.ndarray, rows: np.ndarray, key: int
) -> np.ndarray:
    """Signal-dependent noise, independent per band and native pixel (same key, same noise).

    Like :func:`apply_band_resolutions`, ``cols``/``rows`` must cover whole 60 m blocks; coarse
    bands get one noise value per native pixel.
    """
    noisy = np.empty_like(reflectance)
    for index, block in enumerate(_BLOCK_BY_BAND):
        coarse = white_noise(
            np.floor(cols[::block] / block), np.floor(rows[::block] / block),
            stable_key(key, "band", index),
        )  # fmt: skip
        noise = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1) if block > 1 else coarse
        sigma = NOISE_FLOOR[index] + NOISE_GAIN * np.abs(reflectance[index])
        noisy[index] = reflectance[index] + sigma * noise
    return np.clip(noisy, 0.0, None)
