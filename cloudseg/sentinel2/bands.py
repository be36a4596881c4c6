"""The Sentinel-2 MSI band registry: one place for band names, wavelengths and resolutions.

Everything else names bands by string (``["B02", "B03", "B04", "B08"]``) and resolves them here,
so a typo fails early with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    name: str
    center_nm: float
    width_nm: float
    resolution_m: int
    in_l2a: bool
    description: str

    @property
    def in_l1c(self) -> bool:
        return True


#: The 13 bands in canonical L1C order (also the order of torchgeo's SSL4EO-S12 weights).
BANDS: tuple[Band, ...] = (
    Band("B01", 443, 20, 60, True, "coastal aerosol"),
    Band("B02", 490, 65, 10, True, "blue"),
    Band("B03", 560, 35, 10, True, "green"),
    Band("B04", 665, 30, 10, True, "red"),
    Band("B05", 705, 15, 20, True, "red edge 1"),
    Band("B06", 740, 15, 20, True, "red edge 2"),
    Band("B07", 783, 20, 20, True, "red edge 3"),
    Band("B08", 842, 115, 10, True, "NIR"),
    Band("B8A", 865, 20, 20, True, "narrow NIR"),
    Band("B09", 945, 20, 60, True, "water vapour"),
    Band("B10", 1375, 30, 60, False, "SWIR cirrus"),
    Band("B11", 1610, 90, 20, True, "SWIR 1"),
    Band("B12", 2190, 180, 20, True, "SWIR 2"),
)

BAND_BY_NAME: dict[str, Band] = {band.name: band for band in BANDS}

L1C_BANDS: tuple[str, ...] = tuple(band.name for band in BANDS)
L2A_BANDS: tuple[str, ...] = tuple(band.name for band in BANDS if band.in_l2a)
RGB_BANDS: tuple[str, ...] = ("B04", "B03", "B02")
#: The ten L1C bands s2cloudless was trained on, in its input order.
S2CLOUDLESS_BANDS: tuple[str, ...] = (
    "B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip

#: Non-spectral L2A layers that can be read like bands; SCL holds classes (nearest resampling).
AUXILIARY_LAYERS: dict[str, int] = {"SCL": 20, "AOT": 10, "WVP": 10}
CATEGORICAL_LAYERS: frozenset[str] = frozenset({"SCL"})


def canonical_band_name(name: str) -> str:
    """Normalise spellings such as ``b2``, ``B2``, ``B02``, ``b8a`` to the registry's ``B02``/``B8A``."""
    raw = str(name).strip().upper()
    if raw in BAND_BY_NAME or raw in AUXILIARY_LAYERS:
        return raw
    if raw.startswith("B") and raw[1:].isdigit():
        padded = f"B{int(raw[1:]):02d}"
        if padded in BAND_BY_NAME:
            return padded
    if raw in {"B8A", "B08A"}:
        return "B8A"
    valid = ", ".join([*L1C_BANDS, *AUXILIARY_LAYERS])
    raise ValueError(f"Unknown Sentinel-2 band {name!r}. Valid names: {valid}.")


def resolve_bands(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """Validate a band list and return canonical names in the order given.

    ``None``/``"L1C"``/``"L2A"``/``"RGB"`` are shorthands for the standard sets.
    """
    if names is None:
        return L1C_BANDS
    if isinstance(names, str):
        presets = {"L1C": L1C_BANDS, "L2A": L2A_BANDS, "RGB": RGB_BANDS}
        if names.upper() in presets:
            return presets[names.upper()]
        names = [names]
    resolved = tuple(canonical_band_name(n) for n in names)
    if not resolved:
        raise ValueError("Band list is empty: name at least one band, e.g. ['B02', 'B03', 'B04'].")
    duplicated = sorted({n for n in resolved if resolved.count(n) > 1})
    if duplicated:
        raise ValueError(f"Band list names {duplicated} more than once: {list(resolved)}.")
    return resolved


def band_indices(selected: Sequence[str], available: Sequence[str]) -> list[int]:
    """Positions of ``selected`` bands within ``available``; a missing band is a clear error."""
    selected = resolve_bands(selected)
    available = [canonical_band_name(n) for n in available]
    missing = [n for n in selected if n not in available]
    if missing:
        raise ValueError(f"Bands {missing} are not available; this source has {available}.")
    return [available.index(n) for n in selected]


def resolution_of(name: str) -> int:
    name = canonical_band_name(name)
    if name in AUXILIARY_LAYERS:
        return AUXILIARY_LAYERS[name]
    return BAND_BY_NAME[name].resolution_m


def is_categorical(name: str) -> bool:
    return canonical_band_name(name) in CATEGORICAL_LAYERS
