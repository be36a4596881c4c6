"""Per-band normalisation statistics: computed on the training split, stored, reused at inference.

A normalisation is a JSON-able dict in reflectance units::

    {"bands": ["B02", "B03", ...], "mean": [...], "std": [...]}

The DataModule computes it on the training scenes, caches it in the dataset folder
(``<root>/normalization/<key>.json``, keyed by bands and the training scene list) and exposes it
as ``dm.normalization`` so that the model checkpoint carries it; inference calls
:func:`normalize` with the same dict.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.cog import atomic_path

#: A band whose standard deviation is below this (reflectance) is treated as constant.
MIN_STD = 1e-6
CACHE_DIR = "normalization"


def normalize(reflectance: np.ndarray, normalization: Mapping) -> np.ndarray:
    """``(reflectance - mean) / std`` per band for a ``(bands, y, x)`` array; NaN (nodata) -> 0.

    The array's bands must be the normalisation's bands, in its order.
    """
    mean = np.asarray(normalization["mean"], dtype=np.float32)
    std = np.asarray(normalization["std"], dtype=np.float32)
    if reflectance.ndim != 3 or reflectance.shape[0] != mean.size:
        raise ValueError(
            f"normalize expects (bands, y, x) with {mean.size} bands "
            f"{list(normalization['bands'])}, got shape {reflectance.shape}."
        )
    out = (reflectance.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


class BandStatistics:
    """Running per-band count, sum and sum of squares (float64) over valid (finite) pixels."""

    def __init__(self, bands: Sequence[str]) -> None:
        self.bands = resolve_bands(bands)
        n = len(self.bands)
        self.count = np.zeros(n, dtype=np.int64)
        self.total = np.zeros(n, dtype=np.float64)
        self.total_sq = np.zeros(n, dtype=np.float64)

    def update(self, reflectance: np.ndarray) -> None:
        """Add a ``(bands, y, x)`` reflectance array; NaN pixels are skipped."""
        flat = reflectance.reshape(reflectance.shape[0], -1).astype(np.float64)
        valid = np.isfinite(flat)
        values = np.where(valid, flat, 0.0)
        self.count += valid.sum(axis=1)
        self.total += values.sum(axis=1)
        self.total_sq += (values**2).sum(axis=1)

    def result(self) -> dict:
        if (self.count == 0).any():
            empty = [b for b, c in zip(self.bands, self.count, strict=True) if c == 0]
            raise ValueError(f"No valid pixels for bands {empty}: cannot compute statistics.")
        mean = self.total / self.count
        var = np.maximum(self.total_sq / self.count - mean**2, 0.0)
        std = np.maximum(np.sqrt(var), MIN_STD)
        return {
            "bands": list(self.bands),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "pixels": [int(v) for v in self.count],
        }


def compute_normalization(
    reflectance_arrays: Iterable[np.ndarray], bands: Sequence[str], total: int | None = None
) -> dict:
    """Mean and std per band over all valid pixels of the given ``(bands, y, x)`` arrays."""
    stats = BandStatistics(bands)
    for array in tqdm(reflectance_arrays, total=total, desc="band statistics", leave=False):
        stats.update(array)
    return stats.result()


def cache_key(bands: Sequence[str], scene_ids: Iterable[str]) -> str:
    """Key of a normalisation: its bands and the exact training scenes it was computed on."""
    payload = json.dumps({"bands": list(bands), "scenes": sorted(scene_ids)})
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def cached_normalization(
    root: str | os.PathLike,
    bands: Sequence[str],
    scene_ids: Sequence[str],
    compute,
) -> dict:
    """Load the cached normalisation for these bands and training scenes, or compute and store it.

    ``compute()`` returns the statistics dict; the cache file is written atomically.
    """
    bands = list(resolve_bands(bands))
    path = Path(root) / CACHE_DIR / f"{cache_key(bands, scene_ids)}.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("bands") == bands:
            return cached
    result = compute()
    result["train_scenes"] = len(scene_ids)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result
