"""Composite metrics on small arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from cloudseg.sentinel2 import Grid
from cloudseg.sentinel2.cog import write_cog
from composite.metrics import (
    observation_shares,
    picked_contamination,
    residual_contamination,
    seam_error,
    surface_errors,
)

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


def test_residual_contamination_finds_cloud_and_shadow():
    reference = smooth_surface()
    composite = reference.copy()
    composite[:, :8, :] += 0.3  # 8 rows of residual cloud
    composite[:, 60:, :] *= 0.3  # 4 rows of residual shadow
    composite[:, 30, :] = np.nan  # nodata row is not counted
    result = residual_contamination(composite, reference, BANDS)
    assert result["residual_cloud"] == pytest.approx(8 / 63)
    assert result["residual_shadow"] == pytest.approx(4 / 63)
    assert residual_contamination(reference, reference, BANDS) == {
        "residual_cloud": 0.0,
        "residual_shadow": 0.0,
    }


def test_picked_contamination_uses_truth_of_chosen_date():
    truth = np.zeros((3, 2, 2), np.uint8)
    truth[1, 0, 0] = 1  # chosen date 1 is cloudy at (0, 0)
    truth[2, 1, 1] = 3  # date 2 shadow at (1, 1) but date 0 is chosen there
    index = np.array([[1, 0], [-1, 0]])
    assert picked_contamination(index, truth) == {"picked_contaminated": pytest.approx(1 / 3)}


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
