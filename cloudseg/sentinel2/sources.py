"""Where a scene's layers live: find the band files of a multi-band GeoTIFF, a folder or a SAFE.

Each ``describe_*`` function looks at a source without reading pixels and returns a
:class:`SceneDescription`: one :class:`LayerSource` per canonical layer name, the metadata it
found (date, tile, processing baseline, sun angles) and the DN offset the metadata implies.
:mod:`cloudseg.sentinel2.stac` does the same for STAC items; :mod:`cloudseg.sentinel2.reader`
turns a description into a readable scene.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from cloudseg.sentinel2.bands import (
    AUXILIARY_LAYERS,
    L1C_BANDS,
    canonical_band_name,
    resolution_of,
)
from cloudseg.sentinel2.errors import SceneError
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import offset_for_baseline, offset_from_metadata

#: Every layer name a scene can offer, in the order ``Scene.bands`` lists them.
LAYER_ORDER: tuple[str, ...] = (*L1C_BANDS, *AUXILIARY_LAYERS)
RASTER_SUFFIXES: frozenset[str] = frozenset({".jp2", ".tif", ".tiff"})
#: ``B02``, ``T31TDH_20150726T105026_B02``, ``T31TDH_20220301T103021_B02_10m``, ``SCL_20m``...
BAND_FILE_PATTERN = re.compile(r"(?:^|_)(B\d{1,2}A?|SCL|AOT|WVP)(?:_(\d+)m)?$", re.IGNORECASE)
#: MGRS tile in names such as ``T31TDH``, ``MGRS-29RKH`` or ``..._T37LDL_N02.06``.
MGRS_TILE_PATTERN = re.compile(r"(?:^|[_\-])T?(\d{2}[C-X][A-Z]{2})(?=$|[_\-.])")
#: Sensing time in band file names: ``T31TDH_20150726T105026_B02``.
FILE_DATETIME_PATTERN = re.compile(r"_(\d{8}T\d{6})_")
#: Product metadata of a SAFE (current format since 2016).
PRODUCT_METADATA_NAMES: tuple[str, ...] = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
#: Resolution subfolders of an L2A ``IMG_DATA`` folder.
RESOLUTION_FOLDERS: tuple[str, ...] = ("R10m", "R20m", "R60m")


@dataclass(frozen=True)
class LayerSource:
    """One readable layer: its canonical ``name``, the raster holding it and the 1-based band.

    ``path`` is anything rasterio opens (a local path or a URL, which GDAL reads through
    ``/vsicurl``). ``grid`` is the layer's grid when the source declares it (STAC ``proj:*``,
    an already-inspected GeoTIFF), so the scene grid is known without opening remote files.
    """

    name: str
    path: str
    band_index: int = 1
    grid: Grid | None = None


@dataclass
class SceneDescription:
    """What a source holds, found without reading pixels.

    ``offset`` is the DN offset the source's own metadata implies, ``None`` when it says nothing.
    """

    source: str
    layers: dict[str, LayerSource]
    metadata: dict[str, Any] = field(default_factory=dict)
    offset: float | None = None


def describe_raster(
    path: str, band_names: list[str] | tuple[str, ...] | None = None
) -> SceneDescription:
    """A single raster file (usually a multi-band GeoTIFF as ``write_cog`` writes it).

    Band names come from ``band_names`` if given, else the band descriptions, else (for a
    single-band file) the file name (``B02.tif``, ``T31TDH_20150726T105026_B02.jp2``). Dataset tags
    ``SENSING_TIME``, ``PROCESSING_BASELINE``, ``TILE_ID``, ``SPACECRAFT``, ``SUN_AZIMUTH`` and
    ``SUN_ELEVATION`` (and ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET``) become metadata.
    """
    try:
        with rasterio.open(path) as dataset:
            grid = Grid.from_dataset(dataset)
            count = dataset.count
            descriptions = dataset.descriptions
            tags = dataset.tags()
    except RasterioError as err:
        raise SceneError(f"Cannot open raster {path}: {err}") from err
    names = _raster_band_names(path, count, descriptions, band_names)
    layers = {
        name: LayerSource(name, path, band_index=index, grid=grid)
        for index, name in enumerate(names, start=1)
    }
    metadata = {**metadata_from_file_name(Path(path).stem), **metadata_from_tags(tags)}
    return SceneDescription(
        str(path), _in_layer_order(layers), metadata, offset_from_metadata(tags)
    )


def _raster_band_names(
    path: str,
    count: int,
    descriptions: tuple[str | None, ...],
    band_names: list[str] | tuple[str, ...] | None,
) -> list[str]:
    """Canonical names of a raster's bands, from ``band_names``, descriptions or the file name."""
    if band_names is not None:
        if len(band_names) != count:
            raise SceneError(
                f"{path} has {count} bands but band_names lists {len(band_names)}: "
                f"{list(band_names)}; give one name per band, in file order."
            )
        names = [_canonical_or_error(name, f"band_names for {path}") for name in band_names]
    elif all(descriptions):
        names = [
            _canonical_or_error(name, f"the description of band {index} of {path}")
            for index, name in enumerate(descriptions, start=1)
        ]
    elif count == 1 and (match := BAND_FILE_PATTERN.search(Path(path).stem)):
        names = [_canonical_or_error(match.group(1), f"the file name {path}")]
    else:
        unnamed = [index for index, name in enumerate(descriptions, start=1) if not name]
        raise SceneError(
            f"{path}: bands {unnamed} have no description, so their Sentinel-2 names are unknown; "
            "pass band_names=[...] in file order (e.g. ['B02', 'B03', 'B04', 'B08'])."
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SceneError(f"{path}: bands {duplicated} appear more than once in {names}.")
    return names


def _canonical_or_error(name: str, where: str) -> str:
    try:
        return canonical_band_name(name)
    except ValueError as err:
        raise SceneError(f"{where}: {err}") from err


def describe_folder(folder: Path) -> SceneDescription:
    """A folder of per-band files, a SAFE product, one of its granules or an ``IMG_DATA`` folder.

    Files are matched by name (``*_B02.jp2``, ``B02.tif``, ``*_B02_10m.jp2``; also SCL, AOT and
    WVP); in a SAFE only ``GRANULE/*/IMG_DATA`` and its ``R10m``/``R20m``/``R60m`` folders are
    searched, and where a band exists at several resolutions its native one is preferred. SAFE
    metadata (``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``, ``MTD_TL.xml``) is read when present.
    """
    folder = Path(folder)
    image_folder = _image_folder(folder)
    candidates: dict[str, list[tuple[int | None, Path]]] = {}
    for subfolder in [image_folder, *(image_folder / name for name in RESOLUTION_FOLDERS)]:
        for path in sorted(subfolder.glob("*")) if subfolder.is_dir() else []:
            match = BAND_FILE_PATTERN.search(path.stem)
            if path.suffix.lower() not in RASTER_SUFFIXES or not match:
                continue
            try:
                name = canonical_band_name(match.group(1))
            except ValueError:
                continue  # e.g. a B00 mask: not a band
            resolution = int(match.group(2)) if match.group(2) else None
            candidates.setdefault(name, []).append((resolution, path))
    if not candidates:
        raise SceneError(
            f"No Sentinel-2 band files found in {image_folder}: expected names such as B02.tif, "
            "*_B02.jp2 or *_B02_10m.jp2 (a SAFE's GRANULE/*/IMG_DATA is searched automatically)."
        )
    layers = {
        name: LayerSource(name, str(_preferred_file(name, files)))
        for name, files in candidates.items()
    }
    first_file = next(iter(_in_layer_order(layers).values())).path
    metadata = metadata_from_file_name(Path(first_file).stem)
    safe_metadata, offset = read_safe_metadata(folder)
    metadata.update(safe_metadata)
    return SceneDescription(str(folder), _in_layer_order(layers), metadata, offset)


def _image_folder(folder: Path) -> Path:
    """The folder holding band files: a SAFE's single granule ``IMG_DATA``, or ``folder`` itself."""
    granules = sorted(folder.glob("GRANULE/*/IMG_DATA"))
    if len(granules) > 1:
        names = [path.parent.name for path in granules]
        raise SceneError(
            f"{folder} holds {len(granules)} granules {names}; open one of them "
            f"(e.g. {granules[0].parent}) so that a scene is one tile."
        )
    if granules:
        return granules[0]
    if (folder / "IMG_DATA").is_dir():
        return folder / "IMG_DATA"
    return folder


def _preferred_file(name: str, files: list[tuple[int | None, Path]]) -> Path:
    """Of several files for one band, the native-resolution one, else the finest one."""
    if len(files) == 1:
        return files[0][1]
    native = [path for resolution, path in files if resolution == resolution_of(name)]
    if len(native) == 1:
        return native[0]
    if all(resolution is not None for resolution, _ in files):
        finest = min(resolution for resolution, _ in files)
        at_finest = [path for resolution, path in files if resolution == finest]
        if len(at_finest) == 1:
            return at_finest[0]
    raise SceneError(
        f"Several files could hold band {name}: {[str(path) for _, path in files]}; "
        "keep one per band (or one per resolution with a _10m/_20m/_60m suffix)."
    )


def _in_layer_order(layers: Mapping[str, LayerSource]) -> dict[str, LayerSource]:
    return {name: layers[name] for name in LAYER_ORDER if name in layers}


def read_safe_metadata(folder: Path) -> tuple[dict[str, Any], float | None]:
    """Metadata and DN offset from a SAFE's XML files, where ``folder`` is the SAFE or a granule.

    Product metadata gives the processing baseline, start time, spacecraft, product type and
    ``RADIO_ADD_OFFSET``/``BOA_ADD_OFFSET``; tile metadata (``MTD_TL.xml``) gives the sensing time,
    tile id and mean sun angles. Returns ``({}, None)`` when there is no SAFE metadata.
    """
    metadata: dict[str, Any] = {}
    offset: float | None = None
    product_xml = _first_existing(
        [folder / name for name in PRODUCT_METADATA_NAMES]
        + [folder.parent.parent / name for name in PRODUCT_METADATA_NAMES]  # granule given
    )
    if product_xml is not None:
        values = _xml_values(product_xml)
        metadata.update(
            _drop_none(
                processing_baseline=_first(values, "PROCESSING_BASELINE"),
                datetime=_parse_datetime(_first(values, "PRODUCT_START_TIME")),
                spacecraft=_first(values, "SPACECRAFT_NAME"),
                product_type=_first(values, "PRODUCT_TYPE"),
            )
        )
        offset = _single_offset(
            product_xml, values.get("BOA_ADD_OFFSET") or values.get("RADIO_ADD_OFFSET")
        )
        if offset is None and "processing_baseline" in metadata:
            offset = offset_for_baseline(metadata["processing_baseline"])
    tile_xml = _first_existing(
        [folder / "MTD_TL.xml", *sorted(folder.glob("GRANULE/*/MTD_TL.xml"))]
    )
    if tile_xml is not None:
        values = _xml_values(tile_xml)
        zenith = _first(values, "Mean_Sun_Angle/ZENITH_ANGLE")
        azimuth = _first(values, "Mean_Sun_Angle/AZIMUTH_ANGLE")
        metadata.update(
            _drop_none(
                datetime=_parse_datetime(_first(values, "SENSING_TIME")),
                tile_id=mgrs_tile(_first(values, "TILE_ID")),
                sun_azimuth=float(azimuth) if azimuth is not None else None,
                sun_elevation=90.0 - float(zenith) if zenith is not None else None,
            )
        )
    if "datetime" in metadata:
        metadata["date"] = metadata["datetime"].date()
    return metadata, offset


def _first_existing(paths: list[Path]) -> Path | None:
    return next((path for path in paths if path.is_file()), None)


def _xml_values(path: Path) -> dict[str, list[str]]:
    """Text of every element, keyed by tag without namespace, and by ``parent/tag``."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as err:
        raise SceneError(f"Cannot parse Sentinel-2 metadata {path}: {err}") from err
    values: dict[str, list[str]] = {}
    for parent in root.iter():
        parent_tag = parent.tag.rsplit("}", 1)[-1]
        for child in parent:
            tag = child.tag.rsplit("}", 1)[-1]
            text = (child.text or "").strip()
            if text:
                values.setdefault(tag, []).append(text)
                values.setdefault(f"{parent_tag}/{tag}", []).append(text)
    return values


def _first(values: Mapping[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def _single_offset(path: Path, offsets: list[str] | None) -> float | None:
    """The one DN offset of a product (per-band values must agree), ``None`` if it lists none."""
    if not offsets:
        return None
    distinct = sorted({float(value) for value in offsets})
    if len(distinct) > 1:
        raise SceneError(
            f"{path} lists different DN offsets per band {distinct}; pass offset= explicitly."
        )
    return distinct[0]


def _drop_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def metadata_from_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    """Scene metadata from GeoTIFF dataset tags (the simulator's and ``write_cog``'s convention)."""
    sensing_time = _parse_datetime(tags.get("SENSING_TIME"))
    metadata = _drop_none(
        datetime=sensing_time,
        date=sensing_time.date() if sensing_time else None,
        tile_id=mgrs_tile(tags.get("TILE_ID")),
        processing_baseline=tags.get("PROCESSING_BASELINE"),
        spacecraft=tags.get("SPACECRAFT"),
        sun_azimuth=_parse_float(tags, "SUN_AZIMUTH"),
        sun_elevation=_parse_float(tags, "SUN_ELEVATION"),
    )
    return metadata


def metadata_from_file_name(stem: str) -> dict[str, Any]:
    """Tile and sensing time from standard band file names (``T31TDH_20150726T105026_B02``)."""
    metadata: dict[str, Any] = {}
    if match := FILE_DATETIME_PATTERN.search(f"_{stem}_"):
        sensing_time = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
        metadata.update(datetime=sensing_time, date=sensing_time.date())
    if tile := mgrs_tile(stem, strict=True):
        metadata["tile_id"] = tile
    return metadata


def mgrs_tile(text: str | None, strict: bool = False) -> str | None:
    """``T31TDH``/``MGRS-31TDH``/granule ids -> ``31TDH``; other ids kept as given unless ``strict``."""
    if not text:
        return None
    match = MGRS_TILE_PATTERN.search(text)
    if match:
        return match.group(1)
    return None if strict else text


def _parse_datetime(text: str | None) -> dt.datetime | None:
    """ISO 8601 (``2020-02-19T11:34:25.405Z``) -> timezone-aware UTC datetime."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise SceneError(f"Cannot parse sensing time {text!r}; expected ISO 8601.") from err
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _parse_float(tags: Mapping[str, str], key: str) -> float | None:
    if tags.get(key) in (None, ""):
        return None
    try:
        return float(tags[key])
    except ValueError as err:
        raise SceneError(f"Tag {key}={tags[key]!r} is not a number.") from err


def is_remote(source: str) -> bool:
    """URLs (``https://``, ``s3://``...) and GDAL virtual paths (``/vsicurl/...``)."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", source)) or source.startswith("/vsi")
