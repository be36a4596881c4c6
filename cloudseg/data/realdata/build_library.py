"""Build the spectral library (:class:`~cloudseg.data.simulate.library.SpectralLibrary`) from
real scenes: clear-sky pixels (every offline detector that runs agrees they are clear, away from
cloud edges) of the scenes' training halves, sorted into land types by spectral rules.

Only scenes with all 13 L1C bands or the 12 L2A bands give full spectra. L2A pixels are bottom
of atmosphere: the simulator's nominal Rayleigh path reflectance
(:data:`~cloudseg.data.simulate.atmosphere.RAYLEIGH_PATH`, 0.05 in the blue) is added, B09
(water vapour) is damped to ``L2A_B09_OF_B8A`` of B8A as at the top of the atmosphere, and B10 (absent) set to ``L2A_B10``. Land-type rules (TOA reflectance, indices NDVI, NDWI, NDSI):
snow NDSI > 0.4 and B03 > 0.3; water NDWI > 0 and B08 < 0.15 (turbid if B04 > 0.07); forest
NDVI > 0.55 and B11 < 0.2; crops NDVI > 0.35; sparse vegetation NDVI > 0.2; then desert B04 >
0.25, town (rough texture: 3 x 3 standard deviation of B04 > 0.03, 10-20 m scenes only), red soil
B04 / B03 > 1.25, else bare soil. They are rules of thumb, good enough to pick endmembers from.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cloudseg.data.realdata.detectors import clear_agreement, run_detectors
from cloudseg.data.realdata.scenes import LoadedScene, training_columns
from cloudseg.data.simulate.atmosphere import RAYLEIGH_PATH
from cloudseg.data.simulate.library import LAND_TYPES, SpectralLibrary
from cloudseg.data.simulate.noise import stable_key
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS

MAX_PIXELS_PER_TYPE = 2000  # per scene and land type
MIN_PIXELS_PER_TYPE = 20
L2A_B09_OF_B8A = 0.3
L2A_B10 = 0.004
TOWN_TEXTURE = 0.03
TOWN_MAX_GSD_M = 20.0


def toa_spectra(scene: LoadedScene) -> np.ndarray | None:
    """The scene as 13-band TOA reflectance ``(13, y, x)``, or None if it lacks bands."""
    if scene.has(L1C_BANDS):
        return np.stack([scene.band(band) for band in L1C_BANDS])
    if not scene.has(L2A_BANDS):
        return None
    out = np.empty((len(L1C_BANDS), *scene.grid.shape), dtype=np.float32)
    for index, band in enumerate(L1C_BANDS):
        if band == "B10":
            out[index] = L2A_B10
        elif band == "B09":
            out[index] = L2A_B09_OF_B8A * scene.band("B8A")
        else:
            out[index] = scene.band(band) + RAYLEIGH_PATH[index]
    return out


def classify_land(toa: np.ndarray, gsd_m: float) -> np.ndarray:
    """Land-type codes (``LAND_TYPES`` index, -1 unknown) of 13-band TOA reflectance."""
    b03, b04, b08, b11 = (toa[L1C_BANDS.index(b)] for b in ("B03", "B04", "B08", "B11"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (b08 - b04) / (b08 + b04)
        ndwi = (b03 - b08) / (b03 + b08)
        ndsi = (b03 - b11) / (b03 + b11)
        redness = b04 / b03
    texture = np.zeros_like(b04)
    if gsd_m <= TOWN_MAX_GSD_M:
        filled = np.nan_to_num(b04)
        mean = ndimage.uniform_filter(filled, 3)
        texture = np.sqrt(np.maximum(ndimage.uniform_filter(filled**2, 3) - mean**2, 0.0))
    code = np.full(b04.shape, -1, dtype=np.int16)
    rules = [  # first match wins
        ("snow", (ndsi > 0.4) & (b03 > 0.3)),
        ("turbid_water", (ndwi > 0.0) & (b08 < 0.15) & (b04 > 0.07)),
        ("dark_water", (ndwi > 0.0) & (b08 < 0.15)),
        ("forest", (ndvi > 0.55) & (b11 < 0.2)),
        ("crops", ndvi > 0.35),
        ("sparse_vegetation", ndvi > 0.2),
        ("desert", b04 > 0.25),
        ("town", texture > TOWN_TEXTURE),
        ("red_soil", redness > 1.25),
        ("bare_soil", np.isfinite(ndvi)),
    ]
    for name, where in rules:
        code[(code == -1) & where] = LAND_TYPES.index(name)
    return code


def build_library(
    scenes: list[LoadedScene], seed: int = 0, verbose: bool = True
) -> SpectralLibrary:
    """The library from the clear training halves of ``scenes`` (see the module doc)."""
    spectra, land, source, names, used = [], [], [], [], {}
    for scene in scenes:
        toa = toa_spectra(scene)
        if toa is None:
            if verbose:
                print(f"library: {scene.name} skipped (bands {list(scene.bands)}: not 13 or 12)")
            continue
        masks = run_detectors(scene)
        clear = clear_agreement(masks, scene.gsd_m)
        clear[:, training_columns(scene.grid.width).stop :] = False
        clear &= np.isfinite(toa).all(axis=0)
        codes = classify_land(toa, scene.gsd_m)
        rng = np.random.default_rng(stable_key(seed, scene.name, "library"))
        counts = {}
        for code, land_type in enumerate(LAND_TYPES):
            rows, cols = np.nonzero(clear & (codes == code))
            if rows.size < MIN_PIXELS_PER_TYPE:
                continue
            take = rng.choice(rows.size, size=min(MAX_PIXELS_PER_TYPE, rows.size), replace=False)
            spectra.append(toa[:, rows[take], cols[take]].T)
            land.append(np.full(take.size, code, dtype=np.int16))
            source.append(np.full(take.size, len(names), dtype=np.int16))
            counts[land_type] = int(take.size)
        if counts:
            names.append(scene.name)
            used[scene.name] = {
                "detectors": sorted(masks), "clear_share": round(float(clear.mean()), 3),
                "gsd_m": scene.gsd_m, "product_level": scene.product_level, "pixels": counts,
            }  # fmt: skip
        if verbose:
            print(f"library: {scene.name}: {counts or 'no clear pixels agreed'}")
    if not spectra:
        raise ValueError("No clear-sky pixels with full spectra in the scenes given.")
    return SpectralLibrary(
        spectra=np.concatenate(spectra).astype(np.float32),
        land_type=np.concatenate(land),
        scene=np.concatenate(source),
        scenes=tuple(names),
        provenance={"seed": seed, "scenes": used, "half": "west (training columns)"},
    )
