"""What every mask producer is: :class:`MaskProducer`, and the helpers they share."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cloudseg.inference.spec import CLASS_NODATA, InferenceSpec
from cloudseg.labels import CLASS_NAMES
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid


class MaskProducer(ABC):
    """Turns a scene into a class raster on ``scene.grid()``; subclasses are frozen dataclasses
    whose fields are their options (they make the cache key)."""

    #: The registry name: the name of the producer's module.
    name: ClassVar[str] = ""
    #: The classes this producer can output.
    emits: ClassVar[tuple[str, ...]] = CLASS_NAMES
    #: ``False`` for ``none``: a composite then needs no mask files at all.
    makes_masks: ClassVar[bool] = True

    @classmethod
    def create(
        cls, *, checkpoint: str | None, inference: InferenceSpec, **options: Any
    ) -> MaskProducer:
        """The producer with ``options``; ``checkpoint`` and ``inference`` are for producers that
        run a checkpoint and ignored here."""
        fields = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ValueError(
                f"The {cls.name} mask producer has no options {unknown}; it has {fields}."
            )
        return cls(**options)

    @property
    def required_bands(self) -> tuple[str, ...]:
        """Bands or layers every scene must have for this producer."""
        return ()

    def missing(self, bands: Iterable[str]) -> list[str]:
        """The required bands not among ``bands`` (a scene's): empty when the producer applies."""
        available = set(bands)
        return [band for band in self.required_bands if band not in available]

    def options(self) -> dict[str, Any]:
        """The producer's options (JSON-ready)."""
        return dataclasses.asdict(self)

    def cache_key(self) -> str:
        """Folder name of this producer's cached masks: the name, plus a digest of the options."""
        options = self.options()
        if not options:
            return self.name
        text = json.dumps(options, sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    @property
    def checkpoint_sha256(self) -> str | None:
        """sha256 of the checkpoint the masks come from (``None``: no checkpoint)."""
        return None

    def record(self) -> dict[str, Any]:
        """JSON-ready description (run records)."""
        return {"producer": self.name, "key": self.cache_key(), "options": self.options()}

    @abstractmethod
    def predict(self, scene, *, progress: bool = False) -> np.ndarray:
        """uint8 class codes on ``scene.grid()``, ``CLASS_NODATA`` where there is no prediction."""

    def write(
        self,
        scene,
        path: str | os.PathLike,
        tags: Mapping[str, Any] | None = None,
        *,
        progress: bool = False,
    ) -> Path:
        """Write the scene's mask as a class COG at ``path`` (atomically)."""
        return write_mask(
            path,
            self.predict(scene, progress=progress),
            scene.grid(),
            {"SOURCE": scene.source, **(tags or {}), "MASK_SOURCE": self.name},
        )


def write_mask(
    path: str | os.PathLike, classes: np.ndarray, grid: Grid, tags: Mapping[str, Any]
) -> Path:
    """A class raster as a COG: band ``class``, nodata ``CLASS_NODATA``, the class codes in the
    ``CLASSES`` tag."""
    return write_cog(
        path,
        classes,
        grid,
        nodata=CLASS_NODATA,
        band_names=["class"],
        categorical=True,
        tags={**tags, "CLASSES": " ".join(f"{c}={n}" for c, n in enumerate(CLASS_NAMES))},
    )


def no_data(scene, bands: Iterable[str]) -> np.ndarray:
    """True where every one of ``bands`` is nodata on ``scene.grid()`` (read one band at a time)."""
    missing = np.ones(scene.grid().shape, dtype=bool)
    for band in bands:
        missing &= scene.read([band])[0] == 0
    return missing


def lacking_bands(producer: MaskProducer, scenes: Iterable[Any]) -> dict[str, list[str]]:
    """``{scene_id: bands it lacks}`` for the ``scenes`` (anything with ``scene_id`` and
    ``bands``) that ``producer`` does not apply to."""
    lacking = {scene.scene_id: producer.missing(scene.bands) for scene in scenes}
    return {scene_id: bands for scene_id, bands in lacking.items() if bands}
