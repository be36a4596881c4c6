"""``s2cloudless``: Sentinel Hub's detector (LightGBM on 10 L1C bands, TOA reflectance 0-1), binary.

Run the way Sentinel Hub runs it in production: bands read at ``resolution`` (160 m), cloud
probability thresholded at ``threshold`` (0.4) after averaging over a disk of ``average_over``
pixels (4) and dilated by ``dilation_size`` pixels (2) (the ``S2PixelCloudDetector`` parameters,
in pixels of ``resolution``). The mask is brought onto the scene grid by nearest neighbour
(:func:`~cloudseg.sentinel2.grid.reproject_nearest`); cloud is written as ``thick_cloud``. Scenes
with a pixel size coarser than ``resolution`` are processed at their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from s2cloudless import S2PixelCloudDetector

from cloudseg.inference.producers.base import MaskProducer, no_data
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.labels import CLEAR, THICK_CLOUD
from cloudseg.sentinel2.bands import S2CLOUDLESS_BANDS
from cloudseg.sentinel2.grid import Grid, processing_grid, reproject_nearest


@dataclass(frozen=True)
class S2CloudlessProducer(MaskProducer):
    name = "s2cloudless"
    emits = ("clear", "thick_cloud")

    resolution: float = 160.0
    threshold: float = 0.4
    average_over: int = 4
    dilation_size: int = 2

    @property
    def required_bands(self) -> tuple[str, ...]:
        return S2CLOUDLESS_BANDS

    @cached_property
    def detector(self) -> S2PixelCloudDetector:
        return S2PixelCloudDetector(
            threshold=self.threshold,
            average_over=self.average_over,
            dilation_size=self.dilation_size,
            all_bands=False,
        )

    def processing_grid(self, scene) -> Grid:
        """The scene grid at ``resolution`` metres (also for grids in degrees), or the scene's
        own where it is as coarse."""
        return processing_grid(scene.grid(), self.resolution)

    def cloud_mask(self, scene, grid: Grid) -> np.ndarray:
        """Binary cloud mask (uint8) on ``grid``; pixels without data are 0 (checked later)."""
        reflectance = scene.read_reflectance(S2CLOUDLESS_BANDS, grid=grid)
        bands_last = np.nan_to_num(np.moveaxis(reflectance, 0, -1), nan=0.0)
        probability = self.detector.get_cloud_probability_maps(bands_last[np.newaxis])
        return self.detector.get_mask_from_prob(probability)[0].astype(np.uint8)

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        grid = scene.grid()
        processing_grid = self.processing_grid(scene)
        cloud = self.cloud_mask(scene, processing_grid)
        classes = np.where(cloud > 0, THICK_CLOUD, CLEAR).astype(np.uint8)
        if processing_grid != grid:
            classes = reproject_nearest(classes, processing_grid, grid, nodata=CLASS_NODATA)
        classes[no_data(scene, S2CLOUDLESS_BANDS)] = CLASS_NODATA
        return classes


PRODUCER = S2CloudlessProducer
