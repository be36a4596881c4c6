"""Sentinel-2 STAC items as scene sources: match assets to bands, read metadata and the DN offset.

pystac resolves the item and its asset hrefs (relative hrefs against the item's JSON); remote
hrefs pass through unchanged and rasterio reads them through GDAL (``/vsicurl``, ``/vsis3``).
Assets are matched to bands by key or ``eo:bands`` name (Earth Search's ``blue``, ``nir08``,
``scl``; Planetary Computer's ``B02``, ``SCL``), preferring a COG where a band has several assets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pystac
from affine import Affine
from rasterio.crs import CRS

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS, canonical_band_name
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import offset_from_metadata
from cloudseg.sentinel2.sources import (
    LAYER_ORDER,
    LayerSource,
    SceneDescription,
    SceneError,
    mgrs_tile,
)

#: STAC ``eo:bands`` names / common names (and Earth Search asset keys) -> canonical layer names.
#: ``rededge`` is not listed: it is the common name of three bands (B05, B06, B07).
STAC_BAND_NAMES: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
    **{name.lower(): name for name in AUXILIARY_LAYERS},
}


def load_item(source: str | os.PathLike | pystac.Item) -> pystac.Item:
    """A pystac Item from an Item, a local JSON path or a URL; a clear error if it is not one."""
    if isinstance(source, pystac.Item):
        return source
    href = os.fspath(source)
    try:
        return pystac.Item.from_file(href)
    except Exception as err:  # pystac raises many kinds (IO, JSON, STACTypeError)
        raise SceneError(f"Cannot read a STAC item from {href}: {err}") from err


def describe_item(item: pystac.Item) -> SceneDescription:
    """Layers, metadata and DN offset of a Sentinel-2 STAC item."""
    source = item.get_self_href() or item.id
    candidates: dict[str, list[tuple[int, str, pystac.Asset]]] = {}
    for key, asset in item.assets.items():
        name = asset_layer_name(key, asset)
        if name is not None:
            candidates.setdefault(name, []).append((_format_rank(asset), key, asset))
    if not candidates:
        raise SceneError(
            f"STAC item {source} has no Sentinel-2 band assets (assets: {sorted(item.assets)}); "
            "expected keys or eo:bands names such as B02/blue, B8A/nir08, SCL/scl."
        )
    layers: dict[str, LayerSource] = {}
    chosen_assets: dict[str, pystac.Asset] = {}
    for name in (name for name in LAYER_ORDER if name in candidates):
        ranked = sorted(candidates[name], key=lambda candidate: -candidate[0])
        if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
            keys = [key for _, key, _ in ranked]
            raise SceneError(
                f"STAC item {source}: assets {keys} all hold band {name} in the same format; "
                "drop all but one from the item."
            )
        _, _, asset = ranked[0]
        chosen_assets[name] = asset
        href = asset.get_absolute_href() or asset.href
        layers[name] = LayerSource(name, href, band_index=1, grid=_asset_grid(item, asset))
    return SceneDescription(source, layers, item_metadata(item), item_offset(item, chosen_assets))


def asset_layer_name(key: str, asset: pystac.Asset) -> str | None:
    """The canonical layer an asset holds, or ``None`` (multi-band, thumbnails, metadata)."""
    bands = _asset_bands(asset)
    if len(bands) > 1:
        return None
    names = [key]
    if bands:
        names += [bands[0].get("name"), bands[0].get("common_name"), bands[0].get("eo:common_name")]
    for candidate in (str(name) for name in names if name):
        if candidate.lower() in STAC_BAND_NAMES:
            return STAC_BAND_NAMES[candidate.lower()]
        try:
            return canonical_band_name(candidate)
        except ValueError:
            continue
    return None


def _asset_bands(asset: pystac.Asset) -> list[dict[str, Any]]:
    """``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1) of an asset."""
    return list(asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or [])


def _format_rank(asset: pystac.Asset) -> int:
    """Prefer cloud-optimized GeoTIFF, then other GeoTIFF, then anything else (e.g. JP2)."""
    media_type = (asset.media_type or "").lower()
    if "cloud-optimized" in media_type:
        return 2
    return 1 if "tiff" in media_type else 0


def _asset_grid(item: pystac.Item, asset: pystac.Asset) -> Grid | None:
    """The grid declared by ``proj:shape``/``proj:transform`` and the CRS, if all are there."""
    fields = {**item.properties, **asset.extra_fields}
    shape, transform = fields.get("proj:shape"), fields.get("proj:transform")
    crs = _declared_crs(fields)
    if shape is None or transform is None or crs is None:
        return None
    return Grid(crs, Affine(*transform[:6]), int(shape[0]), int(shape[1]))


def _declared_crs(fields: Mapping[str, Any]) -> CRS | None:
    if fields.get("proj:code"):
        return CRS.from_user_input(fields["proj:code"])
    if fields.get("proj:epsg"):
        return CRS.from_epsg(int(fields["proj:epsg"]))
    if fields.get("proj:wkt2"):
        return CRS.from_wkt(fields["proj:wkt2"])
    return None


def item_metadata(item: pystac.Item) -> dict[str, Any]:
    """Date, tile, processing baseline, sun angles, spacecraft and product type of an item."""
    properties = item.properties
    metadata: dict[str, Any] = {}
    if item.datetime is not None:
        metadata["datetime"] = item.datetime
        metadata["date"] = item.datetime.date()
    tile = _item_tile(properties)
    fields = {
        "tile_id": tile,
        "processing_baseline": properties.get("s2:processing_baseline"),
        "sun_azimuth": properties.get("view:sun_azimuth"),
        "sun_elevation": properties.get("view:sun_elevation"),
        "spacecraft": properties.get("platform"),
        "product_type": properties.get("s2:product_type"),
    }
    metadata.update({key: value for key, value in fields.items() if value is not None})
    return metadata


def _item_tile(properties: Mapping[str, Any]) -> str | None:
    """MGRS tile from ``s2:mgrs_tile``, ``grid:code`` or the ``mgrs:*`` fields."""
    for key in ("s2:mgrs_tile", "grid:code", "s2:tile_id"):
        if properties.get(key):
            return mgrs_tile(str(properties[key]))
    parts = [properties.get(f"mgrs:{key}") for key in ("utm_zone", "latitude_band", "grid_square")]
    if all(part is not None for part in parts):
        return f"{int(parts[0]):02d}{parts[1]}{parts[2]}"
    return None


def item_offset(item: pystac.Item, assets: Mapping[str, pystac.Asset]) -> float | None:
    """The DN offset of an item's band assets, ``None`` when the item says nothing.

    In order: Earth Search's ``earthsearch:boa_offset_applied: true`` (DN already harmonised, 0);
    ``raster:bands`` offset/scale of the spectral assets (offset -0.1 at scale 1e-4 is -1000 DN);
    ``s2:processing_baseline`` (-1000 from 04.00).
    """
    if item.properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0
    dn_offsets = set()
    for name, asset in assets.items():
        raster = (asset.extra_fields.get("raster:bands") or [{}])[0]
        if name not in AUXILIARY_LAYERS and "offset" in raster and raster.get("scale"):
            dn_offsets.add(round(float(raster["offset"]) / float(raster["scale"]), 6))
    if len(dn_offsets) > 1:
        raise SceneError(
            f"STAC item {item.get_self_href() or item.id}: band assets declare different "
            f"offsets {sorted(dn_offsets)} (DN); pass offset= explicitly."
        )
    if dn_offsets:
        return dn_offsets.pop()
    return offset_from_metadata(item.properties)
