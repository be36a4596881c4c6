"""The real-trained detectors that run offline, on a whole :class:`RealScene` array.

* ``ukis``: ukis-csmask (CloudSEN12+/SPARCS-trained ONNX nets): 6-band model where B11/B12 exist,
  else 4-band; fed B02 B03 B04 and **B08** as NIR (the 10 m broad NIR its Sentinel-2 training
  bands used), reflectance 0-1 with the baseline offset removed, nodata 0 with ``nodata_value=0``
  (other values are mishandled) and ``invalid_buffer`` >= 1 (0 marks the whole image invalid).
  It was trained at about 30 m: finer scenes are block-averaged to ~30 m first.
* ``s2cloudless``: its 10 L1C bands (TOA) at ~60 m, Sentinel Hub's default threshold, averaging
  and dilation; cloud only (written ``thick_cloud``).
* ``scl``: the L2A scene classification, mapped as the SCL importer maps it.

Each returns uint8 class codes (:mod:`cloudseg.labels`) on the scene grid, 255 where it has no
answer. :func:`clear_agreement` is where every detector that ran says clear: the pixels the
spectral library and the real backgrounds may treat as cloud-free.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from cloudseg.data.importers.scl import scl_to_mask
from cloudseg.data.realdata.scenes import RealScene
from cloudseg.data.simulate.scale import block_mean, repeat_blocks
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import S2CLOUDLESS_BANDS

UKIS_BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11",
              "swir22": "B12"}  # fmt: skip
UKIS_GSD_M = 30.0
S2CLOUDLESS_GSD_M = 60.0
#: Clear pixels closer than this to a non-clear answer are not trusted as clear (cloud edges).
CLEAR_MARGIN_M = 120.0


def _factor(gsd_m: float, target_m: float) -> int:
    return max(1, int(round(target_m / gsd_m)))


def ukis(scene: RealScene) -> np.ndarray:
    from ukis_csmask.mask import CSmask

    names = [name for name, band in UKIS_BANDS.items() if band in scene.bands]
    if not {"blue", "green", "red", "nir"} <= set(names):
        raise ValueError(f"{scene.name}: ukis-csmask needs B02 B03 B04 B08; it has {scene.bands}.")
    if not {"swir16", "swir22"} <= set(names):
        names = ["blue", "green", "red", "nir"]
    stack = np.stack([scene.band(UKIS_BANDS[name]) for name in names])
    factor = _factor(scene.gsd_m, UKIS_GSD_M)
    coarse = np.nan_to_num(block_mean(stack, factor), nan=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "smaller than the 256 x 256 tiling"
        csm = CSmask(
            np.ascontiguousarray(np.moveaxis(coarse, 0, -1), dtype=np.float32),
            band_order=names,
            product_level=scene.product_level,
            nodata_value=0,
            invalid_buffer=1,
            intra_op_num_threads=1,
            inter_op_num_threads=1,
        ).csm[..., 0]
    classes = np.choose(np.minimum(csm, 2), [CLEAR, THICK_CLOUD, CLOUD_SHADOW]).astype(np.uint8)
    return _finish(repeat_blocks(classes, factor, scene.grid.shape), scene)


def s2cloudless(scene: RealScene) -> np.ndarray:
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


def scl(scene: RealScene) -> np.ndarray:
    if scene.scl is None:
        raise ValueError(f"{scene.name}: no SCL layer (L2A only).")
    return _finish(scl_to_mask(scene.scl, f"SCL of {scene.name}"), scene)


def _finish(classes: np.ndarray, scene: RealScene) -> np.ndarray:
    classes = classes.copy()
    classes[~scene.valid] = IGNORE_INDEX
    return classes


DETECTORS: dict[str, Callable[[RealScene], np.ndarray]] = {
    "ukis": ukis,
    "s2cloudless": s2cloudless,
    "scl": scl,
}


def applicable(scene: RealScene) -> list[str]:
    """Detectors that can run on ``scene``'s bands and layers."""
    names = []
    if scene.has(("B02", "B03", "B04", "B08")):
        names.append("ukis")
    if scene.product_level == "l1c" and scene.has(S2CLOUDLESS_BANDS):
        names.append("s2cloudless")
    if scene.scl is not None:
        names.append("scl")
    return names


def run_detectors(scene: RealScene) -> dict[str, np.ndarray]:
    """Every applicable detector's classes for ``scene``."""
    return {name: DETECTORS[name](scene) for name in applicable(scene)}


def clear_agreement(
    masks: dict[str, np.ndarray], gsd_m: float, margin_m: float = CLEAR_MARGIN_M
) -> np.ndarray:
    """True where every detector says clear and no detector's non-clear answer lies within
    ``margin_m`` (cloud edges and faint fringes are not trusted as clear)."""
    if not masks:
        raise ValueError("clear_agreement needs at least one detector mask.")
    clear = np.logical_and.reduce([mask == CLEAR for mask in masks.values()])
    not_clear = np.logical_or.reduce(
        [(mask != CLEAR) & (mask != IGNORE_INDEX) for mask in masks.values()]
    )
    margin_px = int(round(margin_m / gsd_m))
    if margin_px > 0 and not_clear.any():
        not_clear = ndimage.binary_dilation(not_clear, iterations=margin_px)
    return clear & ~not_clear
