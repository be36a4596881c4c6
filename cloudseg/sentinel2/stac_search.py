"""Searching a STAC API for Sentinel-2 items (pystac-client): by collection, bbox, the years' date
span, and, through the query extension, MGRS tile and max cloud cover.

:class:`StacSearch` holds one search; the filters an API cannot apply (months, exact tile or
bbox) are applied by the caller to the items it returns. Names mirror the ``stack.*`` keys of
``conf/composite.yaml``, which says what they default to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pystac
from pystac_client import Client

log = logging.getLogger(__name__)

#: STAC query properties that hold the MGRS tile, and how the tile is written in each.
TILE_QUERY_FORMATS: dict[str, str] = {"grid:code": "MGRS-{tile}", "s2:mgrs_tile": "{tile}"}


@dataclass(frozen=True)
class StacSearch:
    """One STAC API search.

    Attributes:
        url: the API's root URL.
        collection: the collection to search (``None``: every collection).
        bbox: ``(west, south, east, north)`` in degrees.
        years: the search spans 1 January of the first to 31 December of the last.
        max_cloud_cover: at most this ``eo:cloud_cover`` (%).
        tile: MGRS tile (e.g. ``"29RKH"``), queried through ``tile_property``.
        tile_property: the query property holding the tile (a key of :data:`TILE_QUERY_FORMATS`;
            ``None``: the tile is not part of the query).
        query: extra query-extension filters, passed as they are.
        max_items: at most this many items (``None``: all).
    """

    url: str
    collection: str | None
    bbox: tuple[float, float, float, float] | None
    years: tuple[int, ...] | None
    max_cloud_cover: float | None
    tile: str | None
    tile_property: str | None
    query: dict[str, Any] | None
    max_items: int | None

    def parameters(self) -> dict[str, Any]:
        """Keyword arguments for ``pystac_client.Client.search``."""
        parameters: dict[str, Any] = {}
        if self.collection:
            parameters["collections"] = [self.collection]
        if self.bbox is not None:
            parameters["bbox"] = list(self.bbox)
        if self.years is not None:
            parameters["datetime"] = f"{min(self.years)}-01-01/{max(self.years)}-12-31"
        query: dict[str, Any] = dict(self.query or {})
        if self.max_cloud_cover is not None:
            query.setdefault("eo:cloud_cover", {"lte": self.max_cloud_cover})
        if self.tile is not None and self.tile_property is not None:
            value = TILE_QUERY_FORMATS[self.tile_property].format(tile=self.tile)
            query.setdefault(self.tile_property, {"eq": value})
        if query:
            parameters["query"] = query
        if self.max_items is not None:
            parameters["max_items"] = self.max_items
        if "bbox" not in parameters and "query" not in parameters:
            raise ValueError(
                "A STAC API search needs a place: set stack.bbox=[west,south,east,north] or "
                "stack.tile=<MGRS tile> (with stack.tile_property for the API)."
            )
        return parameters

    def items(self) -> list[pystac.Item]:
        """The items the API finds; an empty answer is an error naming the API and filters."""
        parameters = self.parameters()
        log.info("Searching STAC API %s with %s", self.url, parameters)
        items = list(Client.open(self.url).search(**parameters).items())
        log.info("STAC API returned %d items", len(items))
        if not items:
            raise ValueError(
                f"The STAC API {self.url} found no items for {parameters}. Check stack.collection, "
                "stack.tile (and stack.tile_property for this API), stack.bbox, stack.years and "
                "stack.max_cloud_cover/query."
            )
        return items
