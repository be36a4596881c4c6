"""Finding the scenes a source names, before any reading: a folder, a list, a static STAC file or a
STAC API search (:mod:`cloudseg.sentinel2.stac_search`)."""

from __future__ import annotations

from pathlib import Path

import pystac

from cloudseg.sentinel2.sources import BAND_FILE_PATTERN, RASTER_SUFFIXES, is_remote
from composite.stack.settings import StackSettings

Candidate = str | pystac.Item


def list_candidates(settings: StackSettings) -> list[Candidate]:
    """Every scene the source names, before any reading: paths/URLs or STAC items."""
    source = settings.source
    if isinstance(source, tuple):
        return list(source)
    if source.lower().endswith(".json"):
        return stac_file_items(source)
    if is_remote(source):
        return settings.stac_search().items()
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
