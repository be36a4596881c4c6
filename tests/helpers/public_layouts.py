"""Write tiny copies of public cloud-mask datasets in their published layouts (for tests).

- Copernicus-Bench cloud_s2 (torchgeo's layout): ``cloud_s2/{split}.csv`` (stems, no header),
  ``cloud_s2/s2_toa/<stem>.tif`` (13 bands uint16, UTM) and ``cloud_s2/cloud/<stem>.tif``
  (uint8 0-3), as in torchgeo's own test data generator.
- Sentinel-2 Cloud Mask Catalogue: ``subscenes/<product id>.npy`` (y, x, 13) float32 TOA
  reflectance and ``masks/<product id>.npy`` (y, x, 3) boolean one-hot CLEAR, CLOUD, CLOUD_SHADOW.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

CLOUD_S2_BANDS = 13


def cloud_s2_mask(size: int, seed: int) -> np.ndarray:
    """A 0-3 mask: quadrants of clear, thick, thin, shadow, shifted per seed."""
    mask = np.zeros((size, size), dtype=np.uint8)
    half = size // 2
    mask[:half, half:] = 1
    mask[half:, :half] = 2
    mask[half:, half:] = 3
    return np.roll(mask, seed, axis=1)


def write_cloud_s2(
    root: Path, patches: dict[str, list[str]], size: int = 16, mask_shift_m: float = 0.0
) -> Path:
    """``patches``: split -> stems. ``mask_shift_m`` moves the masks' grid (to test checks)."""
    folder = root / "cloud_s2"
    for sub in ("s2_toa", "cloud"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = sorted({stem for split_stems in patches.values() for stem in split_stems})
    for index, stem in enumerate(stems):
        transform = Affine(10.0, 0.0, 392_950.0 + 1000 * index, 0.0, -10.0, 3_783_700.0)
        profile = {
            "driver": "GTiff", "width": size, "height": size, "crs": CRS.from_epsg(32719),
            "transform": transform,
        }  # fmt: skip
        image = (1000 + 100 * np.arange(CLOUD_S2_BANDS, dtype=np.uint16))[:, None, None]
        image = np.broadcast_to(image, (CLOUD_S2_BANDS, size, size)).copy()
        mask = cloud_s2_mask(size, index)
        image[:, mask == 1] = 7000
        with rasterio.open(
            folder / "s2_toa" / f"{stem}.tif", "w", count=CLOUD_S2_BANDS, dtype="uint16", **profile
        ) as dst:
            dst.write(image)
        profile["transform"] = transform @ Affine.translation(mask_shift_m / 10.0, 0)
        with rasterio.open(
            folder / "cloud" / f"{stem}.tif", "w", count=1, dtype="uint8", **profile
        ) as dst:
            dst.write(mask, 1)
    for split, split_stems in patches.items():
        (folder / f"{split}.csv").write_text("".join(f"{stem}\n" for stem in split_stems))
    return root


def catalogue_mask(size: int) -> np.ndarray:
    """One-hot (size, size, 3): left clear, top-right cloud, bottom-right shadow; one pixel unset."""
    one_hot = np.zeros((size, size, 3), dtype=bool)
    half = size // 2
    one_hot[:, :half, 0] = True
    one_hot[:half, half:, 1] = True
    one_hot[half:, half:, 2] = True
    one_hot[0, 0, :] = False  # no class: ignore
    return one_hot


def write_cloud_mask_catalogue(root: Path, product_ids: list[str], size: int = 16) -> Path:
    (root / "subscenes").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for product_id in product_ids:
        reflectance = np.empty((size, size, 13), dtype=np.float32)
        reflectance[:] = 0.1 + 0.01 * np.arange(13, dtype=np.float32)
        mask = catalogue_mask(size)
        reflectance[mask[..., 1]] = 0.6
        np.save(root / "subscenes" / f"{product_id}.npy", reflectance)
        np.save(root / "masks" / f"{product_id}.npy", mask)
    return root
