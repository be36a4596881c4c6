"""Composite metrics on small arrays with known answers, and the residual cloud measure checked
against the percentile kernel it explains."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudseg.sentinel2 import Grid
from cloudseg.sentinel2.cog import write_cog
from composite.metrics import (
    brightness_against_reference,
    composite_truth_contamination,
    observation_shares,
    percentile_observations,
    residual_shares,
    seam_error,
    surface_errors,
    truth_contamination,
)
from composite.percentile import METHODS, NO_VALID_POLICIES, masked_percentile
from composite.percentile.ranks import rank_table

BANDS = ["B02", "B03", "B04", "B08"]


def smooth_surface(height=64, width=64, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 0.08 + 0.04 * np.sin(x / 7.0) * np.cos(y / 9.0)
    return np.stack([base * f for f in (1.0, 1.1, 0.9, 3.0)]).astype(np.float32) + rng.normal(
        0, 0.002, (4, height, width)
    ).astype(np.float32)


def test_observation_shares():
    count = np.array([[0, 1, 2], [3, 10, 0]])
    shares = observation_shares(count)
    assert shares == pytest.approx(
        {"share_clear_obs_0": 2 / 6, "share_clear_obs_1_2": 2 / 6, "share_clear_obs_3plus": 2 / 6}
    )
    inside = np.array([[False, True, True], [True, True, False]])
    assert observation_shares(count, inside)["share_clear_obs_0"] == 0.0


def test_brightness_against_reference_finds_brighter_and_darker_pixels():
    reference = smooth_surface()
    composite = reference.copy()
    composite[:, :8, :] += 0.3  # 8 rows brighter (residual cloud, or a snowier sample)
    composite[:, 60:, :] *= 0.3  # 4 rows darker
    composite[:, 30, :] = np.nan  # nodata row is not counted
    result = brightness_against_reference(composite, reference, BANDS)
    assert result["brighter_than_reference"] == pytest.approx(8 / 63)
    assert result["darker_than_reference"] == pytest.approx(4 / 63)
    assert brightness_against_reference(reference, reference, BANDS) == {
        "brighter_than_reference": 0.0,
        "darker_than_reference": 0.0,
    }


# -- residual cloud and shadow against the truth masks -------------------------------------------

CLEAR, THICK, THIN, SHADOW, NODATA = 0, 1, 2, 3, 255


def one_band_series(*series: list[int]) -> np.ndarray:
    """(time, 1 band, 1, n pixels) uint16 stack from one value list per pixel."""
    return np.array(series, np.uint16).T[:, None, None, :]


def truth_of(*series: list[int]) -> np.ndarray:
    """(time, 1, n pixels) uint8 truth classes from one class list per pixel."""
    return np.array(series, np.uint8).T[:, None, :]


def test_truth_contamination_looks_up_every_used_date():
    truth = np.zeros((3, 2, 2), np.uint8)
    truth[1, 0, 0] = THIN  # band 0 uses date 1 at (0, 0): cloud
    truth[2, 1, 1] = SHADOW  # only band 1 uses date 2 at (1, 1): shadow (any band counts)
    truth[2, 0, 1] = THICK  # date 2 is cloudy at (0, 1), but no band uses it
    used = np.array([[[1, 0], [-1, 0]], [[0, 1], [-1, 2]]])
    result = truth_contamination(used, truth)
    assert result.cloud.tolist() == [[True, False], [False, False]]
    assert result.shadow.tolist() == [[False, False], [False, True]]
    assert result.valid.tolist() == [[True, True], [False, True]]
    assert result.counts().tolist() == [1, 1, 3]
    assert residual_shares(result.counts()) == {"residual_cloud": 1 / 3, "residual_shadow": 1 / 3}
    with pytest.raises(ValueError, match="out/composite.tif has no pixel with a value"):
        residual_shares(np.zeros(3, np.int64), "out/composite.tif")


def test_linear_uses_the_two_order_statistics_around_the_percentile():
    # 5 kept dates, sorted values 10 20 30 40 50 at dates 1 4 2 3 0
    values = [50, 10, 30, 40, 20]
    stack = one_band_series(values, values, values)
    truth = truth_of(
        [CLEAR, CLEAR, CLEAR, CLEAR, THICK],  # date 4 is rank 1: the 25th percentile itself
        [THICK, CLEAR, CLEAR, CLEAR, CLEAR],  # date 0 is rank 4: not used
        [CLEAR, CLEAR, THIN, CLEAR, CLEAR],  # date 2 is rank 2: used by q=30, not by q=25
    )
    exclude = np.zeros((5, 1, 3), bool)
    # q=25: h = 4 * 0.25 = 1 exactly, the upper statistic has weight 0 and is not used
    used = percentile_observations(stack, exclude, 25, "linear")
    assert used[:, 0, 0].T.tolist() == [[4, -1]] * 3
    q25 = composite_truth_contamination(stack, exclude, truth, 25, "linear")
    assert q25.cloud[0].tolist() == [True, False, False]
    # q=30: h = 1.2, values at ranks 1 and 2 (dates 4 and 2)
    assert percentile_observations(stack, exclude, 30, "linear")[:, 0, 0].T.tolist() == (
        [[4, 2]] * 3
    )
    q30 = composite_truth_contamination(stack, exclude, truth, 30, "linear")
    assert q30.cloud[0].tolist() == [True, False, True]
    # lower picks rank floor(1.2) = 1 only
    lower = composite_truth_contamination(stack, exclude, truth, 30, "lower")
    assert lower.cloud[0].tolist() == [True, False, False]
    assert not q30.shadow.any() and q30.valid.all()


def test_excluded_observations_are_not_used_and_shift_the_ranks():
    values = [50, 10, 30, 40, 20]
    stack = one_band_series(values)
    truth = truth_of([CLEAR, CLEAR, CLEAR, CLEAR, SHADOW])
    exclude = np.zeros((5, 1, 1), bool)
    assert composite_truth_contamination(stack, exclude, truth, 25).shadow.all()
    exclude[4] = True  # the shadow (rank 1) is masked: 4 kept, h = 0.75 between 10 and 30
    used = percentile_observations(stack, exclude, 25)
    assert used[:, 0, 0, 0].tolist() == [1, 2]
    result = composite_truth_contamination(stack, exclude, truth, 25)
    assert not result.shadow.any() and not result.cloud.any() and result.valid.all()
    exclude[:] = True  # nothing kept: no value, nothing counted
    empty = composite_truth_contamination(stack, exclude, truth, 25)
    assert not empty.valid.any() and not empty.shadow.any()
    fallback = composite_truth_contamination(stack, exclude, truth, 25, no_valid="all_observations")
    assert fallback.valid.all() and fallback.shadow.all()  # it falls back to every observation


def test_nodata_in_one_band_drops_the_observation_from_every_band():
    # band 0 alone would use date 0 (rank 1 of 10 20 30 40 50); date 0 has nodata in band 1
    band0 = [20, 10, 30, 40, 50]
    band1 = [0, 500, 300, 400, 200]
    stack = np.array([band0, band1], np.uint16).T[:, :, None, None]
    exclude = np.zeros((5, 1, 1), bool)
    truth = truth_of([THICK, CLEAR, CLEAR, CLEAR, CLEAR])
    used = percentile_observations(stack, exclude, 25)
    assert used[:, :, 0, 0].tolist() == [[1, 4], [2, 2]]  # 4 kept: h = 0.75 in both bands
    assert not composite_truth_contamination(stack, exclude, truth, 25).cloud.any()
    np.testing.assert_allclose(
        masked_percentile(stack, exclude, 25).composite[:, 0, 0], [10 + 0.75 * 20, 200 + 0.75 * 100]
    )


def test_tied_values_are_made_of_their_earliest_date_as_the_provenance_says():
    stack = one_band_series([30, 10, 10, 10, 30])  # rank 1 is 10, held by dates 1, 2 and 3
    exclude = np.zeros((5, 1, 1), bool)
    used = percentile_observations(stack, exclude, 25, "lower")
    assert used[0, 0, 0, 0] == 1
    assert masked_percentile(stack, exclude, 25, method="lower").index[0, 0] == 1
    assert percentile_observations(stack, exclude, 100, "linear")[:, 0, 0, 0].tolist() == [0, -1]


def test_observation_inputs_are_checked():
    exclude = np.zeros((2, 1, 1), bool)
    with pytest.raises(ValueError, match="uint16"):
        percentile_observations(np.zeros((2, 1, 1, 1), np.float32), exclude, 25)
    with pytest.raises(ValueError, match="method='higher'"):
        percentile_observations(np.zeros((2, 1, 1, 1), np.uint16), exclude, 25, "higher")
    with pytest.raises(ValueError, match=r"exclude \(3, 1, 1\)"):
        percentile_observations(np.zeros((2, 1, 1, 1), np.uint16), np.zeros((3, 1, 1), bool), 25)


@st.composite
def masked_dn_stacks(draw):
    """(stack (time, band, y, x) uint16 with nodata 0 and ties, exclude, truth classes)."""
    n_dates, n_bands = draw(st.integers(1, 9)), draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # few distinct values: many ties, also at the top of the range; some nodata (0)
    low, high = draw(st.sampled_from([(0, 3), (0, 50), (0, 65536), (65533, 65536)]))
    stack = rng.integers(low, high, (n_dates, n_bands, height, width)).astype(np.uint16)
    stack[rng.random(stack.shape) < 0.05] = 0
    truth = rng.choice(np.array([CLEAR, THICK, THIN, SHADOW, NODATA], np.uint8), stack[:, 0].shape)
    exclude = rng.random(truth.shape) < draw(st.sampled_from([0.0, 0.3, 0.8]))
    return stack, exclude, truth


@settings(max_examples=150, deadline=None)
@given(
    data=masked_dn_stacks(),
    q=st.one_of(st.sampled_from([0, 25, 50, 100]), st.floats(0, 100)),
    method=st.sampled_from(METHODS),
    no_valid=st.sampled_from(NO_VALID_POLICIES),
)
def test_the_used_observations_give_the_kernels_composite(data, q, method, no_valid):
    """The dates found are the ones the kernel's values are made of: for picks they are its
    provenance, for linear their values interpolated with the kernel's weight are its value."""
    stack, exclude, _ = data
    result = masked_percentile(stack, exclude, q, method=method, no_valid=no_valid)
    used = percentile_observations(stack, exclude, q, method, no_valid=no_valid)
    has_value = (result.count > 0) | result.fallback
    assert ((used[0] >= 0) == has_value).all()
    if method != "linear":
        np.testing.assert_array_equal(used[0], result.index)
        assert (used[1] == -1).all()
        return
    n_kept = np.where(result.fallback, (stack != 0).all(axis=1).sum(axis=0), result.count)
    weight = rank_table(np.array([q]), stack.shape[0], method).weight[0][n_kept]
    assert ((used[1] >= 0) == (has_value & (weight > 0))).all()
    lower, upper = (
        np.take_along_axis(stack, np.maximum(dates, 0)[None], axis=0)[0].astype(np.float64)
        for dates in (used[0], np.where(used[1] >= 0, used[1], used[0]))
    )
    expected = lower + weight[None] * (upper - lower)
    np.testing.assert_allclose(result.composite[:, has_value], expected[:, has_value], rtol=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    data=masked_dn_stacks(),
    q=st.floats(0, 100),
    method=st.sampled_from(METHODS),
    extra_share=st.sampled_from([0.0, 0.5]),
)
def test_a_composite_masked_by_the_truth_has_no_residual_cloud(data, q, method, extra_share):
    """Excluding what the truth calls cloud or shadow (and maybe more) leaves none of it."""
    stack, exclude, truth = data
    by_truth = np.isin(truth, (THICK, THIN, SHADOW)) | (exclude & (extra_share > 0))
    result = composite_truth_contamination(stack, by_truth, truth, q, method)
    assert not result.cloud.any() and not result.shadow.any()
    unmasked = composite_truth_contamination(stack, np.zeros_like(by_truth), truth, q, method)
    assert (result.valid <= unmasked.valid).all()


def test_surface_errors_against_reference():
    reference = smooth_surface()
    perfect = surface_errors(reference, reference, BANDS)
    assert perfect["mae_B02"] == 0.0 and perfect["ssim_B08"] == pytest.approx(1.0)
    noisy = reference + np.random.default_rng(1).normal(0, 0.02, reference.shape).astype(np.float32)
    errors = surface_errors(noisy, reference, BANDS)
    assert 0.012 < errors["mae_B03"] < 0.02 and 0.017 < errors["rmse_B03"] < 0.023
    assert errors["ssim_B03"] < 0.9
    with pytest.raises(ValueError, match="same shape"):
        surface_errors(noisy[:3], reference, BANDS)


def write_tile(path, reflectance, x0):
    grid = Grid("EPSG:32631", Affine(10, 0, x0, 0, -10, 5000040), *reflectance.shape[1:])
    dn = np.rint(reflectance * 10000).astype(np.uint16)
    return write_cog(path, dn, grid, nodata=0, band_names=BANDS)


def test_seam_error_on_overlap(tmp_path):
    world = smooth_surface(64, 100)
    west = write_tile(tmp_path / "west.tif", world[:, :, :64], 399960)
    east = write_tile(tmp_path / "east.tif", world[:, :, 36:], 399960 + 360)  # 28 px overlap
    same = seam_error(west, east)
    assert same["seam_overlap_px"] == 64 * 28 and same["seam_mae"] == 0.0
    shifted = world.copy()
    shifted[:, :, 36:] += 0.02
    east_off = write_tile(tmp_path / "east_off.tif", shifted[:, :, 36:], 399960 + 360)
    seam = seam_error(west, east_off)
    assert seam["seam_mae"] == pytest.approx(0.02, abs=2e-4)
    assert seam["seam_share_over_tol"] == 1.0
    far = write_tile(tmp_path / "far.tif", world[:, :, :64], 499960)
    with pytest.raises(ValueError, match="do not overlap"):
        seam_error(west, far)
