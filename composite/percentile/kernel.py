"""Numba kernel of the masked percentile, vectorised across the pixels of a tile.

Work is split into tiles of `tile_pixels` consecutive pixels (row-major, a tile may span
rows), run in parallel (`prange`).
Per tile:
1. gather the tile's (date, band, pixel) values and (date, pixel) exclusion flags from the
   stack's memory (any layout, see `layout.flat_view`) into small contiguous buffers, reading
   along whichever of time or x is contiguous in memory;
2. flag usable observations: a date is observed at a pixel when no band is nodata or NaN, and
   usable when it is also not excluded (or, for a pixel with no usable date under the
   `all_observations` policy, when it is observed);
3. turn the values to rank into order keys (see `order_keys`), unusable entries set to the
   largest key, a sentinel that no bisection step counts;
4. find each wanted order statistic by bisection on the key value: per step, count for every
   pixel at once how many keys are <= the midpoint. The count loop runs along the pixel axis,
   which vectorises, so a step costs about one pass over the tile in cache, and the number of
   steps is the bit length of the tile's key range (at most 16 for uint16 data).
Which ranks to read for n usable dates comes from `ranks.rank_table`, so the kernel holds no
percentile formula of its own.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from composite.percentile.order_keys import date_keys, order_key, value_of_key

__all__ = ["MODE_LINEAR", "MODE_PICK_BY_DATE", "MODE_PICK_PER_BAND", "percentile_tiles"]

MODE_LINEAR = 0
"""Per band: numpy's linear interpolation between two order statistics (float output)."""
MODE_PICK_PER_BAND = 1
"""Per band: one observation (ranks of lower/nearest), with its date."""
MODE_PICK_BY_DATE = 2
"""One date per pixel, ranked by the mean of the key bands; every band from that date."""

_TRANSPOSE_BLOCK = 32  # pixels whose time series are transposed together (time-last stacks)


@njit(cache=True)
def _read_row(flat, start, step, out):
    """out[i] = flat[start + i * step]; a unit step is read as a contiguous (vectorised) slice."""
    n = out.shape[0]
    if step == 1:
        source = flat[start : start + n]
        for i in range(n):
            out[i] = source[i]
    else:
        for i in range(n):
            out[i] = flat[start + i * step]


@njit(cache=True)
def _gather_tile(flat, layout, width, first_pixel, tile):
    """tile[t, b, i] = element (t, b, y, x) of the array that `flat`/`layout` describe, for the
    pixels p = first_pixel + i in row-major order (y, x = divmod(p, width)).

    layout: [offset, stride_t, stride_b, stride_y, stride_x] in elements. Reads run along x
    for time-first memory and along time for time-last memory, so they are sequential in both.
    """
    offset, stride_t, stride_b, stride_y, stride_x = layout
    n_dates, n_bands, n_pixels = tile.shape
    if abs(stride_t) < abs(stride_x):
        # Read the time series of a block of pixels, then write the block out date by date:
        # writing one value per date row at a time would thrash the cache.
        series = np.empty((_TRANSPOSE_BLOCK, n_dates), tile.dtype)
        for b in range(n_bands):
            for block_start in range(0, n_pixels, _TRANSPOSE_BLOCK):
                block = min(_TRANSPOSE_BLOCK, n_pixels - block_start)
                for j in range(block):
                    y, x = divmod(first_pixel + block_start + j, width)
                    start = offset + y * stride_y + x * stride_x + b * stride_b
                    _read_row(flat, start, stride_t, series[j])
                for t in range(n_dates):
                    row = tile[t, b, block_start : block_start + block]
                    for j in range(block):
                        row[j] = series[j, t]
        return
    done = 0
    while done < n_pixels:  # one run of pixels per image row
        y, x = divmod(first_pixel + done, width)
        run = min(width - x, n_pixels - done)
        start = offset + y * stride_y + x * stride_x
        for t in range(n_dates):
            for b in range(n_bands):
                row = tile[t, b, done : done + run]
                _read_row(flat, start + t * stride_t + b * stride_b, stride_x, row)
        done += run


@njit(cache=True)
def _flag_observations(values, excluded, nodata, check_nodata, observed, usable):
    """observed[t, x] = 1 when no band of date t is nodata or NaN; usable = observed and not excluded."""
    n_dates, n_bands, width = values.shape
    for t in range(n_dates):
        seen = observed[t]
        seen[:] = 1
        for b in range(n_bands):
            row = values[t, b]
            if check_nodata:
                for x in range(width):
                    value = row[x]
                    seen[x] &= np.uint8((value == value) & (value != nodata))
            else:
                for x in range(width):
                    value = row[x]
                    seen[x] &= np.uint8(value == value)  # False only for NaN
        masked = excluded[t, 0]
        use = usable[t]
        for x in range(width):
            use[x] = seen[x] & np.uint8(not masked[x])


@njit(cache=True)
def _column_sums(flags, sums):
    """sums[x] = number of set flags in column x of a (date, pixel) uint8 array."""
    sums[:] = 0
    for t in range(flags.shape[0]):
        row = flags[t]
        for x in range(flags.shape[1]):
            sums[x] += row[x]


@njit(cache=True)
def _usable_dates(
    values, excluded, nodata, check_nodata, use_all_observations, usable, n_valid, n_used, fallback
):
    """Fill usable (date, pixel) flags, valid counts, counts actually ranked and fallback flags."""
    n_dates, width = usable.shape
    observed = np.empty((n_dates, width), np.uint8)
    _flag_observations(values, excluded, nodata, check_nodata, observed, usable)
    _column_sums(usable, n_valid)
    n_used[:] = n_valid
    fallback[:] = False
    if not use_all_observations or n_valid.min() > 0:
        return
    n_observed = np.empty(width, np.int32)
    _column_sums(observed, n_observed)
    for x in range(width):
        fallback[x] = n_valid[x] == 0 and n_observed[x] > 0
        if fallback[x]:
            n_used[x] = n_observed[x]
    for t in range(n_dates):
        use = usable[t]
        seen = observed[t]
        for x in range(width):
            use[x] |= seen[x] & np.uint8(fallback[x])


@njit(cache=True)
def _start_bounds(low, high):
    """Empty per-pixel key bounds, to be widened by `_store_keys`."""
    low[:] = ~low.dtype.type(0)
    high[:] = 0


@njit(cache=True, inline="always")
def _store_keys(source, usable, keys, low, high):
    """keys[x] = order key of source[x] where usable[x], else the sentinel (the largest key);
    widen low/high, the per-pixel min/max usable key, by the usable ones."""
    sentinel = ~keys.dtype.type(0)
    zero = keys.dtype.type(0)
    for x in range(keys.shape[0]):
        ok = usable[x] != 0
        key = order_key(source[x])
        keys[x] = key if ok else sentinel
        low[x] = min(low[x], key if ok else sentinel)
        high[x] = max(high[x], key if ok else zero)


@njit(cache=True)
def _finish_bounds(low, high):
    """Pixels with no usable key get low = high = 0, so the bisection spends no steps on them."""
    for x in range(low.shape[0]):
        if low[x] > high[x]:
            low[x] = 0


@njit(cache=True)
def _load_band_keys(values, band, usable, keys, low, high):
    """keys[t, x] = order key of values[t, band, x] where usable, else the sentinel;
    low/high = per-pixel min/max usable key."""
    _start_bounds(low, high)
    for t in range(keys.shape[0]):
        _store_keys(values[t, band], usable[t], keys[t], low, high)
    _finish_bounds(low, high)


@njit(cache=True)
def _load_date_keys(values, key_bands, usable, keys, low, high):
    """keys[t, x] = key ranking date t at pixel x by the mean of the key bands where usable,
    else the sentinel; low/high = per-pixel min/max usable key."""
    date_row = np.empty(keys.shape[1], keys.dtype)
    _start_bounds(low, high)
    for t in range(keys.shape[0]):
        date_keys(values[t], key_bands, date_row)
        _store_keys(date_row, usable[t], keys[t], low, high)  # integer keys: order_key is identity
    _finish_bounds(low, high)


@njit(cache=True)
def _count_at_most(keys, limits, counts):
    """counts[x] = number of keys[:, x] <= limits[x]. Four date rows per sweep: the running
    counts are loaded and stored a quarter as often (about 1.4x faster for uint16 keys)."""
    n_dates, width = keys.shape
    as_count = counts.dtype.type
    counts[:] = 0
    n_quads = n_dates // 4
    for quad in range(n_quads):
        t = 4 * quad
        row0, row1, row2, row3 = keys[t], keys[t + 1], keys[t + 2], keys[t + 3]
        for x in range(width):
            limit = limits[x]
            pair0 = as_count(row0[x] <= limit) + as_count(row1[x] <= limit)
            pair1 = as_count(row2[x] <= limit) + as_count(row3[x] <= limit)
            counts[x] += pair0 + pair1
    for t in range(4 * n_quads, n_dates):
        row = keys[t]
        for x in range(width):
            counts[x] += row[x] <= limits[x]


@njit(cache=True)
def _select_rank(keys, ranks, low, high, counts):
    """Bisection: low[x] becomes the ranks[x]-th smallest (0-based) usable key of column x.

    Requires low[x] <= answer <= high[x] and every unusable key above high[x] - 1 (the
    sentinel); midpoints stay below high, so sentinels are never counted. Each step at least
    halves every interval, so the number of steps is the bit length of the widest interval.
    """
    width = keys.shape[1]
    one = low.dtype.type(1)  # typed constants: uint64 mixed with int64 would become float64
    mid = np.empty_like(low)
    spread = low.dtype.type(0)
    for x in range(width):
        spread = max(spread, low.dtype.type(high[x] - low[x]))
    while spread > 0:
        for x in range(width):
            mid[x] = low[x] + ((high[x] - low[x]) >> one)
        _count_at_most(keys, mid, counts)
        for x in range(width):
            if counts[x] > ranks[x]:
                high[x] = mid[x]
            else:
                low[x] = mid[x] + one
        spread >>= one


@njit(cache=True)
def _next_rank_key(keys, lower_keys, upper_ranks, counts, upper_keys):
    """upper_keys[x] = key of rank upper_ranks[x], given lower_keys[x] holds the key of the rank
    just below (or the same rank): either the same key (ties) or the smallest key above it."""
    sentinel = ~keys.dtype.type(0)
    width = keys.shape[1]
    for x in range(width):
        counts[x] = 0
        upper_keys[x] = sentinel
    for t in range(keys.shape[0]):
        row = keys[t]
        for x in range(width):
            key = row[x]
            counts[x] += key <= lower_keys[x]
            upper_keys[x] = min(upper_keys[x], key if key > lower_keys[x] else sentinel)
    for x in range(width):
        if counts[x] > upper_ranks[x]:
            upper_keys[x] = lower_keys[x]


@njit(cache=True)
def _earliest_date_of(keys, usable, wanted, dates):
    """dates[x] = first usable date t with keys[t, x] == wanted[x], -1 if none (a running
    minimum, which vectorises where a search would not)."""
    n_dates = keys.shape[0]
    none = dates.dtype.type(n_dates)
    dates[:] = none
    for t in range(n_dates):
        row = keys[t]
        use = usable[t]
        date = dates.dtype.type(t)
        for x in range(keys.shape[1]):
            hit = (row[x] == wanted[x]) & (use[x] != 0)
            dates[x] = min(dates[x], date if hit else none)
    for x in range(keys.shape[1]):
        if dates[x] == none:
            dates[x] = -1


@njit(cache=True)
def _lerp(lower, upper, weight):
    """numpy's `_lerp` expression (interpolating from the nearer end), in float64."""
    diff = upper - lower
    if weight >= 0.5:
        return upper - diff * (1.0 - weight)
    return lower + diff * weight


@njit(cache=True)
def _pick_dates(
    values, usable, n_used, ranks_lower, key_bands, date_key_like, first_pixel, out_picks, out_index
):
    """MODE_PICK_BY_DATE for one tile: rank dates by the key bands, copy every band of the
    picked date (0 and index -1 where nothing is usable)."""
    n_dates, n_bands, width = values.shape
    keys = np.empty((n_dates, width), date_key_like.dtype)
    key_low = np.empty(width, keys.dtype)
    key_high = np.empty(width, keys.dtype)
    _load_date_keys(values, key_bands, usable, keys, key_low, key_high)
    counts = np.empty(width, ranks_lower.dtype)
    ranks = np.empty(width, ranks_lower.dtype)
    dates = np.empty(width, out_index.dtype)
    for qi in range(ranks_lower.shape[0]):
        for x in range(width):
            ranks[x] = ranks_lower[qi, n_used[x]]
        low = key_low.copy()
        _select_rank(keys, ranks, low, key_high.copy(), counts)
        _earliest_date_of(keys, usable, low, dates)
        for x in range(width):
            t = dates[x]
            for b in range(n_bands):
                out_picks[qi, b, first_pixel + x] = values[t, b, x] if t >= 0 else 0
            out_index[qi, 0, first_pixel + x] = t


@njit(cache=True)
def _per_band(
    values, usable, n_used, ranks_lower, ranks_upper, weights, mode, key_like, first_pixel,
    out_values, out_picks, out_index,
):  # fmt: skip
    """MODE_LINEAR / MODE_PICK_PER_BAND for one tile: each band ranked on its own (0, and
    index -1, where nothing is usable)."""
    n_dates, n_bands, width = values.shape
    keys = np.empty((n_dates, width), key_like.dtype)
    key_low = np.empty(width, keys.dtype)
    key_high = np.empty(width, keys.dtype)
    upper_keys = np.empty(width, keys.dtype)
    counts = np.empty(width, ranks_lower.dtype)
    ranks = np.empty(width, ranks_lower.dtype)
    dates = np.empty(width, out_index.dtype)
    for b in range(n_bands):
        _load_band_keys(values, b, usable, keys, key_low, key_high)
        for qi in range(ranks_lower.shape[0]):
            for x in range(width):
                ranks[x] = ranks_lower[qi, n_used[x]]
            low = key_low.copy()
            _select_rank(keys, ranks, low, key_high.copy(), counts)
            if mode == MODE_LINEAR:
                for x in range(width):
                    ranks[x] = ranks_upper[qi, n_used[x]]
                _next_rank_key(keys, low, ranks, counts, upper_keys)
                for x in range(width):
                    n = n_used[x]
                    lower = np.float64(value_of_key(low[x]))
                    upper = np.float64(value_of_key(upper_keys[x]))
                    interpolated = _lerp(lower, upper, weights[qi, n])
                    out_values[qi, b, first_pixel + x] = interpolated if n > 0 else 0.0
            else:
                _earliest_date_of(keys, usable, low, dates)
                for x in range(width):
                    picked = value_of_key(low[x])
                    out_picks[qi, b, first_pixel + x] = picked if n_used[x] > 0 else 0
                    out_index[qi, b, first_pixel + x] = dates[x]


@njit(parallel=True, cache=True)
def percentile_tiles(
    stack_flat, stack_layout, exclude_flat, exclude_layout, n_bands, width, nodata,
    check_nodata, ranks_lower, ranks_upper, weights, mode, key_bands, use_all_observations,
    key_like, date_key_like, tile_pixels, out_values, out_picks, out_index, out_count,
    out_fallback,
):  # fmt: skip
    """Masked percentiles of a (date, band, y, x) stack, written into the `out_*` arrays.

    stack_flat/stack_layout: `layout.flat_view` of the uint16 or float32 stack as (date, band,
    y, x); exclude_flat/exclude_layout: the same for the bool mask as (date, 1, y, x) (band
    stride 0); width: the size of x. nodata: stack-typed, compared only when check_nodata.
    ranks_lower/ranks_upper/weights: `RankTable` arrays (q, n_dates + 1). mode: MODE_*.
    key_bands: int64 band indices (MODE_PICK_BY_DATE). use_all_observations: the fallback
    policy for pixels with no usable date. key_like/date_key_like: empty arrays of the band and
    date order-key dtypes. tile_pixels: pixels per work item (runs of the row-major pixels).
    Outputs, with pixels flattened row-major: out_values float32 (q, band, pixel)
    [MODE_LINEAR]; out_picks stack-typed and out_index (q, band or 1, pixel) [pick modes];
    where a pixel has nothing to rank, values and picks are 0 (the caller fills them) and the
    index is -1; out_count (pixel,) valid dates; out_fallback (pixel,) pixels filled by the
    fallback policy. Outputs a mode does not write may be empty.
    """
    n_dates = ranks_lower.shape[1] - 1
    n_pixels = out_count.shape[0]
    for tile in prange((n_pixels + tile_pixels - 1) // tile_pixels):
        first = tile * tile_pixels
        size = min(tile_pixels, n_pixels - first)
        values = np.empty((n_dates, n_bands, size), stack_flat.dtype)
        _gather_tile(stack_flat, stack_layout, width, first, values)
        excluded = np.empty((n_dates, 1, size), exclude_flat.dtype)
        _gather_tile(exclude_flat, exclude_layout, width, first, excluded)
        usable = np.empty((n_dates, size), np.uint8)
        n_valid = np.empty(size, np.int32)
        n_used = np.empty(size, np.int32)
        fallback = np.empty(size, np.bool_)
        _usable_dates(
            values, excluded, nodata, check_nodata, use_all_observations, usable, n_valid, n_used,
            fallback,
        )  # fmt: skip
        out_count[first : first + size] = n_valid
        out_fallback[first : first + size] = fallback
        if mode == MODE_PICK_BY_DATE:
            _pick_dates(
                values, usable, n_used, ranks_lower, key_bands, date_key_like, first, out_picks,
                out_index,
            )  # fmt: skip
        else:
            _per_band(
                values, usable, n_used, ranks_lower, ranks_upper, weights, mode, key_like, first,
                out_values, out_picks, out_index,
            )  # fmt: skip
