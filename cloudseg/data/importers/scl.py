"""Curated labels from the L2A scene classification layer (SCL).

SCL class -> dataset class: 3 cloud shadow -> ``cloud_shadow``; 8, 9 cloud medium/high
probability -> ``thick_cloud``; 10 thin cirrus -> ``thin_cloud``; 0 no data and 1 saturated or
defective -> ``ignore``; every other class (dark area, vegetation, bare, water, unclassified,
snow/ice) -> ``clear``. SCL is algorithmic: scenes enter training only when a curation list
accepts them (default status ``pending``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cloudseg.data.importers.common import product_scene_id, write_scene
from cloudseg.data.importers.curation import CurationList
from cloudseg.data.importers.sources import SceneImage, read_scene_image
from cloudseg.data.manifest import DatasetWriter, ManifestRow
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L2A_BANDS

#: Dataset class for each SCL value 0-11.
SCL_TO_CLASS: dict[int, int] = {
    0: IGNORE_INDEX,  # no data
    1: IGNORE_INDEX,  # saturated or defective
    2: CLEAR,  # dark area / topographic shadow
    3: CLOUD_SHADOW,
    4: CLEAR,  # vegetation
    5: CLEAR,  # not vegetated
    6: CLEAR,  # water
    7: CLEAR,  # unclassified
    8: THICK_CLOUD,  # cloud, medium probability
    9: THICK_CLOUD,  # cloud, high probability
    10: THIN_CLOUD,  # thin cirrus
    11: CLEAR,  # snow / ice
}
_LOOKUP = np.full(256, 255, dtype=np.uint8)
for _scl, _cls in SCL_TO_CLASS.items():
    _LOOKUP[_scl] = _cls


def scl_to_mask(scl: np.ndarray, where: str = "SCL") -> np.ndarray:
    """Map SCL values to dataset classes; a value outside 0-11 is an error naming it."""
    values = np.unique(scl)
    unknown = [int(v) for v in values if int(v) not in SCL_TO_CLASS]
    if unknown:
        raise ValueError(f"{where}: values {unknown} are not SCL classes (0-11).")
    return _LOOKUP[scl.astype(np.intp)]


def import_scl_scene(
    writer: DatasetWriter,
    image: SceneImage,
    scl: np.ndarray,
    *,
    scene_id: str,
    site: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Write an L2A scene with its SCL-derived mask; ``scl`` must be on the image grid."""
    if scl.shape != image.grid.shape:
        raise ValueError(
            f"Scene {scene_id}: SCL shape {scl.shape} differs from the image grid "
            f"{image.grid.shape}; read it onto the image grid (nearest neighbour)."
        )
    mask = scl_to_mask(scl, f"SCL of {scene_id}")
    mask[(image.dn == 0).all(axis=0)] = IGNORE_INDEX
    return write_scene(
        writer,
        image,
        mask,
        scene_id=scene_id,
        label_source="scl",
        site=site,
        curation=curation,
        default_status="pending",
    )


def import_scl_product(
    writer: DatasetWriter,
    source: str | os.PathLike,
    *,
    bands: Sequence[str] | str = L2A_BANDS,
    resolution: float | None = 20.0,
    scene_id: str | None = None,
    site: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Import an L2A product (SAFE, folder, STAC item) with its own SCL as the labels.

    Bands and SCL are read onto one grid at ``resolution`` metres (SCL by nearest neighbour).
    The scene id defaults to ``<tile>_<YYYYMMDD>``.
    """
    image, scene = read_scene_image(source, bands, resolution=resolution)
    if "SCL" not in scene.bands:
        raise ValueError(f"{source} has no SCL layer (it has {list(scene.bands)}); is it L2A?")
    scl = scene.read(["SCL"], grid=image.grid)[0]
    scene_id = scene_id or product_scene_id(image)
    return import_scl_scene(writer, image, scl, scene_id=scene_id, site=site, curation=curation)
