"""Cloud-mask producers: one module per source, found by name (:mod:`.registry`).

Every producer turns a scene (:func:`cloudseg.sentinel2.reader.open_scene`) into a class raster
on ``scene.grid()`` with the codes of :mod:`cloudseg.labels` and ``CLASS_NODATA`` (255) where it
makes no prediction. Evaluation (``cloudfree-evaluate-masks``), composite masks and composite
baselines all build producers here, by the same names:

- ``model``: the trained checkpoint, run as ``cloudfree-predict`` runs it;
- ``scl``: the L2A scene classification; ``s2cloudless``: Sentinel Hub's detector;
- ``threshold``: a per-pixel spectral rule; ``none``: no mask (every pixel with data is clear).

A new producer is one module here: a :class:`~.base.MaskProducer` subclass (a frozen dataclass of
its options) named ``PRODUCER``, whose ``name`` is the module's name.
"""

from cloudseg.inference.producers.base import MaskProducer, lacking_bands, write_mask
from cloudseg.inference.producers.registry import build_producer, producer_class, producer_names

__all__ = [
    "MaskProducer",
    "build_producer",
    "lacking_bands",
    "producer_class",
    "producer_names",
    "write_mask",
]
