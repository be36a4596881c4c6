"""Public cloud-mask datasets, read in their published layouts.

- **Copernicus-Bench cloud_s2** (a high-quality subset of CloudSEN12+, same 0-3 classes), read through
  torchgeo's :class:`~torchgeo.datasets.CopernicusBenchCloudS2`::

      <root>/cloud_s2/{train,val,test}.csv      one file stem per line, no header
      <root>/cloud_s2/s2_toa/<stem>.tif         13 L1C bands, uint16 DN
      <root>/cloud_s2/cloud/<stem>.tif          uint8 0 clear 1 thick 2 thin 3 shadow

  with stems ``ROI_<5 digits>__<YYYYMMDDTHHMMSS>_<...>_T<tile>``. The ROI is the site: all its
  dates go to one split.

- **Sentinel-2 Cloud Mask Catalogue** (Francis et al. 2020, 513 subscenes of 1022x1022 at 20 m)::

      <root>/subscenes/<product id>.npy   (y, x, 13) float TOA reflectance, L1C band order
      <root>/masks/<product id>.npy       (y, x, 3) boolean one-hot CLEAR, CLOUD, CLOUD_SHADOW

  CLOUD (thick and thin alike) becomes ``thick_cloud``; a pixel with no class or several is
  ``ignore``. The arrays carry no georeferencing: each subscene is placed on a nominal grid in
  its tile's UTM zone with its origin at (0, 0), so its grid gives pixel size, not location.
  Shadows were not marked in every subscene (89 of 513 have none marked), so curate.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from tqdm import tqdm

from cloudseg.data.importers.common import safe_scene_id, write_scene
from cloudseg.data.importers.curation import CurationList
from cloudseg.data.importers.sources import SceneImage, assert_same_grid, date_from_text
from cloudseg.data.manifest import DatasetWriter, ManifestRow
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import offset_for_baseline, reflectance_to_dn

CLOUD_S2_STEM = re.compile(
    r"^(?P<roi>ROI_\d{5})__(?P<time>\d{8}T\d{6})_.*_T(?P<tile>\d{2}[A-Z]{3})$"
)
PRODUCT_ID = re.compile(
    r"S2[A-D]_MSIL1C_(?P<time>\d{8}T\d{6})_N(?P<baseline>\d{4})_R\d{3}_T(?P<tile>\d{2}[C-X][A-Z]{2})"
)
#: Cloud Mask Catalogue one-hot channels -> dataset classes.
CATALOGUE_CLASSES: tuple[int, ...] = (CLEAR, THICK_CLOUD, CLOUD_SHADOW)
CATALOGUE_RESOLUTION_M = 20.0


def import_copernicus_cloud_s2(
    writer: DatasetWriter,
    root: str | os.PathLike,
    *,
    splits: tuple[str, ...] = ("train", "val", "test"),
    keep_published_split: bool = False,
    processing_baseline: str = "",
    curation: CurationList | None = None,
) -> list[ManifestRow]:
    """Import Copernicus-Bench cloud_s2 patches (all of ``splits``) into a dataset.

    ``keep_published_split`` stores the benchmark's split per scene; otherwise splits are left
    for :func:`cloudseg.data.splits.assign_splits`. ``processing_baseline`` applies to every
    patch (empty: DN already on the offset-0 scale).
    """
    from torchgeo.datasets import CopernicusBenchCloudS2

    rows: dict[str, ManifestRow] = {}
    split_of: dict[str, str] = {}
    for split in splits:
        dataset = CopernicusBenchCloudS2(root=str(root), split=split)
        folder = Path(root) / dataset.directory
        for index, stem in enumerate(tqdm(list(dataset.files), desc=f"cloud_s2 {split}")):
            stem = str(stem)
            if stem in split_of:
                if keep_published_split and split_of[stem] != split:
                    raise ValueError(
                        f"cloud_s2 patch {stem} is listed in both {split_of[stem]}.csv and "
                        f"{split}.csv; import without keeping the published split."
                    )
                continue
            split_of[stem] = split
            match = CLOUD_S2_STEM.match(stem)
            if match is None:
                raise ValueError(
                    f"{folder}/{split}.csv: patch name {stem!r} is not "
                    f"ROI_<id>__<YYYYMMDDTHHMMSS>_..._T<tile> as published."
                )
            image_path = folder / "s2_toa" / f"{stem}.tif"
            mask_path = folder / "cloud" / f"{stem}.tif"
            grid = _grid_of(image_path)
            assert_same_grid(grid, _grid_of(mask_path), f"image {image_path}", f"mask {mask_path}")
            sample = dataset[index]
            image = SceneImage(
                dn=sample["image"].numpy().astype(np.uint16),
                grid=grid,
                bands=tuple(dataset.bands),
                processing_baseline=processing_baseline,
                date=date_from_text(match["time"]),
                tile=match["tile"],
                source=str(image_path),
            )
            rows[stem] = write_scene(
                writer,
                image,
                sample["mask"].numpy().astype(np.uint8),
                scene_id=safe_scene_id(stem),
                label_source="import",
                site=match["roi"],
                curation=curation,
                split=split if keep_published_split else "",
            )
    return list(rows.values())


def _grid_of(path: Path) -> Grid:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (listed in the dataset's split file).")
    with rasterio.open(path) as src:
        return Grid.from_dataset(src)


def catalogue_mask(one_hot: np.ndarray, where: str) -> np.ndarray:
    """Decode a Catalogue one-hot mask ``(y, x, 3)`` to classes; no or several classes -> ignore."""
    if one_hot.ndim != 3 or one_hot.shape[-1] != len(CATALOGUE_CLASSES):
        raise ValueError(f"{where}: mask shape {one_hot.shape} is not (y, x, 3) one-hot.")
    flags = one_hot.astype(bool)
    mask = np.asarray(CATALOGUE_CLASSES, dtype=np.uint8)[flags.argmax(axis=-1)]
    mask[flags.sum(axis=-1) != 1] = IGNORE_INDEX
    return mask


def utm_crs_for_tile(tile: str) -> CRS:
    """WGS 84 / UTM CRS of an MGRS tile (``31UFT`` -> EPSG:32631)."""
    zone, band = int(tile[:2]), tile[2].upper()
    return CRS.from_epsg((32600 if band >= "N" else 32700) + zone)


def import_cloud_mask_catalogue(
    writer: DatasetWriter,
    root: str | os.PathLike,
    *,
    curation: CurationList | None = None,
) -> list[ManifestRow]:
    """Import the Sentinel-2 Cloud Mask Catalogue's subscenes and masks (layout above)."""
    root = Path(root)
    subscene_dir, mask_dir = root / "subscenes", root / "masks"
    for folder in (subscene_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} not found: the Catalogue root holds subscenes/ and masks/ "
                f"(unzipped subscenes.zip and masks.zip)."
            )
    subscenes = sorted(subscene_dir.glob("*.npy"))
    if not subscenes:
        raise FileNotFoundError(f"No .npy subscenes in {subscene_dir}.")
    rows = []
    for path in tqdm(subscenes, desc="Cloud Mask Catalogue"):
        mask_path = mask_dir / path.name
        if not mask_path.exists():
            raise FileNotFoundError(f"Subscene {path} has no mask {mask_path}.")
        match = PRODUCT_ID.search(path.stem)
        if match is None:
            raise ValueError(
                f"{path}: name is not a Sentinel-2 L1C product id (S2A_MSIL1C_<time>_N<baseline>"
                f"_R<orbit>_T<tile>...), so its tile and date are unknown."
            )
        reflectance = np.load(path)
        if reflectance.ndim != 3 or reflectance.shape[-1] != len(L1C_BANDS):
            raise ValueError(f"{path}: shape {reflectance.shape} is not (y, x, 13).")
        mask = catalogue_mask(np.load(mask_path), str(mask_path))
        if mask.shape != reflectance.shape[:2]:
            raise ValueError(
                f"{mask_path}: mask shape {mask.shape} differs from subscene {reflectance.shape[:2]}."
            )
        height, width = mask.shape
        res = CATALOGUE_RESOLUTION_M
        grid = Grid(utm_crs_for_tile(match["tile"]), Affine(res, 0, 0, 0, -res, 0), height, width)
        baseline = f"{match['baseline'][:2]}.{match['baseline'][2:]}"
        dn = reflectance_to_dn(np.moveaxis(reflectance, -1, 0), offset_for_baseline(baseline))
        image = SceneImage(
            dn=dn,
            grid=grid,
            bands=L1C_BANDS,
            processing_baseline=baseline,
            date=date_from_text(match["time"]),
            tile=match["tile"],
            source=str(path),
        )
        rows.append(
            write_scene(
                writer,
                image,
                mask,
                scene_id=safe_scene_id(path.stem),
                label_source="import",
                curation=curation,
            )
        )
    return rows
