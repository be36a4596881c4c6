"""Assemble a stack of Sentinel-2 scenes: find them, read their metadata, filter, deduplicate.

Sources (:class:`StackSettings.source`):

- a folder of scenes: every raster file (``.tif``/``.tiff``/``.jp2``), STAC item ``.json`` and
  sub-folder (SAFE or folder of band files) in it is one scene; a folder that is itself a SAFE
  or a folder of band files is a one-scene stack; a simulated stack folder (``stack.json``,
  ``scenes/``, ``truth/``) is read from its ``scenes/``;
- a list of scenes (paths or URLs of anything :func:`cloudseg.sentinel2.reader.open_scene` reads);
- a static STAC file: an Item, an ItemCollection (FeatureCollection) or a Catalog/Collection
  (searched recursively), local or by URL;
- a STAC API (an ``http(s)`` URL that is not a ``.json`` file), searched with pystac-client by
  collection, bbox and the years' date span (plus the MGRS tile and max cloud cover where the API
  supports the query extension).

Every scene is opened through the reader, which also harmonises processing baselines: each scene
carries its DN ``offset`` (0 before baseline 04.00, -1000 from it), applied when pixels are read.
Scenes are then filtered (MGRS tile, bbox, years, months, max scene cloud cover) and deduplicated:
the same overpass (same local solar day, same tile, same spacecraft and relative orbit where known)
keeps only the scene with the least nodata. A scene that cannot be opened is skipped with a logged
warning and recorded in :attr:`Stack.skipped`; nothing is dropped without being counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac
from pystac_client import Client
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import parse_baseline
from cloudseg.sentinel2.reader import Scene, open_scene
from cloudseg.sentinel2.sources import (
    BAND_FILE_PATTERN,
    RASTER_SUFFIXES,
    SceneError,
    is_remote,
    mgrs_tile,
)
from cloudseg.sentinel2.stac import load_item

log = logging.getLogger(__name__)

#: Errors that make one scene unusable without saying anything about the others.
SCENE_ERRORS: tuple[type[Exception], ...] = (SceneError, RasterioError, OSError, ValueError)
#: Relative orbit in product names: ``S2A_MSIL2A_20200219T112111_N0214_R037_T29RKH_...``.
RELATIVE_ORBIT_PATTERN = re.compile(r"_R(\d{3})_")
#: STAC query properties that hold the MGRS tile, and how the tile is written in each.
TILE_QUERY_FORMATS: dict[str, str] = {"grid:code": "MGRS-{tile}", "s2:mgrs_tile": "{tile}"}
#: Longest side (pixels) of the coarse read that measures a scene's nodata share.
NODATA_PROBE_SIZE = 128
WGS84 = CRS.from_epsg(4326)


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


@dataclass(frozen=True)
class StackScene:
    """One scene of a stack: where it is, when and how it was acquired, and its native grid.

    Attributes:
        scene_id: unique within the stack, safe as a file name.
        source: what was opened (path, URL, or the STAC item's href or id), for messages.
        fingerprint: changes when the scene's files change (keys the mask cache).
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


# -- finding scenes ----------------------------------------------------------------------------

Candidate = str | pystac.Item


def list_candidates(settings: StackSettings) -> list[Candidate]:
    """Every scene the source names, before any reading: paths/URLs or STAC items."""
    source = settings.source
    if isinstance(source, tuple):
        return list(source)
    if source.lower().endswith(".json"):
        return stac_file_items(source)
    if is_remote(source):
        return search_stac_api(source, settings)
    path = Path(source)
    if path.is_dir():
        return folder_candidates(path)
    if path.is_file():
        return [str(path)]
    raise FileNotFoundError(
        f"stack.source={source} does not exist; give a folder of scenes, a list of scenes, a "
        "STAC item/collection JSON or a STAC API URL."
    )


def folder_candidates(folder: Path) -> list[str]:
    """The scenes of a folder, in name order (see the module docstring).

    A folder with a ``scenes/`` sub-folder and no rasters of its own (the layout
    ``cloudfree-simulate stack`` writes, next to ``stack.json`` and ``truth/``) stands for
    ``scenes/``.
    """
    if is_scene_folder(folder):
        return [str(folder)]
    if (folder / "scenes").is_dir() and not any(
        path.suffix.lower() in RASTER_SUFFIXES for path in folder.iterdir()
    ):
        folder = folder / "scenes"  # a stack folder as the simulator writes it
    candidates = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or path.suffix.lower() in {*RASTER_SUFFIXES, ".json"}:
            candidates.append(str(path))
    if not candidates:
        raise FileNotFoundError(
            f"{folder} holds no scenes (raster files {sorted(RASTER_SUFFIXES)}, STAC item .json "
            "files or SAFE/band folders)."
        )
    return candidates


def is_scene_folder(folder: Path) -> bool:
    """A SAFE product or a folder of per-band files (``B02.tif``, ``*_B02.jp2``...)."""
    if folder.suffix.upper() == ".SAFE" or (folder / "GRANULE").is_dir():
        return True
    band_files = [
        path
        for path in folder.iterdir()
        if path.suffix.lower() in RASTER_SUFFIXES and BAND_FILE_PATTERN.search(path.stem)
    ]
    return len(band_files) >= 2


def stac_file_items(href: str) -> list[pystac.Item]:
    """Items of a static STAC file: an Item, an ItemCollection, or a Catalog/Collection."""
    try:
        stac_object = pystac.read_file(href)
    except pystac.STACTypeError:
        stac_object = None
    except Exception as err:  # pystac raises IO, JSON and STAC errors of many kinds
        raise ValueError(f"Cannot read STAC file {href}: {err}") from err
    if stac_object is None:  # an ItemCollection is not a STACObject
        try:
            return list(pystac.ItemCollection.from_file(href))
        except Exception as err:
            raise ValueError(
                f"{href} is neither a STAC Item, ItemCollection, Catalog nor Collection: {err}"
            ) from err
    if isinstance(stac_object, pystac.Item):
        return [stac_object]
    if isinstance(stac_object, pystac.Catalog):
        items = list(stac_object.get_items(recursive=True))
        if not items:
            raise ValueError(f"STAC catalog {href} holds no items.")
        return items
    raise ValueError(f"{href} is a {type(stac_object).__name__}, not a STAC item or catalog.")


def stac_search_parameters(settings: StackSettings) -> dict[str, Any]:
    """Keyword arguments for ``pystac_client.Client.search`` from the stack settings."""
    parameters: dict[str, Any] = {}
    if settings.collection:
        parameters["collections"] = [settings.collection]
    if settings.bbox is not None:
        parameters["bbox"] = list(settings.bbox)
    if settings.years is not None:
        parameters["datetime"] = f"{min(settings.years)}-01-01/{max(settings.years)}-12-31"
    query: dict[str, Any] = dict(settings.query or {})
    if settings.max_cloud_cover is not None:
        query.setdefault("eo:cloud_cover", {"lte": settings.max_cloud_cover})
    if settings.tile is not None and settings.tile_property is not None:
        value = TILE_QUERY_FORMATS[settings.tile_property].format(tile=settings.tile)
        query.setdefault(settings.tile_property, {"eq": value})
    if query:
        parameters["query"] = query
    if settings.max_items is not None:
        parameters["max_items"] = settings.max_items
    if "bbox" not in parameters and "query" not in parameters:
        raise ValueError(
            "A STAC API search needs a place: set stack.bbox=[west,south,east,north] or "
            "stack.tile=<MGRS tile> (with stack.tile_property for the API)."
        )
    return parameters


def search_stac_api(url: str, settings: StackSettings) -> list[pystac.Item]:
    """Items of a STAC API search (pystac-client); months and exact filters apply afterwards."""
    parameters = stac_search_parameters(settings)
    log.info("Searching STAC API %s with %s", url, parameters)
    items = list(Client.open(url).search(**parameters).items())
    log.info("STAC API returned %d items", len(items))
    if not items:
        raise ValueError(
            f"The STAC API {url} found no items for {parameters}. Check stack.collection, "
            "stack.tile (and stack.tile_property for this API), stack.bbox, stack.years and "
            "stack.max_cloud_cover/query."
        )
    return items


# -- reading one scene -------------------------------------------------------------------------


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
        source = _source_text(candidate, item)
        return StackScene(
            scene_id=_scene_id(candidate, item),
            source=source,
            fingerprint=_fingerprint(source, [layer.path for layer in scene.layers.values()]),
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


def _source_text(candidate: Candidate, item: pystac.Item | None) -> str:
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


def _fingerprint(source: str, paths: Sequence[str]) -> str:
    """sha256 of the source and its files' paths, sizes and modification times."""
    digest = hashlib.sha256(source.encode())
    for path in sorted(set(paths)):
        digest.update(path.encode())
        if not is_remote(path) and os.path.exists(path):
            stat = os.stat(path)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


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


# -- filtering and deduplication ---------------------------------------------------------------


def filter_reasons(scene: StackScene, settings: StackSettings) -> str | None:
    """The first filter ``scene`` fails (``"tile"``, ``"bbox"``, ``"years"``, ``"months"``,
    ``"cloud_cover"``), or ``None`` if it passes them all."""
    if settings.tile is not None and scene.tile_id not in (None, settings.tile):
        return "tile"
    if settings.bbox is not None:
        west, south, east, north = scene.grid.bounds_in(WGS84)
        b_west, b_south, b_east, b_north = settings.bbox
        if not (west < b_east and b_west < east and south < b_north and b_south < north):
            return "bbox"
    if settings.years is not None and scene.datetime.year not in settings.years:
        return "years"
    if settings.months is not None and scene.datetime.month not in settings.months:
        return "months"
    if (
        settings.max_cloud_cover is not None
        and scene.cloud_cover is not None
        and scene.cloud_cover > settings.max_cloud_cover
    ):
        return "cloud_cover"
    return None


def overpass_key(scene: StackScene) -> tuple:
    """Scenes with equal keys are the same overpass: same solar day, tile, spacecraft, orbit."""
    return (scene.solar_date, scene.tile_id, scene.spacecraft, scene.relative_orbit)


def nodata_fraction(scene: StackScene) -> float:
    """Share of the scene's grid without data in its first spectral band (a coarse read)."""
    band = scene.spectral_bands[0] if scene.spectral_bands else scene.bands[0]
    factor = max(1, math.ceil(max(scene.grid.shape) / NODATA_PROBE_SIZE))
    with scene.open() as opened:
        probe = opened.read([band], grid=scene.grid.with_resolution(scene.grid.resolution * factor))
    return float((probe == 0).mean())


def deduplicate(scenes: list[StackScene]) -> tuple[list[StackScene], list[tuple[str, str]]]:
    """Keep one scene per :func:`overpass_key`: the one with the least nodata (then the newest
    processing baseline, then the first listed). Returns ``(kept, [(dropped, kept), ...])``."""
    groups: dict[tuple, list[StackScene]] = {}
    for scene in scenes:
        groups.setdefault(overpass_key(scene), []).append(scene)
    kept: list[StackScene] = []
    dropped: list[tuple[str, str]] = []
    for group in groups.values():
        if len(group) == 1:
            kept.append(group[0])
            continue
        ranked = sorted(
            enumerate(group),
            key=lambda pair: (
                nodata_fraction(pair[1]),
                _baseline_rank(pair[1].processing_baseline),
                pair[0],
            ),
        )
        best = ranked[0][1]
        kept.append(best)
        for _, scene in ranked[1:]:
            dropped.append((scene.scene_id, best.scene_id))
            log.info(
                "Scene %s is the same overpass as %s (%s); keeping %s, which has less nodata.",
                scene.scene_id, best.scene_id, scene.solar_date, best.scene_id,
            )  # fmt: skip
    return kept, dropped


def _baseline_rank(baseline: str | None) -> float:
    """Sort key that puts newer processing baselines first."""
    try:
        value = parse_baseline(baseline)
    except ValueError:
        value = None
    return -(value or 0.0)


def unique_ids(scenes: list[StackScene]) -> list[StackScene]:
    """Suffix repeated scene ids with ``-2``, ``-3``... (in stack order)."""
    counts = Counter(scene.scene_id for scene in scenes)
    seen: Counter[str] = Counter()
    out = []
    for scene in scenes:
        if counts[scene.scene_id] > 1:
            seen[scene.scene_id] += 1
            if seen[scene.scene_id] > 1:
                scene = dataclasses.replace(
                    scene, scene_id=f"{scene.scene_id}-{seen[scene.scene_id]}"
                )
        out.append(scene)
    return out


# -- the whole assembly ------------------------------------------------------------------------


def build_stack(settings: StackSettings, *, progress: bool = True) -> Stack:
    """Find, open, filter and deduplicate the scenes of ``settings``; see the module docstring."""
    candidates = list_candidates(settings)
    scenes: list[StackScene] = []
    skipped: list[SkippedScene] = []
    for candidate in tqdm(candidates, desc="open scenes", unit="scene", disable=not progress):
        try:
            scenes.append(describe_candidate(candidate))
        except SCENE_ERRORS as err:
            source = _source_text(candidate, None)
            log.warning("Skipping unreadable scene %s: %s", source, err)
            skipped.append(SkippedScene(source, str(err)))
    filtered: Counter[str] = Counter()
    passed = []
    for scene in scenes:
        reason = filter_reasons(scene, settings)
        if reason is None:
            passed.append(scene)
        else:
            filtered[reason] += 1
    unknown_cover = sum(scene.cloud_cover is None for scene in passed)
    if settings.max_cloud_cover is not None and unknown_cover:
        log.info(
            "%d scenes carry no cloud cover in their metadata; max_cloud_cover=%g kept them.",
            unknown_cover, settings.max_cloud_cover,
        )  # fmt: skip
    duplicates: list[tuple[str, str]] = []
    if settings.deduplicate:
        try:
            passed, duplicates = deduplicate(passed)
        except SCENE_ERRORS as err:
            raise SceneError(f"Could not compare duplicate overpasses: {err}") from err
    passed = unique_ids(sorted(passed, key=lambda scene: (scene.datetime, scene.source)))
    stack = Stack(passed, skipped, duplicates, dict(filtered))
    if skipped:
        log.warning(
            "%d of %d scenes were unreadable and skipped (listed in the run JSON).",
            len(skipped), len(candidates),
        )  # fmt: skip
    log.info(
        "Stack: %d scenes (%d unreadable, %d duplicate overpasses, filtered out: %s).",
        len(stack), len(skipped), len(duplicates), dict(filtered) or "none",
    )  # fmt: skip
    if not stack.scenes:
        raise ValueError(
            f"No scenes left in the stack from {settings.source}: {len(candidates)} found, "
            f"{len(skipped)} unreadable, filtered out {dict(filtered)}, {len(duplicates)} "
            "duplicates. Loosen stack.years/months/tile/bbox/max_cloud_cover or check the source."
        )
    return stack
