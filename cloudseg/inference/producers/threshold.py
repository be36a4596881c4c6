"""``threshold``: a per-pixel spectral rule on TOA/BOA reflectance, in this order of precedence:

- ``thick_cloud``: bright in blue (B02 > ``blue``) and in SWIR (B11 > ``swir``, which snow is
  not: it is dark at 1.6 um) and not snow-like (NDSI (B03 - B11) / (B03 + B11) < ``ndsi``);
- ``thin_cloud``: cirrus band B10 > ``cirrus`` and not snow-like (only where B10 exists, i.e.
  L1C; high snow fields reflect at 1.375 um too);
- ``cloud_shadow``: dark in NIR and SWIR (B8A < ``dark_nir``, B11 < ``dark_swir``) but with NIR
  above blue, which excludes water (darker in NIR than in blue);
- ``clear`` otherwise.

Thresholds are the usual textbook values for Sentinel-2 reflectance; no spatial context and no
cloud-shadow geometry are used, which is what makes it a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.inference.producers.base import MaskProducer
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD


@dataclass(frozen=True)
class SpectralThresholdProducer(MaskProducer):
    name = "threshold"

    blue: float = 0.22
    swir: float = 0.15
    ndsi: float = 0.4
    cirrus: float = 0.012
    dark_nir: float = 0.15
    dark_swir: float = 0.1

    @property
    def required_bands(self) -> tuple[str, ...]:
        return ("B02", "B03", "B8A", "B11")

    def classify(self, reflectance: dict[str, np.ndarray]) -> np.ndarray:
        """Class codes from reflectance arrays by band name (``B10`` optional)."""
        blue, green, nir, swir = (reflectance[b] for b in ("B02", "B03", "B8A", "B11"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ndsi = (green - swir) / (green + swir)
        classes = np.full(blue.shape, CLEAR, dtype=np.uint8)
        shadow = (nir < self.dark_nir) & (swir < self.dark_swir) & (nir > blue)
        classes[shadow] = CLOUD_SHADOW
        not_snow = ndsi < self.ndsi
        if "B10" in reflectance:
            classes[(reflectance["B10"] > self.cirrus) & not_snow] = THIN_CLOUD
        thick = (blue > self.blue) & (swir > self.swir) & not_snow
        classes[thick] = THICK_CLOUD
        return classes

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        bands = self.required_bands + (("B10",) if "B10" in scene.bands else ())
        stack = scene.read_reflectance(bands)
        classes = self.classify(dict(zip(bands, stack, strict=True)))
        classes[np.isnan(stack).all(axis=0)] = CLASS_NODATA
        return classes


PRODUCER = SpectralThresholdProducer
