"""A cloud mask for every scene of a stack, cached, and the exclusion mask a composite window uses.

Mask sources (``MaskSettings.source``):

- ``model``: the trained checkpoint, run on the whole scene exactly as ``cloudfree-predict`` runs
  it (:func:`cloudseg.inference.predict.predict_scene`: class and probability COGs);
- ``scl``: the L2A scene classification; ``s2cloudless``: Sentinel Hub's detector (needs the 10
  L1C bands it was trained on), both through :mod:`cloudseg.inference.baselines`;
- ``none``: no mask, every observation with data counts (the plain percentile).

Masks are class rasters (codes of :mod:`cloudseg.labels`, 255 = no prediction) on each scene's own
grid, cached as ``<cache_dir>/<mask key>/<scene id>-<fingerprint>.tif``. The mask key names what
made the mask: ``<checkpoint sha256[:16]>-<inference options digest>`` for the model (the digest
covers every option that changes the classes, ``cloud_threshold`` and ``clear_threshold``
included), ``scl`` or ``s2cloudless``; the scene fingerprint changes when the scene's files
change. A cached mask is reused as it is; masks are written atomically, so a killed run leaves no
half mask behind.

:func:`exclusion_window` turns a mask into the composite's exclusion for one window of the output
grid: the excluded classes (default thick cloud, thin cloud, cloud shadow), grown by
``buffer_m`` metres (a disk), plus pixels without prediction. The mask is read with a halo of the
buffer's width, so a cloud just outside a window still grows into it: windows never seam.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window
from scipy.ndimage import binary_dilation

from cloudseg.labels import CLASS_NAMES, DEFAULT_EXCLUDED, IGNORE_INDEX, class_codes
from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid, reproject_nearest
from cloudseg.sentinel2.reader import aligned_window, read_padded
from cloudseg.sentinel2.sources import SceneError
from composite.cluster import Executor
from composite.stack import Stack, StackScene

if TYPE_CHECKING:  # torch, lightning and s2cloudless load only when a mask source needs them
    from cloudseg.inference.baselines import S2CloudlessProducer, SCLProducer
    from cloudseg.inference.predictor import InferenceOptions, WindowedPredictor

log = logging.getLogger(__name__)

MASK_SOURCES: tuple[str, ...] = ("model", "scl", "s2cloudless", "none")
#: Errors of reading one scene; anything else is a bug or a configuration error and propagates.
READ_ERRORS: tuple[type[Exception], ...] = (SceneError, RasterioError)
CHUNK_BYTES = 1 << 20
#: Class raster value where a mask makes no prediction (no data, saturated...).
CLASS_NODATA = IGNORE_INDEX


@dataclass(frozen=True)
class InferenceSettings:
    """How the checkpoint runs over a scene (see :class:`InferenceOptions`).

    ``resolution`` (metres) runs the model on a coarser grid and upsamples its probabilities;
    ``cloud_threshold`` classifies cloud where p(thick) + p(thin) reaches it (``None``: argmax);
    ``clear_threshold`` then keeps a pixel clear only where p(clear) reaches it (``None``: no
    such rule; see :mod:`cloudseg.inference.predict` for how the two combine).
    """

    resolution: float | None = None
    cloud_threshold: float | None = None
    clear_threshold: float | None = None
    window_size: int | None = None
    overlap: int | None = None
    batch_size: int = 8
    device: str = "auto"
    amp: bool = True
    flips: bool = False

    def __post_init__(self) -> None:
        if self.cloud_threshold is None and self.clear_threshold is None:
            return  # no need to load torch to check nothing
        from cloudseg.inference.predict import check_thresholds

        try:
            check_thresholds(self.cloud_threshold, self.clear_threshold)
        except ValueError as err:
            raise ValueError(f"masks.inference: {err}") from err

    def options(self, progress: bool) -> InferenceOptions:
        from cloudseg.inference.predictor import InferenceOptions

        return InferenceOptions(
            window_size=self.window_size,
            overlap=self.overlap,
            batch_size=self.batch_size,
            device=self.device,
            amp=self.amp,
            flips=self.flips,
            progress=progress,
        )

    def digest(self) -> str:
        """Short hash of the options that change the mask (not device, batch size or AMP)."""
        relevant = {
            "resolution": self.resolution,
            "cloud_threshold": self.cloud_threshold,
            "window_size": self.window_size,
            "overlap": self.overlap,
            "flips": self.flips,
        }
        if self.clear_threshold is not None:  # absent when unset: older cached masks stay valid
            relevant["clear_threshold"] = self.clear_threshold
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class MaskSettings:
    """Where masks come from and what they exclude. ``checkpoint`` is needed for ``model``."""

    source: str = "model"
    exclude: tuple[str, ...] = DEFAULT_EXCLUDED
    buffer_m: float = 0.0
    cache_dir: str = "outputs/cache/masks"
    checkpoint: str | None = None
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def __post_init__(self) -> None:
        if self.source not in MASK_SOURCES:
            raise ValueError(
                f"masks.source={self.source!r} is not a mask source; use one of {list(MASK_SOURCES)}."
            )
        object.__setattr__(self, "exclude", tuple(self.exclude))
        try:
            class_codes(self.exclude)
        except ValueError as err:
            raise ValueError(f"masks.exclude: {err}") from err
        if "clear" in self.exclude:
            raise ValueError("masks.exclude lists 'clear': that would exclude every observation.")
        if self.buffer_m < 0:
            raise ValueError(f"masks.buffer_m={self.buffer_m} must be >= 0 (metres).")
        if self.source == "model" and not self.checkpoint:
            raise ValueError(
                "masks.source=model needs a checkpoint: pass ckpt=/path/to/best.ckpt (or use "
                "masks.source=scl|s2cloudless|none)."
            )

    @property
    def exclude_codes(self) -> tuple[int, ...]:
        return tuple(class_codes(self.exclude))


@dataclass(frozen=True)
class MaskSet:
    """The masks of a stack: one class COG per scene id (empty for source ``none``)."""

    source: str
    key: str
    paths: dict[str, str]
    exclude_codes: tuple[int, ...]
    buffer_m: float
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    computed: int = 0
    reused: int = 0

    def record(self) -> dict:
        """JSON-ready description (for the run JSON)."""
        return {
            "source": self.source,
            "key": self.key,
            "exclude": [CLASS_NAMES[code] for code in self.exclude_codes],
            "buffer_m": self.buffer_m,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "computed": self.computed,
            "reused": self.reused,
            "paths": dict(self.paths),
        }


@dataclass(frozen=True)
class MaskTask:
    """One scene's mask to make (sent to a worker)."""

    scene: StackScene
    path: str


@dataclass(frozen=True)
class MaskOutcome:
    scene_id: str
    path: str
    error: str | None = None


# -- cache keys --------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def mask_key(settings: MaskSettings, checkpoint_sha256: str | None) -> str:
    """The cache folder name for masks made by ``settings`` (see the module docstring)."""
    if settings.source == "model":
        return f"{checkpoint_sha256[:16]}-{settings.inference.digest()}"
    return settings.source


def mask_path(cache_dir: Path, key: str, scene: StackScene) -> Path:
    return cache_dir / key / f"{scene.scene_id}-{scene.fingerprint[:12]}.tif"


# -- making masks ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_predictor(
    checkpoint: str, inference: InferenceSettings, progress: bool
) -> WindowedPredictor:
    """The checkpoint's predictor, loaded once per process (workers reuse it across scenes)."""
    from cloudseg.inference.predictor import WindowedPredictor

    return WindowedPredictor.from_checkpoint(checkpoint, inference.options(progress))


def producer_for(source: str) -> SCLProducer | S2CloudlessProducer:
    from cloudseg.inference.baselines import S2CloudlessProducer, SCLProducer

    return SCLProducer() if source == "scl" else S2CloudlessProducer()


def required_bands(settings: MaskSettings) -> tuple[str, ...]:
    """Layers every scene needs for the mask source."""
    if settings.source == "model":
        from cloudseg.checkpoint import read_checkpoint_metadata

        _, metadata = read_checkpoint_metadata(settings.checkpoint)
        return resolve_bands(metadata["bands"])
    if settings.source in ("scl", "s2cloudless"):
        return producer_for(settings.source).required
    return ()


def make_mask(settings: MaskSettings, task: MaskTask, progress: bool = False) -> MaskOutcome:
    """Write one scene's mask COG at ``task.path``; a scene that cannot be read is reported."""
    scene = task.scene
    try:
        with scene.open() as opened:
            if settings.source == "model":
                from cloudseg.inference.predict import predict_scene

                predictor = load_predictor(settings.checkpoint, settings.inference, progress)
                predict_scene(
                    predictor,
                    opened,
                    task.path,
                    Path(task.path).with_suffix(".probabilities.tif"),
                    resolution=settings.inference.resolution,
                    cloud_threshold=settings.inference.cloud_threshold,
                    clear_threshold=settings.inference.clear_threshold,
                    tags={"SCENE_ID": scene.scene_id},
                )
            else:
                classes = producer_for(settings.source).predict(opened)
                write_cog(
                    task.path,
                    classes,
                    opened.grid(),
                    nodata=CLASS_NODATA,
                    band_names=["class"],
                    categorical=True,
                    tags={
                        "SOURCE": scene.source,
                        "SCENE_ID": scene.scene_id,
                        "MASK_SOURCE": settings.source,
                        "CLASSES": " ".join(f"{c}={n}" for c, n in enumerate(CLASS_NAMES)),
                    },
                )
    except READ_ERRORS as err:
        return MaskOutcome(scene.scene_id, task.path, f"{type(err).__name__}: {err}")
    return MaskOutcome(scene.scene_id, task.path)


def prepare_masks(
    stack: Stack, settings: MaskSettings, executor: Executor, *, progress: bool = True
) -> tuple[MaskSet, Stack]:
    """Make (or reuse) the mask of every scene; scenes whose mask fails to read are skipped.

    Returns the masks and the stack without the scenes that could not be read (logged).
    """
    if settings.source == "none":
        return MaskSet("none", "none", {}, settings.exclude_codes, settings.buffer_m), stack
    checkpoint_sha256 = None
    if settings.source == "model":
        from cloudseg.checkpoint import require_checkpoint_file

        checkpoint_sha256 = file_sha256(require_checkpoint_file(settings.checkpoint, "ckpt"))
    _check_bands(stack, settings)
    key = mask_key(settings, checkpoint_sha256)
    cache_dir = Path(settings.cache_dir)
    paths = {scene.scene_id: mask_path(cache_dir, key, scene) for scene in stack.scenes}
    todo = [
        MaskTask(scene, str(paths[scene.scene_id]))
        for scene in stack.scenes
        if not paths[scene.scene_id].is_file()
    ]
    reused = len(stack) - len(todo)
    log.info(
        "Masks (%s) in %s: %d cached, %d to make.",
        settings.source,
        cache_dir / key,
        reused,
        len(todo),
    )
    failed: dict[str, str] = {}
    worker = functools.partial(make_mask, progress=progress and executor.in_process)
    for outcome in executor.map(
        worker, settings, todo, desc=f"masks ({settings.source})", progress=progress
    ):
        if outcome.error is not None:
            log.warning("Skipping scene %s: its mask failed: %s", outcome.scene_id, outcome.error)
            failed[outcome.scene_id] = outcome.error
    if failed:
        stack = stack.without(failed, "unreadable while making its mask")
        if not stack.scenes:
            raise ValueError(f"Every scene failed while making masks: {failed}")
    masks = MaskSet(
        source=settings.source,
        key=key,
        paths={sid: str(path) for sid, path in paths.items() if sid not in failed},
        exclude_codes=settings.exclude_codes,
        buffer_m=settings.buffer_m,
        checkpoint=str(settings.checkpoint) if settings.checkpoint else None,
        checkpoint_sha256=checkpoint_sha256,
        computed=len(todo) - len(failed),
        reused=reused,
    )
    return masks, stack


def _check_bands(stack: Stack, settings: MaskSettings) -> None:
    """Every scene must have what the mask source needs: a configuration error, not a skip."""
    needed = required_bands(settings)
    lacking = {
        scene.scene_id: [band for band in needed if band not in scene.bands]
        for scene in stack.scenes
    }
    lacking = {sid: bands for sid, bands in lacking.items() if bands}
    if lacking:
        first = next(iter(lacking.items()))
        source = settings.source
        if source == "model":
            source = f"model (checkpoint {settings.checkpoint}, trained on these bands)"
        raise ValueError(
            f"masks.source={source} needs {list(needed)}, but {len(lacking)} of "
            f"{len(stack)} scenes lack some (e.g. {first[0]} lacks {first[1]}). Use a source the "
            "stack supports (scl needs L2A SCL, s2cloudless needs the L1C bands incl. B10, the "
            "model needs its training bands) or masks.source=none."
        )


# -- exclusion for one window ------------------------------------------------------------------


def buffer_pixels(buffer_m: float, resolution: float) -> float:
    """The buffer radius in pixels of the output grid."""
    return buffer_m / resolution


def disk(radius: float) -> np.ndarray:
    """Boolean disk footprint: offsets (dy, dx) with dy^2 + dx^2 <= radius^2."""
    half = math.floor(radius)
    offsets = np.arange(-half, half + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def read_classes(path: str | Path, grid: Grid) -> np.ndarray:
    """A class raster on ``grid``: a plain read where aligned, else a nearest-neighbour warp
    (:func:`~cloudseg.sentinel2.grid.reproject_nearest`). Pixels outside the raster are
    ``CLASS_NODATA``.
    """
    with rasterio.open(path) as dataset:
        source_grid = Grid.from_dataset(dataset)
        window = aligned_window(source_grid, grid)
        if window is not None:
            return read_padded(dataset, 1, window, fill=CLASS_NODATA)
        return reproject_nearest(rasterio.band(dataset, 1), source_grid, grid, CLASS_NODATA)


def exclusion_window(
    path: str | Path,
    grid: Grid,
    window: Window,
    exclude_codes: Sequence[int],
    buffer_m: float = 0.0,
) -> np.ndarray:
    """Boolean ``(h, w)``: True where the mask excludes the observation in ``window`` of ``grid``.

    Excluded: the ``exclude_codes`` classes grown by a ``buffer_m`` disk, and pixels without
    prediction. The mask is read with a halo of the buffer's width, so the result equals the
    same region of the whole grid's exclusion.
    """
    radius = buffer_pixels(buffer_m, grid.resolution)
    halo = math.floor(radius)
    height, width = int(window.height), int(window.width)
    read_window = Window(
        window.col_off - halo, window.row_off - halo, width + 2 * halo, height + 2 * halo
    )
    classes = read_classes(path, grid.window_grid(read_window))
    excluded = np.isin(classes, np.asarray(exclude_codes, dtype=classes.dtype))
    if halo:
        excluded = binary_dilation(excluded, structure=disk(radius))
    excluded |= classes == CLASS_NODATA
    return excluded[halo : halo + height, halo : halo + width]
