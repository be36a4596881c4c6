"""The real-trained detectors that run offline, on a whole :class:`LoadedScene` array.

* ``ukis``: ukis-csmask through :func:`cloudseg.detectors.ukis.classify` (6-band model where B11
  and B12 exist, else 4-band; B08 as NIR; its traps handled there), on the scene block-averaged
  to about 30 m, the pixel size it was trained at.
* ``s2cloudless``: its 10 L1C bands (TOA) at ~60 m, Sentinel Hub's default threshold, averaging
  and dilation; cloud only (written ``thick_cloud``).
* ``scl``: the L2A scene classification, mapped as the SCL importer maps it.

Each returns uint8 class codes (:mod:`cloudseg.labels`) on the scene grid, 255 where it has no
answer. :func:`clear_agreement` is where the detectors that ran agree it is clear (their
consensus, :mod:`cloudseg.detectors.consensus`): the pixels the spectral library and the real
backgrounds may treat as cloud-free.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from cloudseg.data.importers.scl import scl_to_mask
from cloudseg.data.realdata.scenes import LoadedScene
from cloudseg.data.simulate.scale import block_mean, repeat_blocks
from cloudseg.detectors.consensus import Detection, reference_map
from cloudseg.detectors.ukis import UKIS_BANDS, band_names_for
from cloudseg.detectors.ukis import classify as ukis_classify
from cloudseg.inference.producers import producer_class
from cloudseg.labels import CLEAR, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import S2CLOUDLESS_BANDS

UKIS_GSD_M = 30.0
S2CLOUDLESS_GSD_M = 60.0
#: Clear pixels closer than this to a non-clear answer are not trusted as clear (cloud edges).
CLEAR_MARGIN_M = 120.0


def _factor(gsd_m: float, target_m: float) -> int:
    return max(1, int(round(target_m / gsd_m)))


def ukis(scene: LoadedScene) -> np.ndarray:
    """ukis-csmask (:func:`cloudseg.detectors.ukis.classify`) at about 30 m."""
    names = band_names_for(scene.bands)
    if names is None:
        raise ValueError(f"{scene.name}: ukis-csmask needs B02 B03 B04 B08; it has {scene.bands}.")
    stack = np.stack([scene.band(UKIS_BANDS[name]) for name in names])
    factor = _factor(scene.gsd_m, UKIS_GSD_M)
    classes = ukis_classify(
        np.moveaxis(block_mean(stack, factor), 0, -1), names, scene.product_level, threads=1
    )
    return _finish(repeat_blocks(classes, factor, scene.grid.shape), scene)


def s2cloudless(scene: LoadedScene) -> np.ndarray:
    from s2cloudless import S2PixelCloudDetector

    if scene.product_level != "l1c" or not scene.has(S2CLOUDLESS_BANDS):
        raise ValueError(
            f"{scene.name}: s2cloudless needs the L1C bands {S2CLOUDLESS_BANDS}; "
            f"it has {scene.bands}."
        )
    stack = np.stack([scene.band(band) for band in S2CLOUDLESS_BANDS])
    factor = _factor(scene.gsd_m, S2CLOUDLESS_GSD_M)
    coarse = np.nan_to_num(block_mean(stack, factor), nan=0.0)
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2)
    cloud = detector.get_cloud_masks(np.moveaxis(coarse, 0, -1)[np.newaxis])[0]
    classes = np.where(cloud > 0, THICK_CLOUD, CLEAR).astype(np.uint8)
    return _finish(repeat_blocks(classes, factor, scene.grid.shape), scene)


def scl(scene: LoadedScene) -> np.ndarray:
    if scene.scl is None:
        raise ValueError(f"{scene.name}: no SCL layer (L2A only).")
    return _finish(scl_to_mask(scene.scl, f"SCL of {scene.name}"), scene)


def _finish(classes: np.ndarray, scene: LoadedScene) -> np.ndarray:
    classes = classes.copy()
    classes[~scene.valid] = IGNORE_INDEX
    return classes


DETECTORS: dict[str, Callable[[LoadedScene], np.ndarray]] = {
    "ukis": ukis,
    "s2cloudless": s2cloudless,
    "scl": scl,
}


def applicable(scene: LoadedScene) -> list[str]:
    """Detectors that can run on ``scene``'s bands and layers."""
    names = []
    if scene.has(("B02", "B03", "B04", "B08")):
        names.append("ukis")
    if scene.product_level == "l1c" and scene.has(S2CLOUDLESS_BANDS):
        names.append("s2cloudless")
    if scene.scl is not None:
        names.append("scl")
    return names


def run_detectors(scene: LoadedScene) -> dict[str, np.ndarray]:
    """Every applicable detector's classes for ``scene``."""
    return {name: DETECTORS[name](scene) for name in applicable(scene)}


#: The classes each detector can output (a detector votes only on what it can answer), as its
#: producer in the mask-producer registry declares them.
EMITS = {name: tuple(producer_class(name).emits) for name in DETECTORS}


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
