"""masked_percentile against numpy: np.nanpercentile / np.percentile on each pixel's valid values.

Property tests draw small random stacks (uint16 and float32, ties, nodata, NaN, -0.0, the
largest uint16 value, one valid value, all masked) with random masks, several q, every method,
per-band and date-consistent picking and both no-valid policies, and compare every output with a
per-pixel numpy reference. Further tests pin layouts (time-last, band-last, windows, negative
strides, tiles spanning rows), the helpers (rank tables, order keys, flat views), the input
errors and a real Sentinel-2 time series.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composite.percentile import METHODS, NO_VALID_POLICIES, masked_percentile
from composite.percentile.layout import flat_view
from composite.percentile.order_keys import date_keys, order_key, value_of_key
from composite.percentile.ranks import rank_table

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
UINT16_EDGES = [0, 1, 2, 3, 65534, 65535]
FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, np.nan]


# -- the reference -------------------------------------------------------------------------------


def valid_observations(stack, exclude, nodata):
    """(observed, valid) (time, y, x): no band nodata or NaN; and not excluded."""
    values = stack.astype(np.float64)
    observed = ~np.isnan(values).any(axis=1)
    if nodata is not None and not np.isnan(nodata):
        observed &= ~(values == nodata).any(axis=1)
    return observed, observed & ~exclude


def reference(stack, exclude, q, method, nodata, key, no_valid):
    """Expected (composite, count, index, fallback) for a (time, band, y, x) stack, with a
    q axis and a band axis always present, computed pixel by pixel with numpy."""
    n_dates, n_bands, height, width = stack.shape
    q_list = np.atleast_1d(np.asarray(q, dtype=np.float64))
    observed, valid = valid_observations(stack, exclude, nodata)
    count = valid.sum(axis=0)
    fallback = (count == 0) & observed.any(axis=0) & (no_valid == "all_observations")
    used = np.where(fallback[None], observed, valid)
    composite = np.full((len(q_list), n_bands, height, width), np.nan)
    index = np.full((len(q_list), n_bands if key is None else 1, height, width), -1)
    values = stack.astype(np.float64)
    for y in range(height):
        for x in range(width):
            dates = np.flatnonzero(used[:, y, x])
            if dates.size == 0:
                continue
            series = values[dates, :, y, x]  # (dates, bands)
            if key is not None:
                keys = np.zeros(dates.size)
                for band in key:  # summed in band order, as documented
                    keys += series[:, band]
                keys /= len(key)
                picked = np.percentile(keys, q_list, method=method)
                for qi, wanted in enumerate(picked):
                    chosen = dates[np.flatnonzero(keys == wanted)[0]]
                    composite[qi, :, y, x] = values[chosen, :, y, x]
                    index[qi, 0, y, x] = chosen
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = np.nanpercentile(series, q_list, axis=0, method=method)
            composite[:, :, y, x] = result
            if method != "linear":
                for qi in range(len(q_list)):
                    for b in range(n_bands):
                        hits = np.flatnonzero(series[:, b] == result[qi, b])
                        index[qi, b, y, x] = dates[hits[0]]
    return composite, count, index, fallback


# -- strategies ----------------------------------------------------------------------------------


@st.composite
def masked_stacks(draw):
    """(stack (time, band, y, x), exclude (time, y, x)) with ties, nodata and special values."""
    n_dates = draw(st.integers(1, 9))
    n_bands = draw(st.integers(1, 3))
    height = draw(st.integers(1, 3))
    width = draw(st.integers(1, 5))
    shape = (n_dates, n_bands, height, width)
    size = int(np.prod(shape))
    if draw(st.booleans()):
        element = st.one_of(st.sampled_from(UINT16_EDGES), st.integers(0, 65535))
        stack = np.array(draw(st.lists(element, min_size=size, max_size=size)), np.uint16)
    else:
        finite = st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
        element = st.one_of(st.sampled_from(FLOAT_SPECIALS), finite)
        stack = np.array(draw(st.lists(element, min_size=size, max_size=size)), np.float32)
    exclude_share = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    exclude = np.random.default_rng(seed).random((n_dates, height, width)) < exclude_share
    return stack.reshape(shape), exclude


percentiles = st.one_of(
    st.sampled_from([0, 25, 50, 75, 100]),
    st.floats(0, 100),
    st.lists(st.one_of(st.sampled_from([0, 25, 100]), st.floats(0, 100)), min_size=1, max_size=3),
)


def assert_matches_reference(stack, exclude, q, method, nodata, key, no_valid):
    result = masked_percentile(
        stack, exclude, q, method=method, nodata=nodata, key=key, no_valid=no_valid
    )
    composite, count, index, fallback = reference(stack, exclude, q, method, nodata, key, no_valid)
    has_q = np.ndim(q) > 0
    got = result.composite if has_q else result.composite[None]
    got_index = None if result.index is None else (result.index if has_q else result.index[None])
    if key is not None and got_index is not None:
        got_index = got_index[:, None]
    np.testing.assert_array_equal(result.count, count)
    np.testing.assert_array_equal(result.fallback, fallback)
    empty = (count == 0) & ~fallback
    fill = np.nan if nodata is None else nodata
    composite[..., empty] = fill
    if method == "linear":
        assert result.index is None
        assert got.dtype == np.float32
        # 1e-5 relative; results below float32's normal range cannot carry that precision
        tiny = np.finfo(np.float32).tiny
        np.testing.assert_allclose(got, composite, rtol=1e-5, atol=tiny, equal_nan=True)
    else:
        assert got.dtype == stack.dtype
        np.testing.assert_array_equal(got, composite.astype(stack.dtype))
        np.testing.assert_array_equal(got_index, index)
    assert result.n_no_valid == int((count == 0).sum())
    assert result.n_fallback == int(fallback.sum())


# -- numpy equivalence ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    data=masked_stacks(),
    q=percentiles,
    method=st.sampled_from(METHODS),
    no_valid=st.sampled_from(NO_VALID_POLICIES),
)
def test_per_band_methods_match_numpy(data, q, method, no_valid):
    stack, exclude = data
    assert_matches_reference(stack, exclude, q, method, 0, None, no_valid)


@PROPERTY_SETTINGS
@given(
    data=masked_stacks(),
    q=percentiles,
    method=st.sampled_from(["lower", "nearest"]),
    no_valid=st.sampled_from(NO_VALID_POLICIES),
    key_seed=st.integers(0, 2**16),
)
def test_date_consistent_pick_matches_numpy_on_the_key(data, q, method, no_valid, key_seed):
    stack, exclude = data
    n_bands = stack.shape[1]
    rng = np.random.default_rng(key_seed)
    key = tuple(
        int(b) for b in rng.choice(n_bands, size=rng.integers(1, n_bands + 1), replace=False)
    )
    assert_matches_reference(stack, exclude, q, method, 0, key, no_valid)


@settings(max_examples=40, deadline=None)
@given(data=masked_stacks(), q=percentiles, method=st.sampled_from(METHODS))
def test_nodata_none_keeps_every_non_nan_value(data, q, method):
    stack, exclude = data
    stack = stack.astype(np.float32)
    assert_matches_reference(stack, exclude, q, method, None, None, "nodata")


def test_one_valid_value_is_every_percentile():
    stack = np.array([5, 7, 9], np.uint16).reshape(3, 1, 1)
    exclude = np.array([True, False, True]).reshape(3, 1, 1)
    for method in METHODS:
        result = masked_percentile(stack, exclude, [0, 25, 100], method=method)
        np.testing.assert_array_equal(result.composite[:, 0, 0], [7, 7, 7])
        assert result.count[0, 0] == 1
        if method != "linear":
            np.testing.assert_array_equal(result.index[:, 0, 0], [1, 1, 1])


def test_all_masked_pixel_gets_nodata_or_the_flagged_fallback():
    stack = np.array([[10, 20, 30, 0]], np.uint16).T.reshape(4, 1, 1, 1).repeat(2, axis=3)
    exclude = np.ones((4, 1, 2), bool)
    exclude[1, 0, 1] = False  # the second pixel keeps one valid date
    plain = masked_percentile(stack, exclude, 50, method="lower", nodata=0)
    np.testing.assert_array_equal(plain.composite[0, 0], [0, 20])
    np.testing.assert_array_equal(plain.index[0, 0], [-1, 1])
    assert plain.n_no_valid == 1 and plain.n_fallback == 0
    filled = masked_percentile(stack, exclude, 50, method="lower", no_valid="all_observations")
    # all observations of pixel 0 are 10, 20, 30 (date 3 is nodata): lower median 20
    np.testing.assert_array_equal(filled.composite[0, 0], [20, 20])
    np.testing.assert_array_equal(filled.fallback[0], [True, False])
    np.testing.assert_array_equal(filled.count[0], [0, 1])
    assert filled.n_no_valid == 1 and filled.n_fallback == 1


def test_nearest_rounds_the_rank_half_to_even():
    # n = 3, q = 25: virtual rank 0.5 -> 0; q = 75: 1.5 -> 2 (numpy rounds half to even)
    stack = np.array([30, 10, 20], np.uint16).reshape(3, 1, 1)
    result = masked_percentile(stack, None, [25, 75], method="nearest")
    np.testing.assert_array_equal(result.composite[:, 0, 0], [10, 30])
    np.testing.assert_array_equal(result.index[:, 0, 0], [1, 0])


def test_date_consistent_pick_copies_one_real_observation():
    rng = np.random.default_rng(3)
    stack = rng.integers(1, 5000, (11, 4, 6, 7)).astype(np.uint16)
    exclude = rng.random((11, 6, 7)) < 0.4
    result = masked_percentile(stack, exclude, 25, method="lower", key=(0, 1, 2))
    index = result.index
    assert index.shape == (6, 7)
    rows, cols = np.indices(index.shape)
    picked = stack[np.maximum(index, 0), :, rows, cols]  # (y, x, band)
    spectra = np.moveaxis(result.composite, 0, -1)
    has = index >= 0
    np.testing.assert_array_equal(spectra[has], picked[has])
    assert not exclude[index[has], rows[has], cols[has]].any()


# -- outputs and layouts -------------------------------------------------------------------------


def test_linear_to_uint16_rounds_half_to_even():
    # two dates per pixel, q = 50 halfway between them: 2.5 -> 2 and 1.5 -> 2
    stack = np.array([[2, 1], [3, 2]], np.uint16).reshape(2, 1, 2)
    result = masked_percentile(stack, None, 50, out_dtype=np.uint16)
    assert result.composite.dtype == np.uint16
    np.testing.assert_array_equal(result.composite[0], [2, 2])


def test_picks_as_float32_and_nodata_none():
    stack = np.array([[0, 3], [0, 5]], np.float32).reshape(2, 1, 2)
    exclude = np.array([[False, True], [False, True]]).reshape(2, 1, 2)
    result = masked_percentile(stack, exclude, 50, method="lower", nodata=None)
    np.testing.assert_array_equal(result.composite[0], [0.0, np.nan])
    uint = np.array([[0, 3], [0, 5]], np.uint16).reshape(2, 1, 2)
    as_float = masked_percentile(uint, exclude, 50, method="lower", out_dtype=np.float32)
    assert as_float.composite.dtype == np.float32
    np.testing.assert_array_equal(as_float.composite[0], [0.0, 0.0])


def random_stack(dtype, shape=(13, 3, 9, 70), seed=0):
    rng = np.random.default_rng(seed)
    stack = rng.integers(0, 40, shape).astype(dtype)  # many ties and some nodata (0)
    exclude = rng.random((shape[0], *shape[2:])) < 0.5
    return stack, exclude


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("method,key", [("linear", None), ("lower", None), ("nearest", (0, 2))])
def test_layouts_windows_and_tiles_give_the_same_result(dtype, method, key):
    stack, exclude = random_stack(dtype)
    expected = masked_percentile(stack, exclude, [10, 60], method=method, key=key)

    def check(result):
        np.testing.assert_array_equal(result.composite, expected.composite)
        np.testing.assert_array_equal(result.count, expected.count)
        if expected.index is not None:
            np.testing.assert_array_equal(result.index, expected.index)

    for tile_pixels in (1, 16, 100, 5000):  # tiles of one pixel, spanning rows, whole image
        check(
            masked_percentile(
                stack, exclude, [10, 60], method=method, key=key, tile_pixels=tile_pixels
            )
        )
    time_last = np.ascontiguousarray(np.moveaxis(stack, (0, 1), (3, 2)))  # (y, x, band, time)
    check(
        masked_percentile(
            time_last, np.ascontiguousarray(np.moveaxis(exclude, 0, 2)), [10, 60],
            method=method, key=key, time_axis=-1, band_axis=2,
        )
    )  # fmt: skip
    band_last = np.ascontiguousarray(np.moveaxis(stack, 1, 3))  # (time, y, x, band)
    check(masked_percentile(band_last, exclude, [10, 60], method=method, key=key, band_axis=-1))
    band_first = np.moveaxis(stack, 1, 0)  # (band, time, y, x) view
    check(
        masked_percentile(
            band_first, exclude, [10, 60], method=method, key=key, time_axis=1, band_axis=0
        )
    )
    mirrored = masked_percentile(
        stack[..., ::-1], exclude[..., ::-1], [10, 60], method=method, key=key
    )  # negative x stride
    np.testing.assert_array_equal(mirrored.composite[..., ::-1], expected.composite)
    np.testing.assert_array_equal(mirrored.count[..., ::-1], expected.count)


def test_a_window_of_a_larger_stack_reads_only_the_window():
    stack, exclude = random_stack(np.uint16, shape=(8, 2, 20, 30), seed=5)
    window = (slice(None), slice(None), slice(3, 17), slice(5, 29))
    result = masked_percentile(stack[window], exclude[:, 3:17, 5:29], 25, method="lower")
    whole = masked_percentile(stack, exclude, 25, method="lower")
    np.testing.assert_array_equal(result.composite, whole.composite[:, 3:17, 5:29])
    np.testing.assert_array_equal(result.index, whole.index[:, 3:17, 5:29])


def test_three_dimensional_stack_has_no_band_axis():
    stack, exclude = random_stack(np.uint16, shape=(6, 1, 4, 5))
    result = masked_percentile(stack[:, 0], exclude, [25, 50], method="lower")
    assert result.composite.shape == (2, 4, 5) and result.index.shape == (2, 4, 5)
    with_band = masked_percentile(stack, exclude, [25, 50], method="lower")
    np.testing.assert_array_equal(result.composite, with_band.composite[:, 0])


def test_real_sentinel2_series_matches_nanpercentile(realdata):
    folder = realdata / "eolearn-5dates"
    # (5, y, x, 13) band-last, read-only; a 48 x 48 corner keeps numpy's per-pixel loop short
    scenes = np.load(folder / "REFERENCE_SCENES.npy", mmap_mode="r")[:, :48, :48]
    clouds = np.load(folder / "CLM.npy", mmap_mode="r")[: scenes.shape[0], :48, :48, 0] > 0
    dates = json.loads((folder / "timestamps.json").read_text())[: scenes.shape[0]]
    assert len(dates) == 5
    result = masked_percentile(scenes, clouds, [25, 50], band_axis=-1, nodata=None)
    valid = np.where(clouds[..., None], np.nan, np.asarray(scenes, np.float64))
    expected = np.moveaxis(np.nanpercentile(valid, [25, 50], axis=0), -1, 1)
    np.testing.assert_allclose(result.composite, expected, rtol=1e-5)
    assert (result.count == (~clouds).sum(axis=0)).all()
    picked = masked_percentile(scenes, clouds, 25, method="lower", band_axis=-1, key=(1, 2, 3))
    assert (picked.index >= 0).all()
    assert not clouds[picked.index, *np.indices(picked.index.shape)].any()


# -- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_rank_table_reads_the_order_statistics_numpy_reads(method):
    q = np.array([0, 1, 10, 25, 33.3, 50, 62.5, 75, 99, 100])
    table = rank_table(q, 60, method)
    for n in range(1, 61):
        ranks = np.arange(n, dtype=np.float64)  # sorted data whose values are their ranks
        expected = np.percentile(ranks, q, method=method)
        lower, upper, weight = table.lower[:, n], table.upper[:, n], table.weight[:, n]
        got = lower + (upper - lower) * weight
        if method == "linear":
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        else:
            np.testing.assert_array_equal(lower, expected)
            np.testing.assert_array_equal(upper, lower)


def test_order_keys_sort_like_the_values_and_invert():
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [rng.normal(0, 1e3, 500), [0.0, -0.0, np.inf, -np.inf, 1e-30, -1e-30]]
    ).astype(np.float32)
    keys = np.array([order_key(v) for v in values], np.uint64)
    order = np.argsort(values, kind="stable")
    assert (np.diff(keys[order].astype(np.float64)) >= 0).all()
    assert order_key(np.float32(-0.0)) == order_key(np.float32(0.0))
    back = np.array([value_of_key(np.uint32(k)) for k in keys], np.float32)
    np.testing.assert_array_equal(back, values)
    assert order_key(np.uint16(65535)) == 65535 and value_of_key(np.uint16(7)) == 7


def test_date_keys_rank_dates_by_the_mean_of_the_key_bands():
    bands = np.array([[1, 2], [3, 5], [9, 9]], np.uint16)  # (band, pixel) of one date
    sums = np.empty(2, np.uint32)
    date_keys(bands, np.array([0, 1], np.int64), sums)
    np.testing.assert_array_equal(sums, [4, 7])  # integer sums rank like the means
    means = np.empty(2, np.uint64)
    date_keys(bands.astype(np.float32), np.array([0, 1], np.int64), means)
    np.testing.assert_array_equal(means, [order_key(np.float64(2.0)), order_key(np.float64(3.5))])


def test_flat_view_addresses_every_element_without_copying():
    base = np.arange(4 * 5 * 6 * 7, dtype=np.uint16).reshape(4, 5, 6, 7)
    for view in (base, base[1:3, ::2, ::-1, 2:6], np.moveaxis(base, 0, -1), base[::-1, :, :, ::-2]):
        flat, layout = flat_view(view)
        assert np.shares_memory(flat, base) and not flat.flags.writeable
        index = np.indices(view.shape).reshape(view.ndim, -1)
        offsets = layout[0] + (layout[1:, None] * index).sum(axis=0)
        np.testing.assert_array_equal(flat[offsets], view.reshape(-1))


# -- input errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,error,message",
    [
        (dict(stack=np.zeros((3, 2, 2), np.int32)), TypeError, "uint16 .DN. or float32"),
        (dict(stack=[[[1]]]), TypeError, "must be a numpy array"),
        (dict(stack=np.zeros((3, 2), np.uint16)), ValueError, "3-D"),
        (dict(exclude=np.zeros((3, 2, 2), np.uint8)), TypeError, "mask != 0"),
        (dict(exclude=np.zeros((2, 2, 2), bool)), ValueError, r"expected \(3, 2, 2\)"),
        (dict(q=101), ValueError, r"\[0, 100\]"),
        (dict(q=[[25]]), ValueError, "1-D sequence"),
        (dict(method="median"), ValueError, "linear"),
        (dict(method="linear", key=0), ValueError, "needs method='lower' or 'nearest'"),
        (dict(method="lower", key=3), ValueError, "out of range for 1 bands"),
        (dict(no_valid="skip"), ValueError, "all_observations"),
        (dict(nodata=-1), ValueError, "not a uint16 value"),
        (dict(nodata=None), ValueError, "out_dtype=np.float32"),
        (dict(out_dtype=np.int8), ValueError, "out_dtype=int8"),
        (dict(band_axis=0), ValueError, "3-D stack"),
        (dict(time_axis=5), ValueError, "out of range"),
        (dict(tile_pixels=0), ValueError, "tile_pixels"),
        (dict(stack=np.ones((32768, 1, 1), np.uint16)), ValueError, "exceed 32767"),
    ],
)
def test_bad_input_is_refused_with_the_fix(change, error, message):
    arguments = dict(stack=np.ones((3, 2, 2), np.uint16), exclude=None, q=25, method="lower")
    arguments.update(change)
    with pytest.raises(error, match=message):
        masked_percentile(
            arguments.pop("stack"), arguments.pop("exclude"), arguments.pop("q"), **arguments
        )


def test_four_dimensional_stack_with_time_elsewhere_needs_band_axis():
    with pytest.raises(ValueError, match="needs band_axis"):
        masked_percentile(np.ones((2, 3, 4, 5), np.uint16), None, time_axis=-1)
