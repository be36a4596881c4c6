"""Tiny deterministic cloud-mask datasets for the data tests (written with the real writer).

Each scene: a clear surface with a bright square cloud (class thick_cloud), a thin-cloud band, a
shadow patch, an unlabeled corner (ignore) and a nodata strip (DN 0, mask 255). Band ``i`` of a
clear pixel holds DN ``1000 + 100 * i`` so tests can tell bands apart after reading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from cloudseg.data.manifest import DatasetWriter
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.grid import Grid

BANDS = ("B02", "B03", "B04", "B08", "B11")
CLEAR_DN_BASE = 1000
CLOUD_DN = 6000


def scene_grid(site_index: int, size: int, resolution: float = 10.0) -> Grid:
    """A grid per site, 10 km apart, in UTM 32N."""
    origin_x = 300_000 + 10_000 * site_index
    return Grid(
        CRS.from_epsg(32632), Affine(resolution, 0, origin_x, 0, -resolution, 5_000_000), size, size
    )


def scene_arrays(bands: tuple[str, ...], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(DN (bands, size, size) uint16, mask (size, size) uint8) as described above."""
    rng = np.random.default_rng(seed)
    mask = np.full((size, size), CLEAR, dtype=np.uint8)
    top, left = rng.integers(0, size // 2, 2)
    mask[top : top + size // 4, left : left + size // 4] = THICK_CLOUD
    mask[size // 2 : size // 2 + 3, :] = THIN_CLOUD
    mask[-size // 8 :, : size // 8] = CLOUD_SHADOW
    mask[: size // 8, -size // 8 :] = IGNORE_INDEX  # unlabeled corner
    dn = np.empty((len(bands), size, size), dtype=np.uint16)
    for index in range(len(bands)):
        dn[index] = CLEAR_DN_BASE + 100 * index + rng.integers(0, 50, (size, size))
    dn[:, mask == THICK_CLOUD] = CLOUD_DN
    dn[:, mask == CLOUD_SHADOW] //= 3
    dn[:, :, -2:] = 0  # nodata strip on the right
    mask[:, -2:] = IGNORE_INDEX
    return dn, mask


def build_dataset(
    root: Path,
    scenes_per_site: dict[str, int],
    *,
    size: int = 48,
    bands: tuple[str, ...] = BANDS,
    processing_baseline: str = "02.14",
    splits: dict[str, str] | None = None,
    rejected: tuple[str, ...] = (),
) -> Path:
    """Write a dataset with ``scenes_per_site[site]`` dates per site; returns ``root``.

    ``splits`` maps site -> split to store; scene ids in ``rejected`` are written as rejected.
    """
    bands = resolve_bands(bands)
    with DatasetWriter(root) as writer:
        for site_index, (site, count) in enumerate(sorted(scenes_per_site.items())):
            for day in range(count):
                scene_id = f"{site}_2021010{day + 1}"
                dn, mask = scene_arrays(bands, size, seed=100 * site_index + day)
                status = "rejected" if scene_id in rejected else "accepted"
                writer.add(
                    scene_id,
                    dn,
                    mask,
                    scene_grid(site_index, size),
                    bands,
                    site=site,
                    date=f"2021-01-0{day + 1}",
                    label_source="simulated",
                    processing_baseline=processing_baseline,
                    curation=status,
                    curation_reason="test rejection" if status == "rejected" else "",
                    split=(splits or {}).get(site, "") if status == "accepted" else "",
                )
    return root
