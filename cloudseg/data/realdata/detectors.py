"""The real-trained detectors that run offline, on a whole :class:`LoadedScene` array.

They are the mask producers of the registry (:mod:`cloudseg.inference.producers`) that the
real-scene evaluation takes as its reference (``ukis``, ``s2cloudless``, ``scl``), run on the
loaded arrays through :class:`~cloudseg.data.realdata.scenes.ProducerScene`, with two settings
for these scenes read whole:

* each works at the whole multiple of the scene's pixel nearest its working resolution
  (:data:`WORKING_RESOLUTION_M`: ukis-csmask about 30 m, the pixel size it was trained at;
  s2cloudless about 60 m), on block means of the scene;
* ukis-csmask uses the scene's own processing level (6-band model where B11 and B12 exist, else
  4-band; B08 as NIR) and sees the whole scene at once; s2cloudless runs on L1C
  (top-of-atmosphere) scenes only.

Each returns uint8 class codes (:mod:`cloudseg.labels`) on the scene grid, 255 where it has no
answer or the scene has no data. :func:`clear_agreement` is where the detectors that ran agree it
is clear (their consensus, :mod:`cloudseg.detectors.consensus`): the pixels the spectral library
and the real backgrounds may treat as cloud-free.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cloudseg.data.realdata.scenes import LoadedScene, ProducerScene
from cloudseg.detectors.consensus import Detection, reference_map
from cloudseg.inference.producers import MaskProducer, build_producer, producer_class
from cloudseg.inference.real_scenes import DEFAULT_DETECTORS
from cloudseg.labels import CLEAR, IGNORE_INDEX
from cloudseg.sentinel2.grid import pixel_size_m

#: Detector -> the pixel size (m) it works at, as a whole multiple of the scene's nearest to it.
WORKING_RESOLUTION_M = {"ukis": 30.0, "s2cloudless": 60.0}
#: Clear pixels closer than this to a non-clear answer are not trusted as clear (cloud edges).
CLEAR_MARGIN_M = 120.0


def producer(name: str, scene: LoadedScene) -> MaskProducer:
    """The registry producer ``name`` set up for ``scene`` (working resolution; ukis: level and
    one window)."""
    options: dict = {}
    if name in WORKING_RESOLUTION_M:
        factor = max(1, round(WORKING_RESOLUTION_M[name] / scene.gsd_m))
        options["resolution"] = pixel_size_m(scene.grid) * factor
    if name == "ukis":  # one window: the scene is in memory whole already
        options.update(product_level=scene.product_level, window=max(1024, *scene.grid.shape))
    return build_producer(name, **options)


def applicable(scene: LoadedScene) -> list[str]:
    """Detectors that can run on ``scene``'s bands and layers."""
    bands = ProducerScene(scene).bands
    return [
        name
        for name in DEFAULT_DETECTORS
        if not producer(name, scene).missing(bands)
        and (name != "s2cloudless" or scene.product_level == "l1c")
    ]


def run_detectors(scene: LoadedScene) -> dict[str, np.ndarray]:
    """Every applicable detector's classes for ``scene`` (255 where the scene has no data)."""
    view = ProducerScene(scene)
    masks = {}
    for name in applicable(scene):
        classes = producer(name, scene).predict(view)
        classes[~scene.valid] = IGNORE_INDEX
        masks[name] = classes
    return masks


#: The classes each detector can output (a detector votes only on what it can answer), as its
#: producer in the mask-producer registry declares them.
EMITS = {name: tuple(producer_class(name).emits) for name in DEFAULT_DETECTORS}


def detections(masks: dict[str, np.ndarray]) -> list[Detection]:
    """The detector masks as :class:`~cloudseg.detectors.consensus.Detection` votes."""
    return [Detection(name, mask, EMITS[name]) for name, mask in masks.items()]


def clear_agreement(
    masks: dict[str, np.ndarray], gsd_m: float, margin_m: float = CLEAR_MARGIN_M
) -> np.ndarray:
    """True where the detectors' consensus (:func:`~cloudseg.detectors.consensus.reference_map`)
    is clear and no detector's non-clear answer lies within ``margin_m`` (cloud edges and faint
    fringes are not trusted as clear)."""
    if not masks:
        raise ValueError("clear_agreement needs at least one detector mask.")
    clear = reference_map(detections(masks)) == CLEAR
    not_clear = np.logical_or.reduce(
        [(mask != CLEAR) & (mask != IGNORE_INDEX) for mask in masks.values()]
    )
    margin_px = int(round(margin_m / gsd_m))
    if margin_px > 0 and not_clear.any():
        not_clear = ndimage.binary_dilation(not_clear, iterations=margin_px)
    return clear & ~not_clear
