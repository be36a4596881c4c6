"""``scl``: the L2A scene classification, mapped as the SCL importer maps it.

3 -> cloud_shadow, 8/9 -> thick_cloud, 10 -> thin_cloud, 0/1 -> no prediction, the rest clear
(the mapping lives in :mod:`cloudseg.data.importers.scl`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.data.importers.scl import scl_to_mask
from cloudseg.inference.producers.base import MaskProducer


@dataclass(frozen=True)
class SCLProducer(MaskProducer):
    name = "scl"

    @property
    def required_bands(self) -> tuple[str, ...]:
        return ("SCL",)

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        return scl_to_mask(scene.read(["SCL"])[0], f"SCL of {scene.source}")


PRODUCER = SCLProducer
