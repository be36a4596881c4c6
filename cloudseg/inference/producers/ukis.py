"""``ukis``: ukis-csmask (DLR), U-Nets trained on real labeled Sentinel-2 and Landsat, offline on CPU.

Runs :func:`cloudseg.detectors.ukis.classify_windowed` on the scene's reflectance (offset removed,
harmonised) at about ``resolution`` metres (30: where its authors get the best results; scenes
coarser than that at their own pixel size), ``window`` pixels at a time with ``margin`` pixels of
context, then brings the mask onto the scene grid by nearest neighbour. The 6-band model runs where
B11 and B12 exist, else the 4-band one (B02 B03 B04 B08; B08 is its ``nir``: see
:mod:`cloudseg.detectors.ukis`). ``product_level`` picks its L1C or L2A model; ``auto`` reads it
from the scene (:func:`cloudseg.sentinel2.product.product_level`) and fails, naming this option,
where the scene does not say. Cloud is written as ``thick_cloud``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.detectors import ukis
from cloudseg.inference.producers.base import MaskProducer
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.sentinel2.grid import processing_grid, reproject_nearest
from cloudseg.sentinel2.product import product_level


@dataclass(frozen=True)
class UkisProducer(MaskProducer):
    name = "ukis"
    emits = ("clear", "thick_cloud", "cloud_shadow")

    product_level: str = "auto"
    resolution: float = 30.0
    window: int = 1024
    margin: int = 128

    def __post_init__(self) -> None:
        if self.product_level != "auto":
            ukis.check_product_level(self.product_level)
        if self.window <= 2 * self.margin:
            raise ValueError(
                f"ukis window={self.window} must exceed twice its margin={self.margin}."
            )

    @property
    def required_bands(self) -> tuple[str, ...]:
        return tuple(ukis.UKIS_BANDS[name] for name in ukis.UKIS_4_BAND_NAMES)

    def level(self, scene) -> str:
        if self.product_level != "auto":
            return self.product_level
        level = product_level(scene)
        if level is None:
            raise ValueError(
                f"ukis: the processing level of {scene.source} is unknown (no product type, SCL, "
                "B10 or L1C/L2A in its name); set the producer's product_level to l1c or l2a."
            )
        return level

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        names = ukis.band_names_for(scene.bands)
        bands = [ukis.UKIS_BANDS[name] for name in names]
        grid = scene.grid()
        work = processing_grid(grid, self.resolution)
        classes = ukis.classify_windowed(
            lambda window: scene.read_reflectance(bands, grid=work, window=window),
            work.shape,
            names,
            self.level(scene),
            window=self.window,
            margin=self.margin,
        )
        if work != grid:
            classes = reproject_nearest(classes, work, grid, nodata=CLASS_NODATA)
        return classes


PRODUCER = UkisProducer
