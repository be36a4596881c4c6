"""The haze augmentation lays the simulator's haze over a chip and leaves the labels alone."""

import numpy as np
import pytest

from cloudseg.data.simulate import HazeLayer
from cloudseg.data.transforms import build_train_transform
from cloudseg.sentinel2.bands import L1C_BANDS

BANDS = ["B02", "B04", "B08", "B10", "B11", "B12"]


def hazed(strength: float, bands=BANDS, surface: float = 0.05, seed: int = 0):
    transform = build_train_transform(
        32, bands=bands, haze_p=1.0, haze_range=(strength, strength), flips=False,
        rotate90=False, scale_range=None, radiometric_p=0.0, seed=seed,
    )  # fmt: skip
    image = np.full((32, 32, len(bands)), surface, np.float32)
    image[0, 0, :] = np.nan
    mask = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 4
    out = transform(image=image, mask=mask)
    return image, mask, out["image"], out["mask"]


def test_haze_is_the_simulators_over_a_chip_and_leaves_mask_and_nodata():
    image, mask, out, out_mask = hazed(0.1)
    np.testing.assert_array_equal(out_mask, mask)
    assert np.isnan(out[0, 0]).all()
    path = (out[1:, 1:] - 0.05) / (1 - 0.05)  # reflectance * (1 - path) + path
    blue = path[..., 0]
    assert blue.min() >= 0.03 - 1e-6 and blue.max() <= 0.1 + 1e-6  # 30-100 % of the strength
    assert blue.max() - blue.min() > 0.01  # a smooth field, not a constant
    layer = HazeLayer(0.1, key=3).path_reflectance(np.arange(4.0), np.zeros(1))
    simulator = layer[[L1C_BANDS.index(b) for b in BANDS], 0, 0]
    relative = simulator / simulator[0]
    np.testing.assert_allclose(
        path / blue[..., None], np.broadcast_to(relative, path.shape), rtol=1e-4
    )
    assert np.all(path[..., BANDS.index("B10")] == 0)  # none in the cirrus band
    assert np.all(np.diff(path[..., [0, 1, 2, 4, 5]], axis=-1) < 0)  # falls with wavelength


def test_haze_is_off_by_default_and_needs_bands():
    image, _, out, _ = hazed(0.1, seed=1)
    plain = build_train_transform(32, flips=False, rotate90=False, scale_range=None,
                                  radiometric_p=0.0)  # fmt: skip
    np.testing.assert_array_equal(plain(image=image)["image"], image)
    with pytest.raises(ValueError, match="bands"):
        build_train_transform(32, haze_p=0.5)


def test_haze_draws_repeat_by_seed():
    assert np.array_equal(hazed(0.08, seed=5)[2], hazed(0.08, seed=5)[2], equal_nan=True)
    assert not np.array_equal(hazed(0.08, seed=5)[2], hazed(0.08, seed=6)[2], equal_nan=True)


def test_brightness_scales_every_band_alike_and_leaves_the_mask():
    transform = build_train_transform(
        16, brightness_p=1.0, brightness_range=(1.1, 1.3), flips=False, rotate90=False,
        scale_range=None, radiometric_p=0.0, seed=3,
    )  # fmt: skip
    image = np.random.default_rng(0).uniform(0.05, 0.9, (16, 16, 4)).astype(np.float32)
    image[0, 0, :] = np.nan
    mask = np.full((16, 16), 2, np.uint8)
    out = transform(image=image, mask=mask)
    gain = out["image"][1:, 1:] / image[1:, 1:]
    assert gain.min() >= 1.1 and np.ptp(gain) < 1e-5  # one gain, every band and pixel
    assert np.isnan(out["image"][0, 0]).all() and np.array_equal(out["mask"], mask)
