"""What goes into a stack (``stack:`` of conf/composite.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloudseg.sentinel2.sources import mgrs_tile
from cloudseg.sentinel2.stac_search import TILE_QUERY_FORMATS, StacSearch


@dataclass(frozen=True)
class StackSettings:
    """What goes into a stack. See the module docstring for ``source``.

    Attributes:
        source: folder, list of scenes, STAC file or STAC API URL.
        collection: STAC API collection to search (ignored for other sources).
        tile: keep only scenes of this MGRS tile (e.g. ``"29RKH"``).
        bbox: keep only scenes intersecting ``(west, south, east, north)`` in degrees.
        years: keep only scenes sensed in these years (``None``: all).
        months: keep only scenes sensed in these months, 1-12 (``None``: all).
        max_cloud_cover: keep only scenes whose metadata says at most this cloud cover (%);
            scenes whose metadata says nothing are kept (and counted).
        deduplicate: keep one scene per overpass (see :func:`deduplicate`).
        tile_property: the STAC API query property that holds the MGRS tile
            (``"grid:code"`` for Earth Search, ``"s2:mgrs_tile"`` for Planetary Computer,
            ``None``: filter by tile after the search only).
        query: extra STAC API query-extension filters, passed as they are.
        max_items: at most this many items from a STAC API search (``None``: all).
    """

    source: str | tuple[str, ...]
    collection: str | None = "sentinel-2-l2a"
    tile: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    years: tuple[int, ...] | None = None
    months: tuple[int, ...] | None = None
    max_cloud_cover: float | None = None
    deduplicate: bool = True
    tile_property: str | None = "grid:code"
    query: dict[str, Any] | None = None
    max_items: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.source, list | tuple):
            object.__setattr__(self, "source", tuple(str(s) for s in self.source))
            if not self.source:
                raise ValueError("stack.source is an empty list; name at least one scene.")
        elif not self.source:
            raise ValueError(
                "stack.source is not set: give a folder of scenes, a list of scenes, a STAC "
                "item/collection JSON or a STAC API URL (stack.source=...)."
            )
        if self.bbox is not None:
            bbox = tuple(float(v) for v in self.bbox)
            if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
                raise ValueError(
                    f"stack.bbox={list(self.bbox)} is not [west, south, east, north] in degrees "
                    "with west < east and south < north."
                )
            object.__setattr__(self, "bbox", bbox)
        if self.months is not None:
            months = tuple(int(m) for m in self.months)
            bad = [m for m in months if not 1 <= m <= 12]
            if bad or not months:
                raise ValueError(f"stack.months={list(self.months)}: months are 1-12.")
            object.__setattr__(self, "months", months)
        if self.years is not None:
            years = tuple(int(y) for y in self.years)
            if not years:
                raise ValueError("stack.years is an empty list; use null for all years.")
            object.__setattr__(self, "years", years)
        if self.tile is not None:
            object.__setattr__(self, "tile", mgrs_tile(str(self.tile)))
        if self.tile_property is not None and self.tile_property not in TILE_QUERY_FORMATS:
            raise ValueError(
                f"stack.tile_property={self.tile_property!r} is not known; use one of "
                f"{sorted(TILE_QUERY_FORMATS)} or null."
            )

    def stac_search(self) -> StacSearch:
        """The STAC API search of a ``source`` that is an API URL."""
        return StacSearch(
            url=str(self.source),
            collection=self.collection,
            bbox=self.bbox,
            years=self.years,
            max_cloud_cover=self.max_cloud_cover,
            tile=self.tile,
            tile_property=self.tile_property,
            query=self.query,
            max_items=self.max_items,
        )
