"""Order-preserving unsigned keys, so one integer bisection ranks uint16 and float values alike.

A key is an unsigned integer whose order is the numeric order of the value it stands for:
uint16 values are their own keys; a float32 (float64) value becomes a uint32 (uint64) by the
usual IEEE-754 flip (set the sign bit of positives, invert negatives), after mapping -0.0 to
+0.0 so that equal numbers share one key. NaN has no key: callers exclude it first.

The functions are plain numba functions callable from Python too; the generic names
(`order_key`, `value_of_key`, `date_keys`) resolve at compile time to the variant for
the argument's type, and dispatch on the numpy type when called from Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

__all__ = ["date_keys", "order_key", "value_of_key"]


@njit(cache=True)
def float32_key(value):
    """uint32 key of a float32 (not NaN)."""
    bits = np.float32(value + np.float32(0.0)).view(np.uint32)  # -0.0 + 0.0 is +0.0
    flip = np.uint32(np.int32(bits) >> 31) | np.uint32(0x80000000)
    return bits ^ flip


@njit(cache=True)
def float64_key(value):
    """uint64 key of a float64 (not NaN)."""
    bits = np.float64(value + np.float64(0.0)).view(np.uint64)
    flip = np.uint64(np.int64(bits) >> 63) | np.uint64(0x8000000000000000)
    return bits ^ flip


@njit(cache=True)
def float32_of_key(key):
    """The float32 whose key is `key` (uint32)."""
    flip = np.uint32(np.int32(~key) >> 31) | np.uint32(0x80000000)
    return np.uint32(key ^ flip).view(np.float32)


@njit(cache=True)
def _integer_date_keys(band_rows, key_bands, out):
    out[:] = 0
    for band in key_bands:  # exact uint32 sums of uint16 values rank like their means
        row = band_rows[band]
        for x in range(out.shape[0]):
            out[x] += row[x]


@njit(cache=True)
def _float_date_keys(band_rows, key_bands, out):
    sums = np.zeros(out.shape[0], np.float64)
    for band in key_bands:
        row = band_rows[band]
        for x in range(out.shape[0]):
            sums[x] += np.float64(row[x])
    for x in range(out.shape[0]):
        out[x] = float64_key(sums[x] / key_bands.shape[0])


def order_key(value):
    """Unsigned key of one value: uint16 -> itself, float32 -> uint32, float64 -> uint64."""
    if isinstance(value, np.float32):
        return float32_key(value)
    if isinstance(value, np.float64):
        return float64_key(value)
    return value


def value_of_key(key):
    """Inverse of `order_key` for band values: uint16 -> itself, uint32 -> float32."""
    if isinstance(key, np.uint32):
        return float32_of_key(key)
    return key


def date_keys(band_rows, key_bands, out):
    """Write into `out` the keys ranking one date's pixels by the mean of the key bands.

    band_rows: (band, pixel) values of the date; key_bands: int64 band indices. A uint32 `out`
    (uint16 stacks) receives the exact integer sums, which rank like the means; a uint64 `out`
    (float stacks) the key of the float64 mean (summed in key_bands order, then divided).
    """
    if out.dtype == np.uint64:
        _float_date_keys(band_rows, key_bands, out)
    else:
        _integer_date_keys(band_rows, key_bands, out)


@overload(order_key)
def _order_key_typed(value):
    if isinstance(value, types.Integer):
        return lambda value: value
    if value == types.float32:
        return lambda value: float32_key(value)
    if value == types.float64:
        return lambda value: float64_key(value)
    return None


@overload(value_of_key)
def _value_of_key_typed(key):
    if key == types.uint32:
        return lambda key: float32_of_key(key)
    if key == types.uint16:
        return lambda key: key
    return None


@overload(date_keys)
def _date_keys_typed(band_rows, key_bands, out):
    if out.dtype == types.uint64:
        return lambda band_rows, key_bands, out: _float_date_keys(band_rows, key_bands, out)
    return lambda band_rows, key_bands, out: _integer_date_keys(band_rows, key_bands, out)
