"""Digital numbers to reflectance, with the processing-baseline offset.

Reflectance = (DN + offset) / 10000, with offset 0 before processing baseline 04.00 and -1000 from
04.00 on (products from 2022-01-25). DN 0 is nodata in every baseline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

QUANTIFICATION_VALUE = 10000.0
NODATA_DN = 0
BASELINE_04_OFFSET = -1000.0


def parse_baseline(baseline: str | float | None) -> float | None:
    """``"04.00"``, ``"N0400"``, ``"4.0"`` or ``4.0`` -> 4.0; ``None`` stays ``None``."""
    if baseline is None:
        return None
    if isinstance(baseline, int | float):
        return float(baseline)
    text = str(baseline).strip().upper().lstrip("N")
    try:
        if "." in text:
            return float(text)
        if text.isdigit() and len(text) == 4:  # "0400" as in product names
            return int(text) / 100.0
        return float(text)
    except ValueError as err:
        raise ValueError(
            f"Cannot parse processing baseline {baseline!r}; expected e.g. '04.00' or 'N0400'."
        ) from err


def offset_for_baseline(baseline: str | float | None) -> float:
    """The additive DN offset for a processing baseline (``None``: assume pre-04.00, offset 0)."""
    value = parse_baseline(baseline)
    if value is None or value < 4.0:
        return 0.0
    return BASELINE_04_OFFSET


def offset_from_metadata(metadata: Mapping[str, Any]) -> float | None:
    """Find the DN offset in product metadata or STAC item properties, or ``None`` if absent.

    Looks for ``BOA_ADD_OFFSET``/``RADIO_ADD_OFFSET`` (product metadata; per band or single) and
    ``s2:processing_baseline``/``processing_baseline`` (STAC, product tags).
    """
    for key in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "boa_add_offset", "radio_add_offset"):
        if key in metadata and metadata[key] is not None:
            return float(metadata[key])
    for key in ("s2:processing_baseline", "processing_baseline", "PROCESSING_BASELINE"):
        if key in metadata and metadata[key] is not None:
            return offset_for_baseline(metadata[key])
    return None


def dn_to_reflectance(
    dn: np.ndarray, offset: float = 0.0, nodata: float | None = NODATA_DN
) -> np.ndarray:
    """Convert DN to float32 reflectance; ``nodata`` DN become NaN."""
    reflectance = (dn.astype(np.float32) + np.float32(offset)) / np.float32(QUANTIFICATION_VALUE)
    if nodata is not None:
        reflectance[dn == nodata] = np.nan
    return reflectance


def reflectance_to_dn(reflectance: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Inverse of :func:`dn_to_reflectance`: NaN -> 0 (nodata); valid values clipped to [1, 65535]."""
    dn = np.rint(reflectance.astype(np.float64) * QUANTIFICATION_VALUE - offset)
    dn = np.clip(np.nan_to_num(dn, nan=NODATA_DN), 1, 65535)
    dn[~np.isfinite(reflectance)] = NODATA_DN
    return dn.astype(np.uint16)


def harmonize_dn(dn: np.ndarray, offset: float, nodata: int = NODATA_DN) -> np.ndarray:
    """Shift DN of a baseline-04.00 product onto the pre-04.00 scale (offset 0), keeping nodata.

    The same trick as Sentinel Hub / Microsoft Planetary Computer harmonisation: values that would
    fall to 0 or below are clipped to 1 so that they are not mistaken for nodata.
    """
    if offset == 0:
        return dn
    shifted = dn.astype(np.int32) + int(offset)
    out = np.clip(shifted, 1, 65535).astype(dn.dtype)
    out[dn == nodata] = nodata
    return out
