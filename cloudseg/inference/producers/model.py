"""``model``: the trained checkpoint, run over the whole scene as ``cloudfree-predict`` runs it
(:func:`cloudseg.inference.predict.predict_scene`: a class and a probability COG).

Its options are the checkpoint and the :class:`~cloudseg.inference.spec.InferenceSpec`; its
cache key is ``<checkpoint sha256[:16]>-<spec digest>`` (the digest covers every option that
changes the classes, the rule's thresholds included). The checkpoint is loaded once per process
(workers reuse it across scenes).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from cloudseg.checkpoint import read_checkpoint_metadata, require_checkpoint_file
from cloudseg.digests import file_digest
from cloudseg.inference.predict import output_paths, predict_scene
from cloudseg.inference.predictor import WindowedPredictor
from cloudseg.inference.producers.base import MaskProducer
from cloudseg.inference.spec import InferenceSpec
from cloudseg.sentinel2.bands import resolve_bands


@functools.lru_cache(maxsize=2)
def load_predictor(
    checkpoint: str, spec: InferenceSpec, progress: bool, key: str = "ckpt"
) -> WindowedPredictor:
    """The checkpoint's predictor, loaded once per process (errors name the option ``key``)."""
    return WindowedPredictor.from_checkpoint(checkpoint, spec, progress=progress, key=key)


@dataclass(frozen=True)
class ModelProducer(MaskProducer):
    name = "model"

    checkpoint: str
    inference: InferenceSpec = InferenceSpec()
    #: The option that gave the checkpoint, for error messages (``ckpt``, ``--checkpoint``).
    checkpoint_key: str = field(default="ckpt", compare=False)

    @classmethod
    def create(
        cls, *, checkpoint: str | None, inference: InferenceSpec, **options: Any
    ) -> ModelProducer:
        if not checkpoint:
            raise ValueError(
                "The model mask producer needs a checkpoint: pass ckpt=/path/to/best.ckpt to "
                "composite.py (--checkpoint PATH to cloudfree-evaluate-masks), or use another "
                "mask source (scl, s2cloudless, threshold, none)."
            )
        unknown = sorted(set(options) - {"checkpoint_key"})
        if unknown:
            raise ValueError(
                f"The model mask producer has no options {unknown}; set how it runs with the "
                "inference spec (resolution, window_size, rule...)."
            )
        key = options.get("checkpoint_key", "ckpt")
        return cls(str(require_checkpoint_file(checkpoint, key)), inference, key)

    @cached_property
    def required_bands(self) -> tuple[str, ...]:
        """The bands the checkpoint was trained on (its metadata; the weights are not loaded)."""
        _, metadata = read_checkpoint_metadata(self.checkpoint, key=self.checkpoint_key)
        return resolve_bands(metadata["bands"])

    @cached_property
    def checkpoint_sha256(self) -> str:
        return file_digest(self.checkpoint, "sha256")

    def options(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "inference": asdict(self.inference)}

    def cache_key(self) -> str:
        return f"{self.checkpoint_sha256[:16]}-{self.inference.digest()}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "checkpoint_sha256": self.checkpoint_sha256}

    def predictor(self, progress: bool = False) -> WindowedPredictor:
        return load_predictor(self.checkpoint, self.inference, progress, self.checkpoint_key)

    def write(
        self,
        scene,
        path: str | os.PathLike,
        tags: Mapping[str, Any] | None = None,
        *,
        progress: bool = False,
    ) -> Path:
        """The class COG at ``path`` and the probability COG beside it
        (``<name>.probabilities.tif``)."""
        path = Path(path)
        predict_scene(
            self.predictor(progress),
            scene,
            path,
            path.with_suffix(".probabilities.tif"),
            tags=tags,
        )
        return path

    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="cloudfree-mask-") as folder:
            classes_path, _ = output_paths(folder, "scene")
            self.write(scene, classes_path, progress=progress)
            with rasterio.open(classes_path) as dataset:
                return dataset.read(1)


PRODUCER = ModelProducer
