"""Mapping patch-embedding input channels between band sets by name and wavelength."""

from __future__ import annotations

import pytest
import torch

from cloudseg.models import IMAGENET_BANDS, map_bands_by_wavelength
from cloudseg.sentinel2.bands import BAND_BY_NAME, L1C_BANDS, L2A_BANDS


def _weight(in_chans: int) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(8, in_chans, 4, 4)


def test_rgb_to_l2a_copies_rgb_filters_and_uses_nearest_outside_visible_scaled_by_3_over_c():
    rgb = _weight(3)  # ImageNet channel order R, G, B
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    mapped, note = map_bands_by_wavelength(rgb, IMAGENET_BANDS, L2A_BANDS)
    scale = 3 / len(L2A_BANDS)
    assert mapped.shape == (8, 12, 4, 4)
    expected = {"B04": red, "B03": green, "B02": blue, "B01": blue, "B05": red, "B12": red}
    for band, source in expected.items():
        torch.testing.assert_close(mapped[:, L2A_BANDS.index(band)], source * scale, msg=band)
    assert "scaled by 3/12" in note and "B01<-B02" in note


def test_l1c_to_l2a_selects_the_checkpoint_channels_exactly():
    weight = _weight(13)
    mapped, note = map_bands_by_wavelength(weight, L1C_BANDS, L2A_BANDS)
    keep = [i for i, band in enumerate(L1C_BANDS) if band != "B10"]
    assert torch.equal(mapped, weight[:, keep])
    assert note.startswith("selected bands")


def test_reordering_copies_exactly():
    weight = _weight(4)
    mapped, _ = map_bands_by_wavelength(weight, ("B02", "B03", "B04", "B08"), ("B08", "B02"))
    assert torch.equal(mapped, weight[:, [3, 0]])


def test_band_between_two_source_bands_is_interpolated_by_wavelength():
    weight = _weight(12)
    mapped, note = map_bands_by_wavelength(weight, L2A_BANDS, ("B10", "B02"))
    b09, b10, b11 = (BAND_BY_NAME[name].center_nm for name in ("B09", "B10", "B11"))
    frac = (b10 - b09) / (b11 - b09)
    expected = (1 - frac) * weight[:, L2A_BANDS.index("B09")] + frac * weight[
        :, L2A_BANDS.index("B11")
    ]
    torch.testing.assert_close(mapped[:, 0], expected * 12 / 2)
    torch.testing.assert_close(mapped[:, 1], weight[:, L2A_BANDS.index("B02")] * 12 / 2)
    assert "B10<-0.35*B09+0.65*B11" in note


def test_channel_count_must_match_the_source_bands():
    with pytest.raises(ValueError, match="3 input channels but 4 source bands"):
        map_bands_by_wavelength(_weight(3), ("B02", "B03", "B04", "B08"), L2A_BANDS)
