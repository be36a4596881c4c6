"""Inference on whole scenes and evaluation of cloud masks.

- :mod:`~cloudseg.inference.spec`: :class:`MaskRule` (probabilities -> classes) and
  :class:`InferenceSpec` (how a checkpoint runs), torch-free;
- :mod:`~cloudseg.inference.windows`: sliding-window plan and blending weights;
- :mod:`~cloudseg.inference.predictor`: :class:`WindowedPredictor`, a checkpoint run over any
  raster in blended strips;
- :mod:`~cloudseg.inference.predict`: :func:`predict_scene`, a scene to class and probability COGs;
- :mod:`~cloudseg.inference.producers`: the mask producers by name (model, scl, s2cloudless,
  threshold, none), one module each;
- :mod:`~cloudseg.inference.evaluate`: :func:`evaluate_masks` on a labeled split;
- :mod:`~cloudseg.inference.cli`: ``cloudfree-predict`` and ``cloudfree-evaluate-masks``.

Import from the modules: the package itself imports nothing, so the torch-free parts
(:mod:`~cloudseg.inference.spec`, :func:`~cloudseg.inference.producers.producer_names`) load
without torch.
"""
