"""``ocm``: OmniCloudMask (Wright et al. 2025), optional: runs only where its weights are given.

Red, green and NIR (B04, B03, B8A) at about ``resolution`` metres (10; it is trained for 10-50 m,
and scenes coarser than ``resolution`` run at their own pixel size), ``window`` pixels at a time
with ``margin`` pixels of context; four classes, the project's. ``weights``: a folder with the
official weight files, a TorchScript file, or ``download`` (see
:mod:`cloudseg.detectors.omnicloudmask`); without it the producer stops at construction and says
which option to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from cloudseg.detectors import omnicloudmask as ocm
from cloudseg.detectors.windows import run_windowed
from cloudseg.inference.producers.base import MaskProducer
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.sentinel2.grid import processing_grid, reproject_nearest


@dataclass(frozen=True)
class OCMProducer(MaskProducer):
    name = "ocm"

    weights: str | None = None
    resolution: float = 10.0
    window: int = 2048
    margin: int = 128

    def __post_init__(self) -> None:
        if not self.weights:
            raise ocm.OCMWeightsError(f"The ocm mask producer needs weights. {ocm.weights_help()}")
        if self.weights != ocm.DOWNLOAD and not Path(self.weights).exists():
            raise ocm.OCMWeightsError(
                f"The ocm mask producer's weights {self.weights} do not exist. {ocm.weights_help()}"
            )

    @property
    def required_bands(self) -> tuple[str, ...]:
        return ocm.OCM_BANDS

    @cached_property
    def models(self) -> list:
        return ocm.load_models(self.weights)

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        grid = scene.grid()
        work = processing_grid(grid, self.resolution)
        classes = run_windowed(
            lambda window: scene.read_reflectance(ocm.OCM_BANDS, grid=work, window=window),
            work.shape,
            lambda image: ocm.classify(image, self.models),
            window=self.window,
            margin=self.margin,
            fill=CLASS_NODATA,
        )
        if work != grid:
            classes = reproject_nearest(classes, work, grid, nodata=CLASS_NODATA)
        return classes


PRODUCER = OCMProducer
