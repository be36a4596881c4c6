"""A spectral library of real clear-sky pixels, by land type, for the simulator's surfaces.

The library holds real 13-band TOA reflectance spectra (built from real scenes by
``python -m cloudseg.data.realdata library``, see :mod:`cloudseg.data.realdata.build_library`),
each tagged with a land type and the scene it came from. :meth:`SpectralLibrary.draw` turns it
into one scene's endmember spectra (rows in ``surface.ENDMEMBERS`` order): for each endmember a
land type and a source scene are drawn, the median of a few of its pixels is taken (a
scene-specific spectrum, not one noisy pixel), then a per-scene gain, per-band gain jitter,
offset and haze (additive path reflectance falling with wavelength) are applied, so a model cannot
key on one exact spectrum. Endmembers the library has no pixels for (snow, where no real scene
shows it) keep the simulator's built-in spectrum.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.data.simulate.atmosphere import AEROSOL_SPECTRUM
from cloudseg.sentinel2.bands import L1C_BANDS

LAND_TYPES: tuple[str, ...] = (
    "forest", "crops", "sparse_vegetation", "bare_soil", "red_soil", "desert",
    "turbid_water", "dark_water", "town", "snow",
)  # fmt: skip
#: Which land types may stand in for each simulator endmember (``surface.ENDMEMBERS`` order).
ENDMEMBER_SOURCES: dict[str, tuple[str, ...]] = {
    "vegetation": ("forest", "crops"),
    "dry_vegetation": ("sparse_vegetation",),
    "soil": ("bare_soil", "red_soil"),
    "sand": ("desert",),
    "water": ("turbid_water", "dark_water"),
    "urban": ("town",),
    "snow": ("snow",),
}
PIXELS_PER_DRAW = 16
SCENE_GAIN = (0.85, 1.15)
BAND_GAIN_SD = 0.03
OFFSET_SD = 0.004
HAZE_MAX = 0.02  # additive blue reflectance of the strongest library haze
_B10 = L1C_BANDS.index("B10")


@dataclass
class SpectralLibrary:
    """Real clear-sky spectra ``(n, 13)`` with their land type and source scene indices."""

    spectra: np.ndarray  # float32 (n, 13) TOA reflectance, L1C band order
    land_type: np.ndarray  # int16 (n,) index into LAND_TYPES
    scene: np.ndarray  # int16 (n,) index into scenes
    scenes: tuple[str, ...]
    provenance: dict

    def __post_init__(self) -> None:
        if self.spectra.ndim != 2 or self.spectra.shape[1] != len(L1C_BANDS):
            raise ValueError(f"Library spectra shape {self.spectra.shape} is not (n, 13).")
        if not (len(self.spectra) == len(self.land_type) == len(self.scene)):
            raise ValueError("Library spectra, land_type and scene lengths differ.")

    def counts(self) -> dict[str, int]:
        """Pixels per land type."""
        return {name: int((self.land_type == i).sum()) for i, name in enumerate(LAND_TYPES)}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".partial.npz")
        np.savez_compressed(
            tmp,
            spectra=self.spectra.astype(np.float32),
            land_type=self.land_type.astype(np.int16),
            scene=self.scene.astype(np.int16),
            scenes=np.array(self.scenes),
            land_types=np.array(LAND_TYPES),
            provenance=np.array(json.dumps(self.provenance)),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpectralLibrary:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"No spectral library at {path}; build it with `python -m cloudseg.data.realdata "
                f"library --out {path}` (from ../shared/realdata or your own scenes)."
            )
        with np.load(path) as data:
            if tuple(data["land_types"].tolist()) != LAND_TYPES:
                raise ValueError(f"{path} uses land types {data['land_types'].tolist()}, "
                                 f"expected {LAND_TYPES}; rebuild it.")  # fmt: skip
            return cls(
                spectra=data["spectra"],
                land_type=data["land_type"],
                scene=data["scene"],
                scenes=tuple(data["scenes"].tolist()),
                provenance=json.loads(str(data["provenance"])),
            )

    def draw(self, builtin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One scene's endmember spectra ``(7, 13)``: real where the library has the land type,
        ``builtin`` rows elsewhere; randomised by gain, offset and haze (see the module doc)."""
        spectra = builtin.astype(np.float32).copy()
        for row, sources in enumerate(ENDMEMBER_SOURCES.values()):
            codes = [LAND_TYPES.index(name) for name in sources]
            candidates = np.flatnonzero(np.isin(self.land_type, codes))
            if candidates.size == 0:
                continue
            pick = self.land_type[rng.choice(candidates)]
            same_type = np.flatnonzero(self.land_type == pick)
            source_scene = self.scene[rng.choice(same_type)]
            pool = same_type[self.scene[same_type] == source_scene]
            chosen = rng.choice(pool, size=min(PIXELS_PER_DRAW, pool.size), replace=False)
            spectra[row] = np.median(self.spectra[chosen], axis=0)
        gain = rng.uniform(*SCENE_GAIN) * (1.0 + rng.normal(0.0, BAND_GAIN_SD, len(L1C_BANDS)))
        offset = rng.normal(0.0, OFFSET_SD, len(L1C_BANDS))
        haze = rng.uniform(0.0, HAZE_MAX) * AEROSOL_SPECTRUM
        spectra = spectra * gain + offset + haze
        spectra[:, _B10] = np.maximum(spectra[:, _B10], 0.0005)
        return np.clip(spectra, 0.0005, None).astype(np.float32)
