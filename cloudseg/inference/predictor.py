"""Run a segmentation checkpoint over rasters of any size, window by window, with seamless blending.

:class:`WindowedPredictor` owns the model and everything the checkpoint says about its input
(bands, normalisation, classes). It reads windows lazily through a callback, runs them in batches
(AMP on CUDA, optional flip test-time augmentation), blends overlapping windows with the weights
of :mod:`cloudseg.inference.windows`, and yields the result in horizontal strips whose rows are
final, so memory stays at one strip of windows whatever the raster's height.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn
from tqdm.auto import tqdm

from cloudseg.checkpoint import load_checkpoint
from cloudseg.data.normalization import normalize
from cloudseg.inference.spec import SIZE_MULTIPLE, InferenceSpec
from cloudseg.inference.windows import WindowPlan
from cloudseg.labels import CLASS_NAMES
from cloudseg.sentinel2.bands import resolve_bands

#: Default batch: windows totalling this many pixels (small windows batch more).
BATCH_PIXELS = 8 * 256 * 256

#: ``read_window(window) -> (bands, h, w)`` float32 reflectance, NaN where there is no data.
WindowReader = Callable[[Window], np.ndarray]


@dataclass(frozen=True)
class ProbabilityStrip:
    """Final blended probabilities for rows ``row_start .. row_start + rows`` of a raster.

    ``probabilities`` is ``(classes, rows, width)`` float32; ``valid`` ``(rows, width)`` is
    True where the input had data (see :meth:`WindowedPredictor.probability_strips`); elsewhere
    the probabilities mean nothing.
    """

    row_start: int
    probabilities: np.ndarray
    valid: np.ndarray

    @property
    def rows(self) -> int:
        return self.valid.shape[0]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalization_for(normalization: dict[str, Any], bands: Sequence[str]) -> dict[str, Any]:
    """The checkpoint's normalisation statistics for ``bands``, in that order."""
    stored = list(resolve_bands(normalization["bands"]))
    missing = [band for band in bands if band not in stored]
    if missing:
        raise ValueError(
            f"The checkpoint's normalisation has no statistics for bands {missing} "
            f"(it has {stored}); the checkpoint is inconsistent, retrain it."
        )
    order = [stored.index(band) for band in bands]
    return {
        "bands": list(bands),
        "mean": [float(normalization["mean"][i]) for i in order],
        "std": [float(normalization["std"][i]) for i in order],
    }


class _BlendBuffer:
    """Weighted sums of window probabilities over the rows of a raster not finished yet."""

    def __init__(self, num_classes: int, width: int) -> None:
        self.first_row = 0
        self.weighted = np.zeros((num_classes, 0, width), dtype=np.float32)
        self.weight = np.zeros((0, width), dtype=np.float32)
        self.valid = np.zeros((0, width), dtype=bool)

    def add(
        self, window: Window, probabilities: np.ndarray, weight: np.ndarray, valid: np.ndarray
    ) -> None:
        """Add one window's probabilities ``(classes, h, w)`` with its blending ``weight``."""
        stop = window.row_off + window.height - self.first_row
        if stop > self.weight.shape[0]:
            self._grow(stop - self.weight.shape[0])
        rows = slice(window.row_off - self.first_row, stop)
        cols = slice(window.col_off, window.col_off + window.width)
        self.weighted[:, rows, cols] += probabilities * weight
        self.weight[rows, cols] += weight
        self.valid[rows, cols] |= valid

    def _grow(self, rows: int) -> None:
        width = self.weight.shape[1]
        self.weighted = np.concatenate(
            [self.weighted, np.zeros((self.weighted.shape[0], rows, width), np.float32)], axis=1
        )
        self.weight = np.concatenate([self.weight, np.zeros((rows, width), np.float32)])
        self.valid = np.concatenate([self.valid, np.zeros((rows, width), bool)])

    def pop_until(self, stop: int) -> ProbabilityStrip:
        """The blended rows ``first_row .. stop`` (no later window may touch them)."""
        done = stop - self.first_row
        strip = ProbabilityStrip(
            self.first_row,
            self.weighted[:, :done] / self.weight[:done],
            self.valid[:done].copy(),
        )
        self.weighted = self.weighted[:, done:]
        self.weight = self.weight[done:]
        self.valid = self.valid[done:]
        self.first_row = stop
        return strip


class WindowedPredictor:
    """A model plus its checkpoint metadata, applied to arbitrarily large rasters.

    ``meta`` is the checkpoint's metadata: ``bands`` (model input order), ``normalization``
    (``{"bands", "mean", "std"}`` in reflectance units), ``classes`` (must be ``CLASS_NAMES``)
    and ``patch_size`` (default window size).
    """

    def __init__(
        self,
        model: nn.Module,
        meta: dict[str, Any],
        spec: InferenceSpec | None = None,
        *,
        progress: bool = True,
    ) -> None:
        spec = spec or InferenceSpec()
        self.meta = dict(meta)
        self.bands: tuple[str, ...] = resolve_bands(meta["bands"])
        self.normalization = normalization_for(meta["normalization"], self.bands)
        classes = tuple(meta.get("classes", CLASS_NAMES))
        if classes != CLASS_NAMES:
            raise ValueError(
                f"The checkpoint predicts classes {list(classes)}, but inference writes the "
                f"project's classes {list(CLASS_NAMES)}; retrain or remap the checkpoint's head."
            )
        self.window_size = int(spec.window_size or meta.get("patch_size") or 256)
        if self.window_size % SIZE_MULTIPLE:
            raise ValueError(
                f"window_size {self.window_size} is not a multiple of {SIZE_MULTIPLE} (the ViT "
                f"patch size); use e.g. {SIZE_MULTIPLE * max(1, round(self.window_size / 16))}."
            )
        self.overlap = self.window_size // 4 if spec.overlap is None else int(spec.overlap)
        self.batch_size = spec.batch_size or max(1, BATCH_PIXELS // self.window_size**2)
        self.spec = spec
        self.progress = progress
        self.device = resolve_device(spec.device)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        spec: InferenceSpec | None = None,
        *,
        progress: bool = True,
        key: str = "ckpt",
    ) -> WindowedPredictor:
        """Load a checkpoint written by training (:func:`cloudseg.checkpoint.load_checkpoint`);
        errors name the option that gave ``path`` as ``key``."""
        model, meta = load_checkpoint(path, map_location="cpu", key=key)
        predictor = cls(model, meta, spec, progress=progress)
        predictor.meta.setdefault("checkpoint", str(path))
        return predictor

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES)

    def plan(self, height: int, width: int) -> WindowPlan:
        return WindowPlan(height, width, self.window_size, self.overlap)

    # -- one batch ---------------------------------------------------------------------------

    def predict_windows(self, reflectance: np.ndarray) -> np.ndarray:
        """Class probabilities ``(B, classes, h, w)`` for a batch ``(B, bands, h, w)`` of windows.

        Input is reflectance with NaN nodata; it is normalised with the checkpoint's statistics
        (nodata -> 0) and zero-padded at the bottom/right to a multiple of 16.
        """
        if reflectance.ndim != 4 or reflectance.shape[1] != len(self.bands):
            raise ValueError(
                f"Expected windows (batch, {len(self.bands)} bands {list(self.bands)}, h, w), "
                f"got shape {reflectance.shape}."
            )
        height, width = reflectance.shape[-2:]
        normalized = np.stack([normalize(window, self.normalization) for window in reflectance])
        pad_h = -height % SIZE_MULTIPLE
        pad_w = -width % SIZE_MULTIPLE
        if pad_h or pad_w:
            normalized = np.pad(normalized, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
        inputs = torch.from_numpy(np.ascontiguousarray(normalized, dtype=np.float32))
        probabilities = self._forward(inputs.to(self.device))
        return probabilities[:, :, :height, :width].cpu().numpy()

    @torch.inference_mode()
    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (float32), averaged over flips when ``options.flips``."""
        flip_dims: Sequence[tuple[int, ...]] = ((),)
        if self.spec.flips:
            flip_dims = ((), (-1,), (-2,))
        total = None
        for dims in flip_dims:
            flipped = torch.flip(inputs, dims) if dims else inputs
            with self._autocast():
                logits = self.model(flipped)
            probabilities = torch.softmax(logits.float(), dim=1)
            if dims:
                probabilities = torch.flip(probabilities, dims)
            total = probabilities if total is None else total + probabilities
        return total / len(flip_dims)

    def _autocast(self):
        enabled = self.spec.amp and self.device.type == "cuda"
        dtype = torch.float16
        if enabled and torch.cuda.is_bf16_supported():
            dtype = torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=enabled)

    # -- a whole raster ----------------------------------------------------------------------

    def probability_strips(
        self,
        read_window: WindowReader,
        height: int,
        width: int,
        *,
        valid_bands: Sequence[int] | None = None,
        desc: str = "predict",
    ) -> Iterator[ProbabilityStrip]:
        """Blend the model's probabilities over a ``height`` x ``width`` raster, strip by strip.

        ``read_window(window)`` must return the reflectance ``(bands, h, w)`` of a window in this
        predictor's band order; it is called once per batch with the window spanning the batch's
        windows, one batch ahead in a background thread (reading overlaps the model). A pixel is
        valid where any of the ``valid_bands`` (indices into :attr:`bands`; default all) is not
        NaN. Strips come top to bottom and together cover every row once.
        """
        plan = self.plan(height, width)
        footprint = list(range(len(self.bands))) if valid_bands is None else list(valid_bands)
        buffer = _BlendBuffer(self.num_classes, width)
        current_strip = 0
        progress = tqdm(total=len(plan), desc=desc, unit="window", disable=not self.progress)
        with progress:
            for strip, batch, reflectance in self._read_batches(plan, read_window):
                if strip != current_strip:
                    yield buffer.pop_until(plan.final_row_stop(current_strip))
                    current_strip = strip
                probabilities = self.predict_windows(reflectance)
                for window, window_input, window_probabilities in zip(
                    batch, reflectance, probabilities, strict=True
                ):
                    has_data = np.isfinite(window_input[footprint]).any(axis=0)
                    buffer.add(window, window_probabilities, plan.weights(window), has_data)
                progress.update(len(batch))
            yield buffer.pop_until(plan.final_row_stop(current_strip))

    def _read_batches(
        self, plan: WindowPlan, read_window: WindowReader
    ) -> Iterator[tuple[int, list[Window], np.ndarray]]:
        """``(strip, windows, reflectance (B, bands, h, w))`` per batch, read one batch ahead."""
        batches = [
            (strip, windows[first : first + self.batch_size])
            for strip in range(plan.num_strips)
            for windows in [plan.strip_windows(strip)]
            for first in range(0, len(windows), self.batch_size)
        ]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-windows") as reader:
            pending = reader.submit(self._read_batch, read_window, batches[0][1])
            for index, (strip, batch) in enumerate(batches):
                reflectance = pending.result()
                if index + 1 < len(batches):
                    pending = reader.submit(self._read_batch, read_window, batches[index + 1][1])
                yield strip, batch, reflectance

    def _read_batch(self, read_window: WindowReader, batch: list[Window]) -> np.ndarray:
        """One read spanning a batch of windows of a strip, cut into the windows."""
        first, last = batch[0], batch[-1]
        span = Window(
            first.col_off, first.row_off, last.col_off + last.width - first.col_off, first.height
        )
        data = np.asarray(read_window(span), dtype=np.float32)
        expected = (len(self.bands), int(span.height), int(span.width))
        if data.shape != expected:
            raise ValueError(
                f"read_window returned shape {data.shape} for {span}; expected {expected} "
                f"(bands {list(self.bands)})."
            )
        offsets = [window.col_off - first.col_off for window in batch]
        return np.stack([data[:, :, col : col + first.width] for col in offsets])

    def predict_array(self, reflectance: np.ndarray, *, desc: str = "predict") -> np.ndarray:
        """Probabilities ``(classes, H, W)`` for an in-memory ``(bands, H, W)`` reflectance array.

        Pixels where every band is NaN come back NaN.
        """
        if reflectance.ndim != 3:
            raise ValueError(f"Expected (bands, H, W) reflectance, got shape {reflectance.shape}.")
        height, width = reflectance.shape[1:]
        output = np.full((self.num_classes, height, width), np.nan, dtype=np.float32)
        for strip in self.probability_strips(
            lambda window: reflectance[(slice(None), *window.toslices())], height, width, desc=desc
        ):
            rows = slice(strip.row_start, strip.row_start + strip.rows)
            output[:, rows] = np.where(strip.valid, strip.probabilities, np.nan)
        return output
