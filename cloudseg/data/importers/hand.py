"""Hand labels: label rasters in any class coding, and vector polygons rasterized onto the image.

The coding is mapped to the dataset's classes by a small config (YAML or JSON)::

    classes:          # source value (raster code or attribute value) -> class name or "ignore"
      0: ignore       # unlabeled
      1: clear
      2: thick_cloud
      3: thin_cloud
      4: cloud_shadow
    unmapped: error   # a value not listed: "error" (default) or "ignore"

Pixels no label covers (raster nodata, outside every polygon) are ``ignore``, never ``clear``:
a missing label is not evidence of a clear sky.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import yaml

from cloudseg.data.importers.common import safe_scene_id, write_scene
from cloudseg.data.importers.curation import CurationList
from cloudseg.data.importers.sources import read_raster_on_grid, read_scene_image
from cloudseg.data.manifest import DatasetWriter, ManifestRow
from cloudseg.labels import CLASS_BY_NAME, CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from cloudseg.sentinel2.grid import Grid

IGNORE_NAME = "ignore"
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img")


def _key(value) -> str:
    """One spelling per source value: ``1``, ``1.0`` and ``"1"`` are the same key."""
    if isinstance(value, numbers.Number) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _target_code(target, where: str) -> int:
    if isinstance(target, str) and target.strip().lower() == IGNORE_NAME:
        return IGNORE_INDEX
    if isinstance(target, str) and target.strip() in CLASS_BY_NAME:
        return CLASS_BY_NAME[target.strip()]
    if isinstance(target, numbers.Integral) and (
        0 <= int(target) < NUM_CLASSES or int(target) == IGNORE_INDEX
    ):
        return int(target)
    raise ValueError(
        f"{where}: target {target!r} is not a class; use one of {list(CLASS_NAMES)} or "
        f"{IGNORE_NAME!r} (or codes 0-{NUM_CLASSES - 1}, {IGNORE_INDEX})."
    )


class ClassMapping:
    """Maps a source class coding onto the dataset's classes (see the module docstring)."""

    def __init__(
        self, classes: Mapping, unmapped: str = "error", source: str = "class mapping"
    ) -> None:
        if unmapped not in ("error", IGNORE_NAME):
            raise ValueError(f"{source}: unmapped must be 'error' or 'ignore', got {unmapped!r}.")
        if not classes:
            raise ValueError(f"{source}: the mapping lists no classes.")
        self.codes = {_key(k): _target_code(v, f"{source} entry {k!r}") for k, v in classes.items()}
        self.unmapped = unmapped
        self.source = source

    @classmethod
    def read(cls, path: str | os.PathLike) -> ClassMapping:
        """Read a mapping config from YAML or JSON."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"Class mapping {path} does not exist.")
        text = path.read_text()
        config = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(config, dict) or "classes" not in config:
            raise ValueError(
                f"Class mapping {path} needs a 'classes:' table (see cloudseg.data.importers.hand)."
            )
        return cls(config["classes"], config.get("unmapped", "error"), source=str(path))

    @classmethod
    def identity(cls) -> ClassMapping:
        """The dataset's own coding (0-3 and 255), for labels already in it."""
        codes = {code: code for code in range(NUM_CLASSES)} | {IGNORE_INDEX: IGNORE_INDEX}
        return cls(codes, source="dataset coding")

    def code(self, value, where: str) -> int:
        key = _key(value)
        if key in self.codes:
            return self.codes[key]
        if self.unmapped == IGNORE_NAME:
            return IGNORE_INDEX
        raise ValueError(
            f"{where}: label value {value!r} is not in {self.source} (it maps "
            f"{sorted(self.codes)}). Add it to the mapping, or set `unmapped: ignore`."
        )

    def map_array(self, labels: np.ndarray, where: str, nodata: float | None = None) -> np.ndarray:
        """Map a label array to uint8 classes; ``nodata`` pixels are ignore unless mapped."""
        values, inverse = np.unique(labels, return_inverse=True)
        codes = np.empty(len(values), dtype=np.uint8)
        for index, value in enumerate(values):
            if nodata is not None and value == nodata and _key(value) not in self.codes:
                codes[index] = IGNORE_INDEX
            else:
                codes[index] = self.code(value.item(), where)
        return codes[inverse].reshape(labels.shape)


def labels_from_raster(
    path: str | os.PathLike, grid: Grid, mapping: ClassMapping, image_name: str
) -> np.ndarray:
    """Read a label raster on the image grid and map its coding to classes."""
    labels, nodata = read_raster_on_grid(path, grid, "label raster", image_name)
    return mapping.map_array(labels, f"label raster {path}", nodata=nodata)


def labels_from_vectors(
    path: str | os.PathLike,
    grid: Grid,
    mapping: ClassMapping,
    attribute: str = "class",
    layer: str | None = None,
) -> np.ndarray:
    """Rasterize labeled polygons onto ``grid`` (pixel centres); uncovered pixels are ignore.

    Where polygons overlap, the later feature in the file wins.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Label polygons {path} do not exist.")
    features = gpd.read_file(path, layer=layer)
    if attribute not in features.columns:
        raise ValueError(
            f"{path} has no attribute {attribute!r}; its attributes are "
            f"{[c for c in features.columns if c != 'geometry']}. Pass the class attribute name."
        )
    if features.crs is None:
        raise ValueError(f"{path} has no CRS; save it with one (GeoJSON is EPSG:4326 by spec).")
    features = features[features.geometry.notna() & ~features.geometry.is_empty]
    features = features.to_crs(grid.crs)
    shapes = [
        (geometry, mapping.code(value, f"{path} feature {index}"))
        for index, (geometry, value) in enumerate(
            zip(features.geometry, features[attribute], strict=True)
        )
    ]
    if not shapes:
        raise ValueError(f"{path} holds no polygons.")
    mask = rasterio.features.rasterize(
        shapes,
        out_shape=grid.shape,
        transform=grid.transform,
        fill=IGNORE_INDEX,
        dtype=np.uint8,
    )
    if (mask == IGNORE_INDEX).all() and any(code != IGNORE_INDEX for _, code in shapes):
        raise ValueError(
            f"None of the {len(shapes)} polygons in {path} cover a pixel centre of the image "
            f"grid ({grid.crs.to_string()}, bounds {tuple(round(b) for b in grid.bounds)}): "
            f"are they drawn on another scene?"
        )
    return mask


def is_vector(path: str | os.PathLike) -> bool:
    suffix = Path(path).suffix.lower()
    if suffix in VECTOR_SUFFIXES:
        return True
    if suffix in RASTER_SUFFIXES:
        return False
    raise ValueError(
        f"Cannot tell whether {path} is a raster ({RASTER_SUFFIXES}) or polygons "
        f"({VECTOR_SUFFIXES}) from its extension."
    )


def import_hand_labels(
    writer: DatasetWriter,
    image_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    mapping: ClassMapping,
    *,
    band_names: list[str] | None = None,
    attribute: str = "class",
    layer: str | None = None,
    scene_id: str | None = None,
    site: str = "",
    date: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Import one hand-labeled scene: an image (GeoTIFF or anything ``open_scene`` reads, at its
    finest grid) and its label raster or polygons on that grid. ``band_names`` names a GeoTIFF's
    bands in file order when its band descriptions do not."""
    image, _ = read_scene_image(image_path, band_names=band_names)
    if is_vector(labels_path):
        mask = labels_from_vectors(labels_path, image.grid, mapping, attribute, layer)
    else:
        mask = labels_from_raster(labels_path, image.grid, mapping, str(image_path))
    return write_scene(
        writer,
        image,
        mask,
        scene_id=scene_id or safe_scene_id(Path(image_path).stem),
        label_source="hand",
        site=site,
        date=date,
        curation=curation,
        default_status="accepted",
    )


def pair_by_stem(images: list[Path], labels: list[Path]) -> list[tuple[Path, Path]]:
    """Pair image and label files by file stem; any file without a partner is an error."""
    by_stem = {p.stem: p for p in labels}
    pairs, unpaired = [], []
    for image in sorted(images):
        label = by_stem.pop(image.stem, None)
        if label is None:
            unpaired.append(str(image))
        else:
            pairs.append((image, label))
    unpaired += [str(p) for p in by_stem.values()]
    if unpaired:
        raise ValueError(
            f"These files have no partner with the same name stem: {sorted(unpaired)}. Name each "
            f"label file like its image (scene1.tif <-> scene1.gpkg)."
        )
    return pairs
