"""The stack and its scenes: what each scene is, and an account of everything left out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pystac
from rasterio.crs import CRS

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import Scene, open_scene

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class StackScene:
    """One scene of a stack: where it is, when and how it was acquired, and its native grid.

    Attributes:
        scene_id: unique within the stack, safe as a file name.
        source: what was opened (path, URL, or the STAC item's href or id), for messages.
        fingerprint: changes when the content of its files changes (keys the mask cache and
            the run key; :mod:`composite.stack.fingerprint`).
        datetime: sensing time, UTC.
        solar_date: local solar date at the scene centre (one solar day = one overpass).
        offset: DN offset of its processing baseline (reflectance = (DN + offset) / 10000).
        grid: native grid of its finest layer.
        bands: the layers it has (spectral bands, then SCL/AOT/WVP).
        item_json: the STAC item (absolute hrefs) for scenes that came from STAC.
    """

    scene_id: str
    source: str
    fingerprint: str
    datetime: dt.datetime
    solar_date: dt.date
    offset: float
    grid: Grid
    bands: tuple[str, ...]
    tile_id: str | None = None
    spacecraft: str | None = None
    relative_orbit: int | None = None
    processing_baseline: str | None = None
    cloud_cover: float | None = None
    item_json: str | None = None

    def open(self) -> Scene:
        """The scene, ready to read (its offset fixed to the one recorded here)."""
        if self.item_json is not None:
            return open_scene(pystac.Item.from_dict(json.loads(self.item_json)), offset=self.offset)
        return open_scene(self.source, offset=self.offset)

    @property
    def spectral_bands(self) -> tuple[str, ...]:
        return tuple(band for band in self.bands if band not in AUXILIARY_LAYERS)

    def record(self) -> dict[str, Any]:
        """JSON-ready description (for the run JSON)."""
        return {
            "scene_id": self.scene_id,
            "source": self.source,
            "datetime": self.datetime.isoformat(),
            "solar_date": self.solar_date.isoformat(),
            "tile_id": self.tile_id,
            "spacecraft": self.spacecraft,
            "relative_orbit": self.relative_orbit,
            "processing_baseline": self.processing_baseline,
            "offset": self.offset,
            "cloud_cover": self.cloud_cover,
            "bands": list(self.bands),
        }


@dataclass(frozen=True)
class SkippedScene:
    """A scene left out of the stack, and why."""

    source: str
    reason: str


@dataclass
class Stack:
    """The scenes to composite, sorted by sensing time, and an account of everything left out.

    ``skipped``: unreadable scenes; ``duplicates``: ``(dropped, kept)`` scene ids of the same
    overpass; ``filtered``: how many scenes each filter removed.
    """

    scenes: list[StackScene]
    skipped: list[SkippedScene] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scenes)

    def without(self, scene_ids: Iterable[str], reason: str) -> Stack:
        """The same stack with ``scene_ids`` moved to ``skipped`` (with ``reason``)."""
        drop = set(scene_ids)
        kept = [scene for scene in self.scenes if scene.scene_id not in drop]
        dropped = [
            SkippedScene(scene.source, reason) for scene in self.scenes if scene.scene_id in drop
        ]
        return dataclasses.replace(self, scenes=kept, skipped=[*self.skipped, *dropped])

    def summary(self) -> dict[str, Any]:
        """JSON-ready account of the stack (for the run JSON)."""
        return {
            "scenes": len(self.scenes),
            "dates": [scene.datetime.date().isoformat() for scene in self.scenes],
            "skipped": len(self.skipped),
            "skipped_scenes": [dataclasses.asdict(skipped) for skipped in self.skipped],
            "duplicates_dropped": [
                {"dropped": dropped, "kept": kept} for dropped, kept in self.duplicates
            ],
            "filtered": dict(self.filtered),
        }
