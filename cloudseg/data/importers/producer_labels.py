"""Curated labels from a mask producer of the registry (``ukis``, ``ocm``, ...), run on the scene.

The producer (:mod:`cloudseg.inference.producers`) makes its mask on the scene's own grid; the
mask is brought onto the image grid (``resolution``) by nearest neighbour and written with the
image, ``label_source`` set to the producer's name. Detector output is algorithmic: scenes enter
training only when a curation list accepts them (default status ``pending``). A scene lacking the
bands the producer needs is an error naming the bands, before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cloudseg.data.importers.common import product_scene_id, write_scene
from cloudseg.data.importers.curation import CurationList
from cloudseg.data.importers.sources import read_scene_image
from cloudseg.data.manifest import DatasetWriter, ManifestRow
from cloudseg.labels import IGNORE_INDEX
from cloudseg.sentinel2.grid import reproject_nearest


def import_producer_labels(
    writer: DatasetWriter,
    source: str | os.PathLike,
    producer,
    *,
    bands: Sequence[str] | str | None = None,
    resolution: float | None = 20.0,
    scene_id: str | None = None,
    site: str = "",
    curation: CurationList | None = None,
) -> ManifestRow:
    """Import ``source`` (SAFE, band folder, GeoTIFF, STAC item) with ``producer``'s mask.

    ``bands`` default to every spectral band of the scene; the scene id to ``<tile>_<YYYYMMDD>``
    (else the source's name).
    """
    image, scene = read_scene_image(source, bands, resolution=resolution)
    with scene:
        lacking = producer.missing(scene.bands)
        if lacking:
            raise ValueError(
                f"{source}: the {producer.name} mask producer needs bands {lacking}, which this "
                f"scene lacks (it has {list(scene.bands)}); import it with another label source."
            )
        mask = producer.predict(scene)
        if scene.grid() != image.grid:
            mask = reproject_nearest(mask, scene.grid(), image.grid, nodata=IGNORE_INDEX)
    mask[(image.dn == 0).all(axis=0)] = IGNORE_INDEX
    return write_scene(
        writer,
        image,
        mask,
        scene_id=scene_id or product_scene_id(image),
        label_source=producer.name,
        site=site,
        curation=curation,
        default_status="pending",
    )
