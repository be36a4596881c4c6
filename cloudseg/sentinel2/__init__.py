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
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import (
    dn_to_reflectance,
    harmonize_dn,
    offset_for_baseline,
    reflectance_to_dn,
)

__all__ = [
    "BANDS",
    "L1C_BANDS",
    "L2A_BANDS",
    "RGB_BANDS",
    "S2CLOUDLESS_BANDS",
    "Grid",
    "band_indices",
    "dn_to_reflectance",
    "harmonize_dn",
    "offset_for_baseline",
    "reflectance_to_dn",
    "resolve_bands",
]
