"""Reading one scene's metadata through the reader: sensing time, local solar day, tile,
spacecraft, orbit, processing baseline, cloud cover, and a fingerprint of its files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pystac

from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import open_scene
from cloudseg.sentinel2.sources import SceneError
from cloudseg.sentinel2.stac import load_item
from composite.stack.discovery import Candidate
from composite.stack.fingerprint import asset_checksums, scene_fingerprint
from composite.stack.scenes import WGS84, StackScene

#: Relative orbit in product names: ``S2A_MSIL2A_20200219T112111_N0214_R037_T29RKH_...``.
RELATIVE_ORBIT_PATTERN = re.compile(r"_R(\d{3})_")


def describe_candidate(candidate: Candidate) -> StackScene:
    """Open one candidate through the reader and record what the stack needs to know."""
    item = candidate if isinstance(candidate, pystac.Item) else None
    if item is None and str(candidate).lower().endswith(".json"):
        item = load_item(str(candidate))
    if item is not None:
        item = item.clone()
        item.make_asset_hrefs_absolute()
    scene = open_scene(item if item is not None else candidate)
    try:
        grid = scene.grid()
        metadata = scene.metadata
        if "datetime" not in metadata:
            raise SceneError(
                f"{scene.source} has no sensing time (no SENSING_TIME tag, product metadata or "
                "STAC datetime); a stack needs the date of every scene."
            )
        sensing_time = metadata["datetime"]
        properties = item.properties if item is not None else {}
        source = source_text(candidate, item)
        return StackScene(
            scene_id=_scene_id(candidate, item),
            source=source,
            fingerprint=scene_fingerprint(
                {name: layer.path for name, layer in scene.layers.items()}, asset_checksums(item)
            ),
            datetime=sensing_time,
            solar_date=solar_date(sensing_time, center_longitude(grid)),
            offset=scene.offset,
            grid=grid,
            bands=scene.bands,
            tile_id=metadata.get("tile_id"),
            spacecraft=_spacecraft(metadata.get("spacecraft")),
            relative_orbit=_relative_orbit(properties, source),
            processing_baseline=(
                None
                if metadata.get("processing_baseline") is None
                else str(metadata["processing_baseline"])
            ),
            cloud_cover=_float_or_none(properties.get("eo:cloud_cover")),
            item_json=json.dumps(item.to_dict(include_self_link=False)) if item else None,
        )
    finally:
        scene.close()


def center_longitude(grid: Grid) -> float:
    """Longitude (degrees) of the centre of ``grid``."""
    west, _, east, _ = grid.bounds_in(WGS84)
    return (west + east) / 2.0


def solar_date(sensing_time: dt.datetime, longitude: float) -> dt.date:
    """The local (mean) solar date of a UTC sensing time at ``longitude``: UTC + longitude/15 h."""
    return (sensing_time + dt.timedelta(hours=longitude / 15.0)).date()


def source_text(candidate: Candidate, item: pystac.Item | None) -> str:
    if isinstance(candidate, pystac.Item):
        return candidate.get_self_href() or candidate.id
    return str(candidate)


def _scene_id(candidate: Candidate, item: pystac.Item | None) -> str:
    if item is not None:
        name = item.id
    else:
        path = Path(str(candidate).rstrip("/"))
        name = path.name if Path(str(candidate)).is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scene"


def _spacecraft(value: Any) -> str | None:
    """``sentinel-2a``/``Sentinel-2A``/``S2A`` -> ``Sentinel-2A``."""
    if value is None:
        return None
    match = re.search(r"2([A-Da-d])\b", str(value))
    return f"Sentinel-2{match.group(1).upper()}" if match else str(value)


def _relative_orbit(properties: dict[str, Any], source: str) -> int | None:
    if properties.get("sat:relative_orbit") is not None:
        return int(properties["sat:relative_orbit"])
    for text in (properties.get("s2:product_uri"), source):
        if text and (match := RELATIVE_ORBIT_PATTERN.search(str(text))):
            return int(match.group(1))
    return None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
