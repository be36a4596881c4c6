"""``none``: no cloud mask. Every pixel with data is clear: the plain percentile in a composite
(which then needs no mask files), the do-nothing baseline in an evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.inference.producers.base import MaskProducer, no_data
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.labels import CLEAR
from cloudseg.sentinel2.bands import AUXILIARY_LAYERS


@dataclass(frozen=True)
class NoMask(MaskProducer):
    name = "none"
    emits = ("clear",)
    makes_masks = False

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        classes = np.full(scene.grid().shape, CLEAR, dtype=np.uint8)
        spectral = [band for band in scene.bands if band not in AUXILIARY_LAYERS]
        classes[no_data(scene, spectral)] = CLASS_NODATA
        return classes


PRODUCER = NoMask
