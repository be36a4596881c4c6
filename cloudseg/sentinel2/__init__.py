"""Sentinel-2 itself: bands, DN scaling, grids, reading scenes and writing COGs.

Both ``cloudseg`` and ``composite`` import Sentinel-2 knowledge from here and nowhere else.
"""

from cloudseg.sentinel2.bands import (
    BANDS,
    L1C_BANDS,
    L2A_BANDS,
    RGB_BANDS,
    S2CLOUDLESS_BANDS,
    band_indices,
    resolve_bands,
)
from cloudseg.sentinel2.errors import (
    SCENE_READ_ERRORS,
    CloudfreeError,
    SceneError,
    UnreadableScene,
)
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import (
    dn_to_reflectance,
    harmonize_dn,
    offset_for_baseline,
    reflectance_to_dn,
)
from cloudseg.sentinel2.reader import Scene, open_scene
from cloudseg.sentinel2.sources import LayerSource

__all__ = [
    "BANDS",
    "L1C_BANDS",
    "L2A_BANDS",
    "RGB_BANDS",
    "S2CLOUDLESS_BANDS",
    "SCENE_READ_ERRORS",
    "CloudfreeError",
    "Grid",
    "LayerSource",
    "Scene",
    "SceneError",
    "UnreadableScene",
    "band_indices",
    "dn_to_reflectance",
    "harmonize_dn",
    "offset_for_baseline",
    "open_scene",
    "reflectance_to_dn",
    "resolve_bands",
]
