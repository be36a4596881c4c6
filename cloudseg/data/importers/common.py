"""The step every importer ends with: decide curation, fill the row's metadata, write the scene."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cloudseg.data.importers.curation import CurationList, Decision
from cloudseg.data.importers.sources import SceneImage
from cloudseg.data.manifest import DatasetWriter, ManifestRow

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_scene_id(text: str) -> str:
    """A scene id usable as a file name: runs of other characters become ``_``."""
    scene_id = _UNSAFE_ID_CHARS.sub("_", str(text)).strip("_")
    if not scene_id:
        raise ValueError(f"Cannot make a scene id from {text!r}.")
    return scene_id


def product_scene_id(image: SceneImage) -> str:
    """``<tile>_<YYYYMMDD>`` for a product scene, else the source's name."""
    if image.tile and image.date:
        return safe_scene_id(f"{image.tile}_{image.date.replace('-', '')}")
    return safe_scene_id(Path(image.source).stem)


def write_scene(
    writer: DatasetWriter,
    image: SceneImage,
    mask: np.ndarray | None,
    *,
    scene_id: str,
    label_source: str,
    site: str = "",
    date: str = "",
    curation: CurationList | None = None,
    default_status: str = "accepted",
    split: str = "",
) -> ManifestRow:
    """Write one imported scene; the curation list (if any) overrides ``default_status``.

    ``site`` defaults to the image's tile id: whole sites go to one split, so a scene without
    either is an error rather than a silent leak between splits. Date, processing baseline and
    tile also go into the image's tags, where :func:`~cloudseg.sentinel2.reader.open_scene`
    finds them (the DN offset in particular).
    """
    site = site or image.tile
    if not site:
        raise ValueError(
            f"Scene {scene_id} ({image.source}): no site or tile id found in its tags or name; "
            f"pass one (--site) so that spatial splits can keep its neighbours together."
        )
    decision = (
        curation.decide(scene_id, default_status)
        if curation is not None
        else Decision(default_status, "")
    )
    date = date or image.date
    tags = {
        "SENSING_TIME": date,
        "PROCESSING_BASELINE": image.processing_baseline,
        "TILE_ID": image.tile,
    }
    return writer.add(
        scene_id,
        image.dn,
        mask,
        image.grid,
        image.bands,
        site=site,
        date=date,
        label_source=label_source,
        processing_baseline=image.processing_baseline,
        curation=decision.status,
        curation_reason=decision.reason,
        split=split if decision.status == "accepted" else "",
        tags={key: value for key, value in tags.items() if value},  # read back by open_scene
    )
