"""A cloud mask for every scene of a stack, cached, and the exclusion mask a composite window uses.

Masks come from the mask producer named by ``MaskSettings.source``, any name of
:mod:`cloudseg.inference.producers` (``model``: the trained checkpoint, run on the whole scene as
``cloudfree-predict`` runs it; ``scl``; ``s2cloudless``; ``threshold``; ``none``: no mask, every
observation with data counts, the plain percentile). The model runs with ``MaskSettings.inference``
(an :class:`~cloudseg.inference.spec.InferenceSpec`), by default :data:`COMPOSITE_INFERENCE`.

Masks are class rasters (codes of :mod:`cloudseg.labels`, 255 = no prediction) on each scene's own
grid, cached as ``<cache_dir>/<producer cache key>/<scene id>-<fingerprint>.tif``. The cache key
names what made the mask (:meth:`~cloudseg.inference.producers.MaskProducer.cache_key`: for the
model ``<checkpoint sha256[:16]>-<inference digest>``, the digest covering every option that
changes the classes, the rule's thresholds included); the scene fingerprint changes when the
content of the scene's files changes (:mod:`composite.stack.fingerprint`). A cached mask is reused
as it is; masks are written atomically, one run at a time per cache key (a second waits, then
reuses them), and what a killed run left half-made is removed by the next.

:func:`exclusion_window` turns a mask into the composite's exclusion for one window of the output
grid: the excluded classes (default thick cloud, thin cloud, cloud shadow), grown by
``buffer_m`` metres (a disk), plus pixels without prediction. The mask is read with a halo of the
buffer's width, so a cloud just outside a window still grows into it: windows never seam.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy.ndimage import binary_dilation

from cloudseg.inference.producers import MaskProducer, build_producer, lacking_bands
from cloudseg.inference.spec import CLASS_NODATA, InferenceSpec, MaskRule
from cloudseg.labels import CLASS_NAMES, DEFAULT_EXCLUDED, class_codes
from cloudseg.run_folder import exclusive_folder, remove_leftovers
from cloudseg.sentinel2.errors import SCENE_READ_ERRORS
from cloudseg.sentinel2.grid import Grid, reproject_nearest
from cloudseg.sentinel2.reader import aligned_window, read_padded
from composite.cluster import Executor
from composite.stack import Stack, StackScene
from composite.temporal import TemporalTest
from composite.temporal_rules import DEFAULT_RULE, TemporalSettings, check_rule

log = logging.getLogger(__name__)

#: How composites run the model: with ~100 dates a missed cloud costs far more than a dropped
#: clear view, so a view counts as clear only where p(clear) >= 0.9 (on the demo's tiles this,
#: against argmax, cut the pixels whose value uses a truly cloudy observation from 0.042/0.053
#: to 0.0072/0.0089); 8 windows per batch, as the demo's composites were made (the batch size
#: moves probabilities by ~1e-7, so it is part of what reproduces a composite bit for bit).
COMPOSITE_INFERENCE = InferenceSpec(batch_size=8, rule=MaskRule(clear_threshold=0.9))


@dataclass(frozen=True)
class MaskSettings:
    """Where masks come from and what they exclude. ``checkpoint`` is needed for ``model``;
    ``producer_options`` gives producers their options by name (``{"ocm": {"weights": ...}}``),
    for the main source and for the baselines alike.

    The producer is built (and its options checked) at construction: :attr:`producer`.
    ``temporal`` is the rule that combines the single-date mask with the multi-temporal test
    (:mod:`composite.temporal_rules`), ``temporal_test`` the test's settings
    (:class:`composite.temporal.TemporalTest`).
    """

    source: str = "model"
    exclude: tuple[str, ...] = DEFAULT_EXCLUDED
    buffer_m: float = 0  # metres; a whole number as the config always gave it (in the run key)
    cache_dir: str = "outputs/cache/masks"
    checkpoint: str | None = None
    inference: InferenceSpec = COMPOSITE_INFERENCE
    producer_options: dict[str, dict] = field(default_factory=dict)
    temporal: str = DEFAULT_RULE
    temporal_test: TemporalTest = field(default_factory=TemporalTest)
    producer: MaskProducer = field(init=False, repr=False, compare=False)

    @property
    def temporal_settings(self) -> TemporalSettings:
        return TemporalSettings(self.temporal, self.temporal_test)

    def __post_init__(self) -> None:
        if isinstance(self.temporal_test, dict):
            object.__setattr__(self, "temporal_test", TemporalTest(**self.temporal_test))
        check_rule(self.temporal)
        object.__setattr__(self, "exclude", tuple(self.exclude))
        try:
            class_codes(self.exclude)
        except ValueError as err:
            raise ValueError(f"masks.exclude: {err}") from err
        if "clear" in self.exclude:
            raise ValueError("masks.exclude lists 'clear': that would exclude every observation.")
        if self.buffer_m < 0:
            raise ValueError(f"masks.buffer_m={self.buffer_m} must be >= 0 (metres).")
        try:
            producer = build_producer(
                self.source,
                checkpoint=self.checkpoint,
                inference=self.inference,
                **dict(self.producer_options.get(self.source) or {}),
            )
        except ValueError as err:
            raise ValueError(f"masks.source={self.source}: {err}") from err
        object.__setattr__(self, "producer", producer)

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


def mask_path(cache_dir: Path, key: str, scene: StackScene) -> Path:
    return cache_dir / key / f"{scene.scene_id}-{scene.fingerprint[:12]}.tif"


# -- making masks ------------------------------------------------------------------------------


def make_mask(producer: MaskProducer, task: MaskTask, progress: bool = False) -> MaskOutcome:
    """Write one scene's mask COG at ``task.path``; a scene that cannot be read is reported."""
    scene = task.scene
    try:
        with scene.open() as opened:
            producer.write(opened, task.path, {"SCENE_ID": scene.scene_id}, progress=progress)
    except SCENE_READ_ERRORS as err:
        return MaskOutcome(scene.scene_id, task.path, f"{type(err).__name__}: {err}")
    return MaskOutcome(scene.scene_id, task.path)


def prepare_masks(
    stack: Stack, settings: MaskSettings, executor: Executor, *, progress: bool = True
) -> tuple[MaskSet, Stack]:
    """Make (or reuse) the mask of every scene; scenes whose mask fails to read are skipped.

    Returns the masks and the stack without the scenes that could not be read (logged).
    """
    producer = settings.producer
    if not producer.makes_masks:
        masks = MaskSet(producer.name, producer.cache_key(), {}, settings.exclude_codes,
                        settings.buffer_m)  # fmt: skip
        return masks, stack
    _check_bands(stack, settings)
    key = producer.cache_key()
    cache_dir = Path(settings.cache_dir)
    paths = {scene.scene_id: mask_path(cache_dir, key, scene) for scene in stack.scenes}
    # One run makes this key's masks at a time (another waits, then reuses them); what a killed
    # run left half-made is removed first.
    with exclusive_folder(cache_dir / key, f"mask cache {cache_dir / key}", wait_s=-1):
        remove_leftovers(cache_dir / key)
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
        # One progress line for the stage (scenes done); no per-scene window/upsample bars under it.
        for outcome in executor.map(
            make_mask, producer, todo, desc=f"masks ({settings.source})", progress=progress
        ):
            if outcome.error is not None:
                log.warning(
                    "Skipping scene %s: its mask failed: %s", outcome.scene_id, outcome.error
                )
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
        checkpoint_sha256=producer.checkpoint_sha256,
        computed=len(todo) - len(failed),
        reused=reused,
    )
    return masks, stack


def _check_bands(stack: Stack, settings: MaskSettings) -> None:
    """Every scene must have what the mask source needs: a configuration error, not a skip."""
    producer = settings.producer
    lacking = lacking_bands(producer, stack.scenes)
    if lacking:
        first = next(iter(lacking.items()))
        source = settings.source
        if settings.checkpoint and source == "model":
            source = f"model (checkpoint {settings.checkpoint}, trained on these bands)"
        raise ValueError(
            f"masks.source={source} needs {list(producer.required_bands)}, but {len(lacking)} of "
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
