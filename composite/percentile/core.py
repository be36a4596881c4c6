"""`masked_percentile`: per-pixel q-th percentile of a time stack, excluding masked observations.

Semantics (the reference is numpy on each pixel's valid values):
- An observation (date t at a pixel) is *valid* when it is not excluded and none of its bands
  is `nodata` or NaN. `count` is the number of valid observations per pixel.
- `method="linear"` equals `np.nanpercentile` of the valid values of each band (float32 out).
- `method="lower"` / `"nearest"` equal `np.percentile(valid values, q, method=...)`: an actual
  observation per band, with the date it came from in `index` (the earliest date holding that
  value when several do).
- With `key=` (a band or bands), dates are ranked by the mean of the key bands and the date at
  the q-th percentile (lower/nearest on that ranking, earliest date among equal keys) gives
  *every* band, so a pixel's spectrum is one real observation; `index` holds that date.
- Pixels with no valid observation get `nodata` (`no_valid="nodata"`), or the percentile of
  their observed (non-nodata, non-NaN) dates ignoring the exclusion mask
  (`no_valid="all_observations"`), flagged in `fallback`. Either way `count` is 0 there.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from composite.percentile.kernel import (
    MODE_LINEAR,
    MODE_PICK_BY_DATE,
    MODE_PICK_PER_BAND,
    percentile_tiles,
)
from composite.percentile.layout import flat_view
from composite.percentile.ranks import METHODS, rank_table

__all__ = ["NO_VALID_POLICIES", "PercentileResult", "masked_percentile"]

NO_VALID_POLICIES = ("nodata", "all_observations")
STACK_DTYPES = (np.dtype(np.uint16), np.dtype(np.float32))
MAX_DATES = int(np.iinfo(np.int16).max)
# Order-key dtypes for (band values, date ranking) of each stack dtype; see order_keys.py.
_KEY_DTYPES = {
    np.dtype(np.uint16): (np.uint16, np.uint32),
    np.dtype(np.float32): (np.uint32, np.uint64),
}


@dataclass(frozen=True)
class PercentileResult:
    """Output of `masked_percentile`; spatial axes are the stack's (y, x), in its order."""

    composite: np.ndarray
    """(q?, band?, y, x): q axis only for a sequence of q, band axis only for a band axis in."""
    count: np.ndarray
    """(y, x) int16: valid observations per pixel."""
    index: np.ndarray | None
    """int16 date index of each picked value, -1 where none: (q?, band?, y, x) for lower/nearest per
    band, (q?, y, x) with `key`; None for linear."""
    fallback: np.ndarray
    """(y, x) bool: pixels with no valid observation filled from all observations."""
    q: tuple[float, ...]
    method: str
    key: tuple[int, ...] | None

    @property
    def n_no_valid(self) -> int:
        """Number of pixels without any valid observation (filled or not)."""
        return int(np.count_nonzero(self.count == 0))

    @property
    def n_fallback(self) -> int:
        """Number of pixels filled by the `all_observations` policy."""
        return int(np.count_nonzero(self.fallback))


def masked_percentile(
    stack: np.ndarray,
    exclude: np.ndarray | None = None,
    q: float | Sequence[float] = 25,
    *,
    method: str = "linear",
    nodata: float | None = 0,
    time_axis: int = 0,
    band_axis: int | None = None,
    key: int | Sequence[int] | None = None,
    no_valid: str = "nodata",
    out_dtype: np.dtype | type | None = None,
    tile_pixels: int | None = None,
) -> PercentileResult:
    """Per-pixel q-th percentile over time of the valid observations of `stack`.

    stack: uint16 or float32, 3-D (time, y, x) or 4-D with a band axis, in any axis order
        (time_axis / band_axis say where; the other two axes are y, x in their order). Views
        (windows, transposes) are read in place, never copied.
    exclude: bool mask with the stack's axes minus the band axis (True = cloud, shadow, ...),
        or None to exclude nothing.
    q: percentile(s) in [0, 100]; a sequence adds a leading q axis to the outputs.
    method: "linear" (float32, as np.nanpercentile), "lower" or "nearest" (observations).
    nodata: value marking missing data in any band (and filling pixels without a result); None
        when no value is missing data (float outputs are then filled with NaN).
    band_axis: required for a 4-D stack whose time axis is not 0 (default there: axis 1).
    key: band index or indices: pick one date per pixel by the mean of these bands (requires
        method "lower" or "nearest").
    no_valid: "nodata" or "all_observations" (see the module docstring).
    out_dtype: None (float32 for linear, the stack dtype for picks), np.float32, or np.uint16
        for a uint16 stack (linear values are then rounded half to even).
    tile_pixels: pixels per parallel work item (default from the number of dates); a
        performance knob, results do not depend on it.
    """
    _check_stack(stack)
    time_axis, band_axis = _stack_axes(stack, time_axis, band_axis)
    stack4 = _as_time_band_y_x(stack, time_axis, band_axis)
    _check_dates(stack4.shape[0])
    n_bands = stack4.shape[1]
    exclude3 = _as_time_y_x(exclude, stack.shape, time_axis, band_axis)
    q_values = _check_q(q)
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; use one of {METHODS}")
    key_bands = _check_key(key, method, n_bands)
    if no_valid not in NO_VALID_POLICIES:
        raise ValueError(f"no_valid={no_valid!r} is not a policy; use one of {NO_VALID_POLICIES}")
    if tile_pixels is not None and (
        not isinstance(tile_pixels, int | np.integer) or tile_pixels < 1
    ):
        raise ValueError(f"tile_pixels must be None or a positive int, got {tile_pixels!r}")
    out_dtype = _check_out_dtype(out_dtype, stack.dtype, method)
    fill = _fill_value(nodata, out_dtype)
    _typed_nodata(nodata, stack.dtype)  # checks it before any work

    mode = MODE_LINEAR if method == "linear" else MODE_PICK_PER_BAND
    if key_bands is not None:
        mode = MODE_PICK_BY_DATE
    values, index, count, fallback = _run_kernel(
        stack4, exclude3, q_values, method, mode, key_bands, nodata, no_valid, tile_pixels
    )
    composite = _convert(values, out_dtype)
    nothing_to_rank = (count == 0) & ~fallback
    if nothing_to_rank.any():
        composite[..., nothing_to_rank] = fill
    if index is not None and (mode == MODE_PICK_BY_DATE or stack.ndim == 3):
        index = index[:, 0]  # one date per pixel, or a stack without a band axis
    if stack.ndim == 3:
        composite = composite[:, 0]
    if np.ndim(q) == 0:
        composite = composite[0]
        index = None if index is None else index[0]
    return PercentileResult(
        composite=composite,
        count=count,
        index=index,
        fallback=fallback,
        q=tuple(float(v) for v in q_values),
        method=method,
        key=key_bands,
    )


def _run_kernel(stack4, exclude3, q_values, method, mode, key_bands, nodata, no_valid, tile_pixels):
    """Allocate the outputs, run `percentile_tiles`, return them as (q, band, y, x) values
    (float32 for linear, stack-typed picks), (q, band or 1, y, x) index or None, and (y, x)
    count and fallback. Pixels with nothing to rank hold 0 (index -1)."""
    n_dates, n_bands, height, width = stack4.shape
    n_q, n_pixels = len(q_values), height * width
    table = rank_table(q_values, n_dates, method, rank_dtype=np.int16)
    nodata_typed, check_nodata = _typed_nodata(nodata, stack4.dtype)
    key_dtype, date_key_dtype = _KEY_DTYPES[stack4.dtype]
    index_planes = 1 if mode == MODE_PICK_BY_DATE else n_bands
    linear = mode == MODE_LINEAR
    empty = (0, 0, 0)
    out_values = np.empty((n_q, n_bands, n_pixels) if linear else empty, np.float32)
    out_picks = np.empty(empty if linear else (n_q, n_bands, n_pixels), stack4.dtype)
    out_index = np.empty(empty if linear else (n_q, index_planes, n_pixels), np.int16)
    out_count = np.empty(n_pixels, np.int16)
    out_fallback = np.empty(n_pixels, np.bool_)
    stack_flat, stack_layout = flat_view(stack4)
    exclude_flat, exclude_layout = flat_view(exclude3[:, None])
    exclude_layout[2] = 0  # the mask's (size 1) band axis
    percentile_tiles(
        stack_flat, stack_layout, exclude_flat, exclude_layout, n_bands, width, nodata_typed,
        check_nodata, table.lower, table.upper, table.weight, mode,
        np.asarray(key_bands or (0,), np.int64), no_valid == "all_observations",
        np.empty(0, key_dtype), np.empty(0, date_key_dtype),
        tile_pixels or _default_tile_pixels(n_dates),
        out_values, out_picks, out_index, out_count, out_fallback,
    )  # fmt: skip
    values = (out_values if linear else out_picks).reshape(n_q, n_bands, height, width)
    index = None if linear else out_index.reshape(n_q, index_planes, height, width)
    return values, index, out_count.reshape(height, width), out_fallback.reshape(height, width)


def _default_tile_pixels(n_dates: int) -> int:
    """Pixels per tile: wide tiles amortise the per-row loop overhead of the vectorised passes
    (measured best at 512-1024 for 30-300 dates) while the (date, pixel) key buffer stays
    within a core's L2 cache (about 256 K keys)."""
    return int(np.clip(2 ** int(np.log2(2**18 / n_dates)), 256, 1024))


def _check_stack(stack) -> None:
    if not isinstance(stack, np.ndarray):
        raise TypeError(
            f"stack must be a numpy array, got {type(stack).__name__}; load the window first "
            "(e.g. .values / .compute() / np.asarray)"
        )
    if stack.dtype not in STACK_DTYPES:
        raise TypeError(
            f"stack dtype {stack.dtype} is not supported; use uint16 (DN) or float32 "
            "(e.g. stack.astype(np.float32))"
        )
    if stack.ndim not in (3, 4):
        raise ValueError(
            f"stack must be 3-D (time, y, x) or 4-D (time, band, y, x), got shape {stack.shape}"
        )
    if 0 in stack.shape:
        raise ValueError(f"stack has an empty axis: shape {stack.shape}")


def _check_dates(n_dates: int) -> None:
    if n_dates > MAX_DATES:
        raise ValueError(
            f"{n_dates} dates exceed {MAX_DATES} (counts and date indices are int16); "
            "composite shorter time ranges"
        )


def _stack_axes(stack: np.ndarray, time_axis: int, band_axis: int | None) -> tuple[int, int | None]:
    """Normalised (time_axis, band_axis), checked against the stack's dimensions."""
    ndim = stack.ndim
    time_axis = _normalise_axis(time_axis, ndim, "time_axis")
    if ndim == 3:
        if band_axis is not None:
            raise ValueError(f"band_axis={band_axis} given for a 3-D stack {stack.shape}; omit it")
        return time_axis, None
    if band_axis is None:
        if time_axis != 0:
            raise ValueError(
                f"a 4-D stack {stack.shape} with time_axis={time_axis} needs band_axis= too"
            )
        band_axis = 1
    band_axis = _normalise_axis(band_axis, ndim, "band_axis")
    if band_axis == time_axis:
        raise ValueError(f"time_axis and band_axis are both {time_axis}")
    return time_axis, band_axis


def _normalise_axis(axis: int, ndim: int, name: str) -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {axis!r}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for a {ndim}-D stack")
    return axis % ndim


def _as_time_band_y_x(stack: np.ndarray, time_axis: int, band_axis: int | None) -> np.ndarray:
    """A (time, band, y, x) view of the stack (band of size 1 when it has none); no copy."""
    if band_axis is None:
        y_axis, x_axis = (a for a in range(3) if a != time_axis)
        return np.moveaxis(stack, (time_axis, y_axis, x_axis), (0, 1, 2))[:, None]
    y_axis, x_axis = (a for a in range(4) if a not in (time_axis, band_axis))
    return np.moveaxis(stack, (time_axis, band_axis, y_axis, x_axis), (0, 1, 2, 3))


def _as_time_y_x(
    exclude, stack_shape: tuple[int, ...], time_axis: int, band_axis: int | None
) -> np.ndarray:
    """The exclusion mask as a (time, y, x) view; all False when None."""
    mask_axes = [a for a in range(len(stack_shape)) if a != band_axis]
    expected = tuple(stack_shape[a] for a in mask_axes)
    mask_time_axis = mask_axes.index(time_axis)
    if exclude is None:
        exclude = np.zeros(expected, np.bool_)
    if not isinstance(exclude, np.ndarray) or exclude.dtype != np.bool_:
        kind = exclude.dtype if isinstance(exclude, np.ndarray) else type(exclude).__name__
        raise TypeError(f"exclude must be a bool numpy array, got {kind}; e.g. pass mask != 0")
    if exclude.shape != expected:
        raise ValueError(
            f"exclude has shape {exclude.shape}, expected {expected} "
            f"(the stack {stack_shape} without its band axis)"
        )
    y_axis, x_axis = (a for a in range(3) if a != mask_time_axis)
    return np.moveaxis(exclude, (mask_time_axis, y_axis, x_axis), (0, 1, 2))


def _check_q(q) -> np.ndarray:
    values = np.asarray(q, dtype=np.float64)
    if values.ndim > 1 or values.size == 0:
        raise ValueError(f"q must be a number or a 1-D sequence of numbers, got {q!r}")
    values = values.reshape(-1)
    if not np.all((values >= 0) & (values <= 100)):
        raise ValueError(f"q must lie in [0, 100], got {q!r}")
    return values


def _check_key(key, method: str, n_bands: int) -> tuple[int, ...] | None:
    if key is None:
        return None
    if method == "linear":
        raise ValueError(
            "key= picks one date per pixel, which needs method='lower' or 'nearest', not 'linear'"
        )
    bands = (key,) if np.ndim(key) == 0 else tuple(key)
    if not bands:
        raise ValueError("key must name at least one band")
    checked = []
    for band in bands:
        try:
            band = operator.index(band)
        except TypeError:
            raise TypeError(f"key band {band!r} must be an int band index") from None
        if not -n_bands <= band < n_bands:
            raise ValueError(f"key band {band} is out of range for {n_bands} bands")
        checked.append(band % n_bands)
    return tuple(checked)


def _check_out_dtype(out_dtype, stack_dtype: np.dtype, method: str) -> np.dtype:
    if out_dtype is None:
        return np.dtype(np.float32) if method == "linear" else stack_dtype
    out_dtype = np.dtype(out_dtype)
    if out_dtype == np.float32 or (out_dtype == np.uint16 and stack_dtype == np.uint16):
        return out_dtype
    raise ValueError(
        f"out_dtype={out_dtype} is not supported for a {stack_dtype} stack; use None, "
        "np.float32, or np.uint16 (uint16 stacks only)"
    )


def _fill_value(nodata, out_dtype: np.dtype):
    """Value for pixels with nothing to rank: nodata, or NaN for float outputs without it."""
    if nodata is not None:
        return nodata
    if out_dtype == np.float32:
        return np.nan
    raise ValueError(
        "nodata=None leaves no value for pixels without observations in a uint16 composite; "
        "pass nodata=<DN> or out_dtype=np.float32"
    )


def _typed_nodata(nodata, stack_dtype: np.dtype):
    """(nodata as the stack's scalar type, whether to compare values with it)."""
    if nodata is None:
        return stack_dtype.type(0), False
    if stack_dtype == np.uint16:
        if not (float(nodata).is_integer() and 0 <= nodata <= np.iinfo(np.uint16).max):
            raise ValueError(f"nodata={nodata!r} is not a uint16 value; use e.g. nodata=0")
        return np.uint16(nodata), True
    value = np.float32(nodata)
    return value, not np.isnan(value)  # NaN is excluded as NaN anyway


def _convert(values: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    if values.dtype == out_dtype:
        return values
    if out_dtype == np.uint16:  # linear values of a uint16 stack
        info = np.iinfo(np.uint16)
        return np.clip(np.rint(values), info.min, info.max).astype(np.uint16)
    return values.astype(out_dtype)
