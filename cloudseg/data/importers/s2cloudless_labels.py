"""Curated labels from s2cloudless: a cloud probability thresholded to ``thick_cloud``/``clear``.

Three starting points, all ending in the same mask:

- a cloud mask already made by s2cloudless (0 clear, 1 cloud, anything else ignore), e.g. eo-learn's
  ``CLM`` feature;
- a cloud probability raster (0-1, or 0-100 / 0-255 with ``probability_max``), thresholded with
  s2cloudless's own averaging and dilation;
- nothing: s2cloudless is run on the scene's L1C bands.

s2cloudless knows no thin cloud and no shadow, so a shadowed pixel is labeled clear: accept a scene
(curation list) only where that is true. Default status is ``pending``.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_bounds
from s2cloudless import S2PixelCloudDetector

from cloudseg.data.importers.common import product_scene_id, safe_scene_id, write_scene
from cloudseg.data.importers.curation import CurationList
from cloudseg.data.importers.sources import (
    SceneImage,
    date_from_text,
    read_raster_on_grid,
    read_scene_image,
)
from cloudseg.data.manifest import DatasetWriter, ManifestRow
from cloudseg.labels import CLEAR, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS, S2CLOUDLESS_BANDS, band_indices, resolve_bands
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import (
    dn_to_reflectance,
    offset_for_baseline,
    reflectance_to_dn,
)


@dataclass(frozen=True)
class S2CloudlessConfig:
    """Threshold and post-processing for s2cloudless labels.

    ``threshold`` is s2cloudless's own default. Averaging and dilation disks are given in pixels
    at 10 m (22 and 11) and scaled to the scene's pixel size, so a 20 m scene smooths over the
    same ground distance.
    """

    threshold: float = 0.4
    average_over_10m: int = 22
    dilation_size_10m: int = 11

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(
                f"s2cloudless threshold must be between 0 and 1, got {self.threshold}."
            )

    def detector(self, resolution_m: float) -> S2PixelCloudDetector:
        scale = 10.0 / resolution_m
        return S2PixelCloudDetector(
            threshold=self.threshold,
            average_over=max(1, round(self.average_over_10m * scale)),
            dilation_size=max(1, round(self.dilation_size_10m * scale)),
        )


def cloud_mask_to_classes(cloud_mask: np.ndarray) -> np.ndarray:
    """An s2cloudless binary mask (0 clear, 1 cloud, other values nodata) as dataset classes."""
    mask = np.full(cloud_mask.shape, IGNORE_INDEX, dtype=np.uint8)
    mask[cloud_mask == 0] = CLEAR
    mask[cloud_mask == 1] = THICK_CLOUD
    return mask


def probability_to_cloud_mask(
    probability: np.ndarray, detector: S2PixelCloudDetector, probability_max: float = 1.0
) -> np.ndarray:
    """Threshold a (y, x) cloud probability with s2cloudless's averaging and dilation.

    Returns 0 clear, 1 cloud and 255 where the probability is missing (NaN).
    """
    scaled = probability.astype(np.float32) / np.float32(probability_max)
    finite = np.isfinite(scaled)
    if finite.any() and (scaled[finite].max() > 1.0 or scaled[finite].min() < 0.0):
        raise ValueError(
            f"Cloud probabilities range {np.nanmin(probability)}-{np.nanmax(probability)}, "
            f"outside 0-{probability_max}; set probability_max (100 for Earth Engine's "
            f"S2_CLOUD_PROBABILITY, 255 for Sentinel Hub CLP)."
        )
    cloud = detector.get_mask_from_prob(np.where(finite, scaled, 0.0)[np.newaxis])[0]
    return np.where(finite, cloud, IGNORE_INDEX).astype(np.uint8)


def run_s2cloudless(
    reflectance: np.ndarray, bands: tuple[str, ...], detector: S2PixelCloudDetector
) -> np.ndarray:
    """Cloud mask (0/1, 255 nodata) from L1C TOA reflectance ``(bands, y, x)`` with NaN as nodata."""
    indices = band_indices(S2CLOUDLESS_BANDS, bands)
    stack = np.moveaxis(reflectance[indices], 0, -1)[np.newaxis]
    valid = np.isfinite(stack).all(axis=-1)[0]
    cloud = detector.get_cloud_masks(np.nan_to_num(stack, nan=0.0))[0]
    return np.where(valid, cloud, IGNORE_INDEX).astype(np.uint8)


def import_s2cloudless_scene(
    writer: DatasetWriter,
    image: SceneImage,
    *,
    scene_id: str,
    cloud_mask: np.ndarray | None = None,
    probability: np.ndarray | None = None,
    probability_max: float = 1.0,
    config: S2CloudlessConfig | None = None,
    site: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Write a scene labeled by s2cloudless: from its mask, its probability, or by running it.

    ``cloud_mask`` and ``probability`` must be on the image grid (``image.grid.shape``).
    """
    detector = (config or S2CloudlessConfig()).detector(image.grid.resolution)
    where = f"scene {scene_id}"
    for name, layer in (("cloud mask", cloud_mask), ("cloud probability", probability)):
        if layer is not None and layer.shape != image.grid.shape:
            raise ValueError(
                f"{where}: {name} shape {layer.shape} differs from the image grid "
                f"{image.grid.shape}; resample it onto the image first."
            )
    if cloud_mask is None and probability is not None:
        cloud_mask = probability_to_cloud_mask(probability, detector, probability_max)
    if cloud_mask is None:
        offset = offset_for_baseline(image.processing_baseline or None)
        cloud_mask = run_s2cloudless(dn_to_reflectance(image.dn, offset), image.bands, detector)
    mask = cloud_mask_to_classes(cloud_mask)
    mask[(image.dn == 0).all(axis=0)] = IGNORE_INDEX
    return write_scene(
        writer,
        image,
        mask,
        scene_id=scene_id,
        label_source="s2cloudless",
        site=site,
        curation=curation,
        default_status="pending",
    )


def import_reflectance_series(
    writer: DatasetWriter,
    reflectance: np.ndarray,
    timestamps: list[str],
    grid: Grid,
    *,
    site: str,
    bands: tuple[str, ...] = L1C_BANDS,
    cloud_masks: np.ndarray | None = None,
    config: S2CloudlessConfig | None = None,
    curation: CurationList | None = None,
) -> list[ManifestRow]:
    """Import a time series of L1C TOA reflectance ``(time, y, x, bands)`` (eo-learn's layout).

    ``cloud_masks`` ``(time, y, x)`` or ``(time, y, x, 1)`` are s2cloudless masks; without them
    s2cloudless is run. Scene ids are ``<site>_<YYYYMMDD>`` (``_<HHMMSS>`` added on repeat days).
    """
    bands = resolve_bands(bands)
    if reflectance.ndim != 4 or reflectance.shape[-1] != len(bands):
        raise ValueError(
            f"Reflectance series shape {reflectance.shape} is not (time, y, x, {len(bands)} bands)."
        )
    if reflectance.shape[1:3] != grid.shape:
        raise ValueError(f"Series pixels {reflectance.shape[1:3]} differ from grid {grid.shape}.")
    if len(timestamps) != reflectance.shape[0]:
        raise ValueError(
            f"{len(timestamps)} timestamps for {reflectance.shape[0]} images in the series."
        )
    if cloud_masks is not None:
        cloud_masks = cloud_masks.reshape(cloud_masks.shape[:3])
        if cloud_masks.shape != reflectance.shape[:3]:
            raise ValueError(
                f"Cloud masks shape {cloud_masks.shape} does not match the series "
                f"{reflectance.shape[:3]} (time, y, x)."
            )
    scene_ids = _series_scene_ids(site, timestamps)
    rows = []
    for index, (scene_id, timestamp) in enumerate(zip(scene_ids, timestamps, strict=True)):
        image = SceneImage(
            dn=reflectance_to_dn(np.moveaxis(reflectance[index], -1, 0), offset=0.0),
            grid=grid,
            bands=bands,
            date=date_from_text(timestamp),
            tile=site,
            source=f"series image {index} ({timestamp})",
        )
        rows.append(
            import_s2cloudless_scene(
                writer,
                image,
                scene_id=scene_id,
                cloud_mask=None if cloud_masks is None else cloud_masks[index],
                config=config,
                site=site,
                curation=curation,
            )
        )
    return rows


def _series_scene_ids(site: str, timestamps: list[str]) -> list[str]:
    days = [date_from_text(t).replace("-", "") for t in timestamps]
    ids = []
    for day, timestamp in zip(days, timestamps, strict=True):
        if not day:
            raise ValueError(f"Cannot read a date from timestamp {timestamp!r}.")
        repeated = days.count(day) > 1
        suffix = f"_{str(timestamp).split('T')[-1].replace(':', '')[:6]}" if repeated else ""
        ids.append(safe_scene_id(f"{site}_{day}{suffix}"))
    return ids


def read_eopatch(
    folder: str | os.PathLike, data_feature: str = "BANDS", mask_feature: str | None = "CLM"
) -> tuple[np.ndarray, np.ndarray | None, list[str], Grid]:
    """Read an eo-learn EOPatch folder: ``data/<feature>.npy[.gz]``, ``mask/<feature>.npy[.gz]``,
    ``bbox.geojson`` and ``timestamps.json``. Returns (reflectance, cloud masks, timestamps, grid).
    """
    folder = Path(folder)
    reflectance = _load_feature(folder, "data", data_feature)
    masks = _load_feature(folder, "mask", mask_feature) if mask_feature else None
    timestamps_path = folder / "timestamps.json"
    if not timestamps_path.exists():
        raise FileNotFoundError(f"EOPatch {folder} has no timestamps.json.")
    timestamps = json.loads(timestamps_path.read_text())
    grid = grid_from_bbox(folder / "bbox.geojson", reflectance.shape[1:3])
    return reflectance, masks, timestamps, grid


def _load_feature(folder: Path, kind: str, name: str) -> np.ndarray:
    for path in (folder / kind / f"{name}.npy", folder / kind / f"{name}.npy.gz"):
        if path.exists():
            if path.suffix == ".gz":
                with gzip.open(path, "rb") as handle:
                    return np.load(handle)
            return np.load(path)
    raise FileNotFoundError(
        f"EOPatch {folder} has no {kind} feature {name!r} ({kind}/{name}.npy); its {kind}/ "
        f"holds {sorted(p.name for p in (folder / kind).glob('*'))}."
    )


def grid_from_bbox(path: Path, shape: tuple[int, int]) -> Grid:
    """The grid of an eo-learn ``bbox.geojson`` (polygon + CRS name) for ``shape`` (y, x) pixels."""
    if not path.exists():
        raise FileNotFoundError(f"EOPatch bbox {path} does not exist.")
    geojson = json.loads(path.read_text())
    crs_name = geojson.get("crs", {}).get("properties", {}).get("name")
    if not crs_name:
        raise ValueError(f"{path} names no CRS (crs.properties.name).")
    ring = np.asarray(geojson["coordinates"][0], dtype=float)
    west, south = ring.min(axis=0)
    east, north = ring.max(axis=0)
    height, width = shape
    transform = from_bounds(west, south, east, north, width, height)
    return Grid(CRS.from_user_input(crs_name), transform, height, width)


def import_s2cloudless_product(
    writer: DatasetWriter,
    source: str | os.PathLike,
    *,
    resolution: float | None = 20.0,
    cloud_mask_path: str | os.PathLike | None = None,
    probability_path: str | os.PathLike | None = None,
    probability_max: float = 1.0,
    config: S2CloudlessConfig | None = None,
    scene_id: str | None = None,
    site: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Import an L1C scene (SAFE, folder, GeoTIFF, STAC item) labeled by s2cloudless.

    Its spectral bands are read at ``resolution`` metres; a given cloud mask or probability
    raster must be on that grid, else s2cloudless runs on the bands.
    """
    image, _ = read_scene_image(source, resolution=resolution)
    cloud_mask = probability = None
    if cloud_mask_path is not None:
        cloud_mask, _ = read_raster_on_grid(cloud_mask_path, image.grid, "cloud mask", str(source))
    elif probability_path is not None:
        probability, nodata = read_raster_on_grid(
            probability_path, image.grid, "cloud probability", str(source)
        )
        probability = probability.astype(np.float32)
        if nodata is not None:
            probability[probability == nodata] = np.nan
    scene_id = scene_id or product_scene_id(image)
    return import_s2cloudless_scene(
        writer,
        image,
        scene_id=scene_id,
        cloud_mask=cloud_mask,
        probability=probability,
        probability_max=probability_max,
        config=config,
        site=site,
        curation=curation,
    )
