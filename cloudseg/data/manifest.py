"""The one on-disk dataset format and the one writer every importer (and the simulator) uses.

A dataset is a folder::

    <root>/manifest.csv            one row per scene (columns: MANIFEST_COLUMNS)
    <root>/images/<scene_id>.tif   uint16 DN, one band per named Sentinel-2 band (COG)
    <root>/masks/<scene_id>.tif    uint8 classes 0 clear, 1 thick_cloud, 2 thin_cloud,
                                   3 cloud_shadow, 255 ignore (COG, same grid as the image)

Paths in the manifest are relative to the root, so a dataset folder can be moved or shared.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cloudseg.labels import IGNORE_INDEX, NUM_CLASSES
from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.cog import atomic_path, write_cog
from cloudseg.sentinel2.grid import Grid

MANIFEST_NAME = "manifest.csv"
LABEL_SOURCES = (
    "hand", "scl", "s2cloudless", "ukis", "ocm", "import", "simulated", "real_background",
    "consensus",
)  # fmt: skip
CURATION_STATUSES = ("accepted", "rejected", "pending")
SPLITS = ("train", "val", "test", "")


@dataclass
class ManifestRow:
    """One scene of a dataset. ``bands`` is space-separated canonical names (``"B02 B03 B04"``)."""

    scene_id: str
    image_path: str
    mask_path: str
    bands: str
    processing_baseline: str
    site: str
    date: str
    label_source: str
    curation: str = "accepted"
    curation_reason: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.label_source not in LABEL_SOURCES:
            raise ValueError(
                f"Scene {self.scene_id}: label_source {self.label_source!r} not in {LABEL_SOURCES}."
            )
        if self.curation not in CURATION_STATUSES:
            raise ValueError(
                f"Scene {self.scene_id}: curation {self.curation!r} not in {CURATION_STATUSES}."
            )
        if self.split not in SPLITS:
            raise ValueError(f"Scene {self.scene_id}: split {self.split!r} not in {SPLITS}.")


MANIFEST_COLUMNS: tuple[str, ...] = tuple(
    name for name in ManifestRow.__dataclass_fields__ if name != "extra"
)


def validate_mask(mask: np.ndarray, where: str) -> None:
    """A mask holds only class codes 0..NUM_CLASSES-1 and IGNORE_INDEX."""
    values = np.unique(mask)
    bad = [int(v) for v in values if not (0 <= v < NUM_CLASSES or v == IGNORE_INDEX)]
    if bad:
        raise ValueError(
            f"{where}: mask has unknown class values {bad}; expected 0-{NUM_CLASSES - 1} "
            f"or {IGNORE_INDEX} (ignore). Map them with the importer's class-mapping config."
        )


class DatasetWriter:
    """Write scenes into a dataset folder and keep its manifest.

    Use as a context manager; the manifest is written (atomically) on exit and merged with any
    rows already there, a re-added ``scene_id`` replacing its old row::

        with DatasetWriter("data/simulated") as writer:
            writer.add("site01_20200101", image_dn, mask, grid, bands, site="site01", ...)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.rows: dict[str, ManifestRow] = {}
        manifest = self.root / MANIFEST_NAME
        if manifest.exists():
            for record in read_manifest(self.root, check_files=False).to_dict("records"):
                row = ManifestRow(**{k: _as_str(record[k]) for k in MANIFEST_COLUMNS})
                self.rows[row.scene_id] = row

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.write_manifest()

    def add(
        self,
        scene_id: str,
        image_dn: np.ndarray,
        mask: np.ndarray | None,
        grid: Grid,
        bands: list[str] | tuple[str, ...],
        *,
        site: str,
        date: str | dt.date,
        label_source: str,
        processing_baseline: str = "",
        curation: str = "accepted",
        curation_reason: str = "",
        split: str = "",
        tags: dict[str, str] | None = None,
    ) -> ManifestRow:
        """Write one scene's image (uint16 DN) and mask (uint8) and record its row.

        A rejected scene may come without a mask; it is listed but never trained on. ``tags``
        (e.g. ``SENSING_TIME``, ``PROCESSING_BASELINE``, sun angles) go to the image's metadata.
        """
        bands = resolve_bands(bands)
        if image_dn.ndim != 3 or image_dn.shape[0] != len(bands):
            raise ValueError(
                f"Scene {scene_id}: image shape {image_dn.shape} does not match {len(bands)} bands."
            )
        if image_dn.shape[1:] != grid.shape:
            raise ValueError(
                f"Scene {scene_id}: image shape {image_dn.shape[1:]} differs from grid {grid.shape}."
            )
        image_rel = f"images/{scene_id}.tif"
        write_cog(
            self.root / image_rel,
            image_dn.astype(np.uint16),
            grid,
            nodata=0,
            band_names=bands,
            tags=tags,
        )
        mask_rel = ""
        if mask is not None:
            if mask.shape != grid.shape:
                raise ValueError(
                    f"Scene {scene_id}: mask shape {mask.shape} differs from image {grid.shape}."
                )
            validate_mask(mask, f"Scene {scene_id}")
            mask_rel = f"masks/{scene_id}.tif"
            write_cog(
                self.root / mask_rel,
                mask.astype(np.uint8),
                grid,
                nodata=IGNORE_INDEX,
                categorical=True,
            )
        elif curation == "accepted":
            raise ValueError(f"Scene {scene_id}: an accepted scene needs a mask.")
        row = ManifestRow(
            scene_id=scene_id,
            image_path=image_rel,
            mask_path=mask_rel,
            bands=" ".join(bands),
            processing_baseline=str(processing_baseline),
            site=str(site),
            date=str(date),
            label_source=label_source,
            curation=curation,
            curation_reason=curation_reason,
            split=split,
        )
        self.rows[scene_id] = row
        return row

    def write_manifest(self) -> Path:
        frame = pd.DataFrame(
            [{k: v for k, v in asdict(r).items() if k != "extra"} for r in self.rows.values()],
            columns=list(MANIFEST_COLUMNS),
        )
        return write_manifest(frame, self.root)


def write_manifest(frame: pd.DataFrame, root: str | os.PathLike) -> Path:
    """Write a manifest table atomically to ``<root>/manifest.csv``, rows sorted by scene_id."""
    path = Path(root) / MANIFEST_NAME
    frame = frame.sort_values("scene_id").reset_index(drop=True)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def read_manifest(root: str | os.PathLike, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate ``<root>/manifest.csv``; every problem names the row and the file."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"No manifest at {path}. Create the dataset with an importer or "
            f"`cloudfree-simulate labeled --out {root}`."
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected {list(MANIFEST_COLUMNS)}.")
    if frame["scene_id"].duplicated().any():
        dupes = frame.loc[frame["scene_id"].duplicated(), "scene_id"].tolist()
        raise ValueError(f"{path}: scene_id values repeat: {dupes}.")
    for line, record in enumerate(frame.to_dict("records"), start=2):
        ManifestRow(**{k: record[k] for k in MANIFEST_COLUMNS})  # validates enums
        if not check_files:
            continue
        for column in ("image_path", "mask_path"):
            rel = record[column]
            if column == "mask_path" and not rel and record["curation"] != "accepted":
                continue
            if not rel or not (root / rel).exists():
                raise FileNotFoundError(
                    f"{path} line {line} (scene {record['scene_id']}): {column} "
                    f"{(root / rel) if rel else '(empty)'} does not exist. Restore the file or "
                    f"remove the row."
                )
    return frame


def _as_str(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
