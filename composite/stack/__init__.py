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
  supports the query extension; :mod:`cloudseg.sentinel2.stac_search`).

Every scene is opened through the reader, which also harmonises processing baselines: each scene
carries its DN ``offset`` (0 before baseline 04.00, -1000 from it), applied when pixels are read.
Scenes are then filtered (MGRS tile, bbox, years, months, max scene cloud cover) and deduplicated:
the same overpass (same local solar day, same tile, same spacecraft and relative orbit where known)
keeps only the scene with the least nodata. A scene that cannot be opened is skipped with a logged
warning and recorded in :attr:`Stack.skipped`; nothing is dropped without being counted.

Modules: ``settings`` (:class:`StackSettings`), ``scenes`` (:class:`Stack`, :class:`StackScene`),
``discovery`` (what a source names), ``description`` (one scene's metadata), ``filters``
(filters and deduplication), ``build`` (:func:`build_stack`, the whole assembly).
"""

from composite.stack.build import build_stack
from composite.stack.scenes import WGS84, SkippedScene, Stack, StackScene
from composite.stack.settings import StackSettings

__all__ = ["WGS84", "SkippedScene", "Stack", "StackScene", "StackSettings", "build_stack"]
