"""Inference on whole scenes and evaluation of cloud masks.

- :mod:`~cloudseg.inference.windows`: sliding-window plan and blending weights;
- :mod:`~cloudseg.inference.predictor`: :class:`WindowedPredictor`, a checkpoint run over any
  raster in blended strips;
- :mod:`~cloudseg.inference.predict`: :func:`predict_scene`, a scene to class and probability COGs;
- :mod:`~cloudseg.inference.baselines`: mask producers (checkpoint, s2cloudless, SCL, threshold);
- :mod:`~cloudseg.inference.evaluate`: :func:`evaluate_masks` on a labeled split;
- :mod:`~cloudseg.inference.cli`: ``cloudfree-predict`` and ``cloudfree-evaluate-masks``.
"""

from cloudseg.inference.predict import ScenePrediction, output_paths, predict_scene
from cloudseg.inference.predictor import InferenceOptions, WindowedPredictor
from cloudseg.inference.windows import WindowPlan

__all__ = [
    "InferenceOptions",
    "ScenePrediction",
    "WindowPlan",
    "WindowedPredictor",
    "output_paths",
    "predict_scene",
]
