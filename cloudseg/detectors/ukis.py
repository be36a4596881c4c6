"""ukis-csmask (DLR; Apache-2.0) as a pure function: reflectance in, project class codes out.

ukis-csmask ships U-Nets (EfficientNet-B4 encoder) trained on real labeled Sentinel-2 and Landsat
(the 1.0 models: CloudSEN12+ and SPARCS) as ONNX files inside the package and runs offline on CPU
with ``onnxruntime``. It takes float32 top-of-atmosphere (``l1c``) or surface (``l2a``) reflectance
``(H, W, bands)`` in [0, 1], bands named ``blue green red nir`` (4-band model) and optionally
``swir16 swir22`` (6-band model), and returns 0 clear / 1 cloud / 2 cloud shadow. Its authors get
the best results at about 30 m pixels.

**Which NIR.** We feed **B08** (842 nm, 10 m) as ``nir``: since 0.2.1 the package names its bands
by the STAC ``eo`` common names, where ``nir`` is Sentinel-2 B08 and B8A is ``nir08``; its 4-band
model is the four 10 m bands (``blue green red nir``), the set 4-band products carry (B02 B03 B04
B08); and B08 is what its own Sentinel-2 example passes. (Over clouds and shadows B08 and B8A
differ by a few hundredths of reflectance; Landsat's narrow NIR would sit closer to B8A.)

**Traps handled here** (ukis-csmask 1.0.0, ``ukis_csmask/mask.py``):

- ``invalid_buffer=0`` makes ``scipy.ndimage.binary_dilation(..., iterations=0)`` repeat until
  nothing changes, so the valid mask grows over the whole image. We never pass 0 and never use its
  valid mask: the class map (``csm``) is what we read, nodata is ours.
- ``nodata_value`` other than 0 is mishandled: it builds a nodata mask of 0/1 and then compares
  that *mask* with ``nodata_value`` (``valid[nodata_mask == nodata_value] = 0``), so -9999 marks
  nothing and 1 marks every valid pixel. We pass ``nodata_value=None``, fill nodata (NaN) with 0
  before the network, and write ``CLASS_NODATA`` there afterwards.
- It holds the whole image, its 256 px tiles and their softmax outputs in memory (about 2 GB at
  2048 x 2048 x 6): :func:`classify_windowed` runs it window by window, each with a margin of
  context whose predictions are dropped (on the 512 x 856 Betsiboka scene, 300 px windows with a
  64 px margin agree with one whole-image run on 97.8 % of pixels).
- Reflectance must have the processing-baseline offset removed (``Scene.read_reflectance`` does:
  (DN + offset) / 10000, harmonised), or a 04.00+ product reads 0.1 too bright.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rasterio.windows import Window

from cloudseg.detectors.windows import run_windowed
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD

#: ukis-csmask band names -> the Sentinel-2 bands fed to them (see "Which NIR" above).
UKIS_BANDS: dict[str, str] = {
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
    "swir16": "B11",
    "swir22": "B12",
}
#: The 4-band model's inputs; the 6-band model adds the two SWIR bands.
UKIS_4_BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir")
UKIS_6_BAND_NAMES: tuple[str, ...] = (*UKIS_4_BAND_NAMES, "swir16", "swir22")
PRODUCT_LEVELS: tuple[str, ...] = ("l1c", "l2a")
#: ukis-csmask output code -> project class code (its "cloud" is thick + thin: written thick).
UKIS_TO_CLASS: dict[int, int] = {0: CLEAR, 1: THICK_CLOUD, 2: CLOUD_SHADOW}
#: The buffer ukis-csmask applies to its own valid mask (unused here; never 0, see above).
SAFE_INVALID_BUFFER = 1
CLASS_NODATA = IGNORE_INDEX


def band_names_for(available: Sequence[str]) -> tuple[str, ...] | None:
    """The ukis-csmask bands a scene with ``available`` Sentinel-2 bands can feed: the 6-band set
    where B11 and B12 exist, else the 4-band set, else ``None``."""
    have = set(available)
    for names in (UKIS_6_BAND_NAMES, UKIS_4_BAND_NAMES):
        if all(UKIS_BANDS[name] in have for name in names):
            return names
    return None


def missing_bands(available: Sequence[str]) -> list[str]:
    """The Sentinel-2 bands of the 4-band minimum that ``available`` lacks (empty: it runs)."""
    return [UKIS_BANDS[name] for name in UKIS_4_BAND_NAMES if UKIS_BANDS[name] not in available]


def check_product_level(product_level: str) -> str:
    level = str(product_level).lower()
    if level not in PRODUCT_LEVELS:
        raise ValueError(
            f"ukis-csmask product_level={product_level!r}: use 'l1c' (top-of-atmosphere) or "
            "'l2a' (surface reflectance), the level of the scene's reflectance."
        )
    return level


def classify(
    reflectance: np.ndarray,
    band_order: Sequence[str],
    product_level: str,
    *,
    threads: int = 0,
) -> np.ndarray:
    """Project class codes (clear / thick_cloud / cloud_shadow, 255 nodata) for one image.

    Args:
        reflectance: float32 ``(H, W, bands)`` reflectance in [0, 1] with the processing-baseline
            offset removed; NaN marks nodata (a pixel with any band NaN gets no prediction).
        band_order: ukis-csmask names of the bands in ``reflectance`` (4 or 6 of
            ``blue green red nir swir16 swir22``).
        product_level: ``"l1c"`` or ``"l2a"``: which of its models to use.
        threads: onnxruntime intra-op threads (0: its own choice).
    """
    from ukis_csmask.mask import CSmask  # imports onnxruntime (~0.5 s); only where it runs

    level = check_product_level(product_level)
    order = [str(name).lower() for name in band_order]
    unknown = sorted(set(order) - set(UKIS_6_BAND_NAMES))
    if unknown or not set(UKIS_4_BAND_NAMES) <= set(order):
        raise ValueError(
            f"ukis-csmask band_order {list(band_order)}: needs {list(UKIS_4_BAND_NAMES)} and "
            f"optionally swir16, swir22; unknown {unknown}."
        )
    if reflectance.ndim != 3 or reflectance.shape[2] != len(order):
        raise ValueError(
            f"ukis-csmask input has shape {reflectance.shape}; expected (H, W, {len(order)}) "
            f"for band_order {order}."
        )
    nodata = ~np.isfinite(reflectance).all(axis=2)
    image = np.nan_to_num(reflectance.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(image, 0.0, out=image)
    if nodata.all():
        return np.full(nodata.shape, CLASS_NODATA, dtype=np.uint8)
    import warnings

    with warnings.catch_warnings():  # small windows: it pads to its 256 px tiles, as it warns
        warnings.filterwarnings(
            "ignore", message="Your input image is smaller", category=UserWarning
        )
        masker = CSmask(
            image,
            band_order=order,
            product_level=level,
            nodata_value=None,
            invalid_buffer=SAFE_INVALID_BUFFER,
            intra_op_num_threads=threads,
            providers=["CPUExecutionProvider"],
        )
    codes = masker.csm[..., 0]
    classes = np.full(codes.shape, CLASS_NODATA, dtype=np.uint8)
    for ukis_code, class_code in UKIS_TO_CLASS.items():
        classes[codes == ukis_code] = class_code
    classes[nodata] = CLASS_NODATA
    return classes


def classify_windowed(
    read: Callable[[Window], np.ndarray],
    shape: tuple[int, int],
    band_order: Sequence[str],
    product_level: str,
    *,
    window: int = 1024,
    margin: int = 128,
    threads: int = 0,
) -> np.ndarray:
    """:func:`classify` over a large image, one window (plus ``margin`` of context) at a time.

    ``read(window)`` returns ``(bands, h, w)`` reflectance for a pixel window of the image (as
    ``Scene.read_reflectance(..., window=...)`` does); memory stays at one window's worth.
    """
    return run_windowed(
        read,
        shape,
        lambda bands_first: classify(
            np.moveaxis(bands_first, 0, -1), band_order, product_level, threads=threads
        ),
        window=window,
        margin=margin,
        fill=CLASS_NODATA,
    )
