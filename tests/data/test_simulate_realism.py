"""Realism of simulated scenes, tested rather than assumed: class spectra, shadow geometry and
confusers that defeat a simple brightness threshold."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cloudseg.data.simulate import (
    Atmosphere,
    CirrusLayer,
    CloudLayer,
    HazeLayer,
    World,
    get_site,
    revisit_dates,
)
from cloudseg.data.simulate.surface import DESERT, WATER
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS

BAND = {name: index for index, name in enumerate(L1C_BANDS)}
SIZE = 128


def cumulus(coverage: float, height_km: float = 1.2, key: int = 1) -> CloudLayer:
    return CloudLayer("cumulus", coverage, height_km, 35.0, key)


CIRRUS = CirrusLayer(coverage=0.9, reflectance=0.07, angle_deg=30.0, key=7)

#: name -> (site, month window, atmosphere): each case holds a confuser or a cloud type.
CASES = {
    "alps_winter": ("sim-site02", ("2021-02-01", "2021-02-28"),
                    Atmosphere("partly", (cumulus(0.3),), None, HazeLayer(0.02, 5))),
    "hazy_desert": ("sim-site03", ("2021-04-01", "2021-04-30"),
                    Atmosphere("partly", (cumulus(0.25, key=2),), None, HazeLayer(0.07, 6))),
    "cirrus_fields": ("sim-site01", ("2021-06-01", "2021-06-30"),
                      Atmosphere("partly", (), CIRRUS, None)),
    "low_cloud": ("sim-site05", ("2021-07-01", "2021-07-30"),
                  Atmosphere("partly", (cumulus(0.3, 1.0, key=10),), None, None)),
    "high_cloud": ("sim-site05", ("2021-07-01", "2021-07-30"),
                   Atmosphere("partly", (CloudLayer("altocumulus", 0.4, 8.0, 15.0, 9),), None, None)),
    "frozen_lakes": ("sim-site04", ("2021-02-15", "2021-03-10"),
                     Atmosphere("partly", (cumulus(0.3, key=11),), None, HazeLayer(0.02, 12))),
    "summer_lakes": ("sim-site04", ("2021-07-01", "2021-07-31"),
                     Atmosphere("partly", (cumulus(0.2, key=13),), None, HazeLayer(0.02, 14))),
}  # fmt: skip


@pytest.fixture(scope="module")
def scenes():
    rendered = {}
    for name, (site_id, (start, end), atmosphere) in CASES.items():
        world = World(site_id, seed=0)
        date = revisit_dates(get_site(site_id), start, end)[0]
        grid = world.site.window_grid(3000, 3000, SIZE, SIZE)
        rendered[name] = world.render(grid, date, atmosphere=atmosphere)
    return rendered


def median(scene, band: str, where: np.ndarray, *, surface: bool = False) -> float:
    values = (scene.surface if surface else scene.reflectance)[BAND[band]][where]
    assert values.size > 50, f"only {values.size} pixels for {band}: the case lacks its class"
    return float(np.median(values))


def test_thick_clouds_are_bright_in_all_bands_but_snow_is_dark_in_swir(scenes):
    scene = scenes["alps_winter"]
    thick = scene.mask == THICK_CLOUD
    snow = (scene.mask == CLEAR) & (scene.snow_fraction > 0.9)
    for band in ("B02", "B04", "B08"):
        assert median(scene, band, thick) > 0.45
        assert median(scene, band, snow) > 0.45  # snow is as bright as cloud in the visible
    assert median(scene, "B11", thick) > 0.35
    assert median(scene, "B11", snow) < 0.2
    assert median(scene, "B11", snow) < 0.5 * median(scene, "B11", thick)


def test_cirrus_is_bright_in_b10_and_b10_separates_high_from_low_cloud(scenes):
    cirrus = scenes["cirrus_fields"]
    thin, clear = cirrus.mask == THIN_CLOUD, cirrus.mask == CLEAR
    assert median(cirrus, "B10", thin) > 0.015
    assert median(cirrus, "B10", thin) > 3 * median(cirrus, "B10", clear)
    assert median(cirrus, "B02", thin) < 0.25  # thin: the ground still shows through

    low, high = scenes["low_cloud"], scenes["high_cloud"]
    low_b10 = median(low, "B10", low.mask == THICK_CLOUD)
    high_b10 = median(high, "B10", high.mask == THICK_CLOUD)
    assert low_b10 < 0.06 and high_b10 > 0.1 and high_b10 > 3 * low_b10


def test_cirrus_only_pixels_are_the_ones_clear_without_the_cirrus(scenes):
    cirrus = scenes["cirrus_fields"]  # cirrus and no other cloud: all its thin cloud is cirrus's
    only = World("sim-site01", seed=0).cirrus_only(cirrus)
    np.testing.assert_array_equal(only, cirrus.mask == THIN_CLOUD)
    assert median(cirrus, "B10", only) > 0.015

    low = scenes["low_cloud"]  # no cirrus: nothing is cirrus-only
    assert not World("sim-site05", seed=0).cirrus_only(low).any()

    world = World("sim-site05", seed=0)  # cumulus under cirrus: the cumulus keeps its labels
    both = world.render(low.grid, low.date, atmosphere=replace(low.atmosphere, cirrus=CIRRUS))
    only = world.cirrus_only(both)
    cumulus_cloud = (low.mask == THICK_CLOUD) | (low.mask == THIN_CLOUD)
    assert only.any() and not (only & cumulus_cloud).any()
    assert (both.mask[only] == THIN_CLOUD).all() and (low.mask[only] == CLEAR).all()


def test_cloud_shadows_darken_the_nir_more_than_the_blue(scenes):
    scene = scenes["low_cloud"]
    shadow = scene.mask == CLOUD_SHADOW
    nir_ratio = median(scene, "B08", shadow) / median(scene, "B08", shadow, surface=True)
    blue_ratio = median(scene, "B02", shadow) / median(scene, "B02", shadow, surface=True)
    assert 0.1 < nir_ratio < 0.6
    assert blue_ratio > nir_ratio + 0.1  # diffuse sky light is blue


def test_water_desert_and_frozen_lakes_have_their_signatures(scenes):
    lakes = scenes["summer_lakes"]
    water = (lakes.mask == CLEAR) & (lakes.landcover == WATER)
    assert median(lakes, "B08", water) < 0.08
    assert median(lakes, "B08", water) < median(lakes, "B03", water)
    assert median(lakes, "B11", water) < 0.03

    frozen = scenes["frozen_lakes"]
    ice = (frozen.mask == CLEAR) & (frozen.landcover == WATER)
    assert median(frozen, "B02", ice) > 0.5 and median(frozen, "B11", ice) < 0.2

    desert_scene = scenes["hazy_desert"]
    desert = (desert_scene.mask == CLEAR) & (desert_scene.landcover == DESERT)
    assert median(desert_scene, "B11", desert) > 0.4
    assert median(desert_scene, "B04", desert) > median(desert_scene, "B02", desert)


def test_haze_brightens_the_blue_more_than_the_nir_and_leaves_b10_alone(scenes):
    scene = scenes["hazy_desert"]
    clear = scene.mask == CLEAR

    def added(band: str) -> float:
        index = BAND[band]
        return float(np.median((scene.reflectance[index] - scene.surface[index])[clear]))

    assert added("B02") > 0.01
    assert added("B02") > 2 * added("B08") > 0
    assert abs(added("B10")) < 0.002


def test_shadows_fall_away_from_the_sun_by_height_over_tan_elevation(scenes):
    scene = scenes["low_cloud"]
    height_km = CASES["low_cloud"][2].clouds[0].height_km
    distance_px = height_km * 1000 / math.tan(math.radians(scene.sun_elevation)) / 10
    azimuth = math.radians(scene.sun_azimuth)
    # from a shadow, the cloud lies towards the sun: east by sin(az), north (up) by cos(az)
    to_cloud = np.array([-math.cos(azimuth), math.sin(azimuth)]) * distance_px
    cloudy = np.isin(scene.mask, [THICK_CLOUD, THIN_CLOUD])
    shadow_rows, shadow_cols = np.nonzero(scene.mask == CLOUD_SHADOW)

    def cloud_share(offset: np.ndarray) -> float:
        rows = np.rint(shadow_rows + offset[0]).astype(int)
        cols = np.rint(shadow_cols + offset[1]).astype(int)
        inside = (rows >= 0) & (rows < SIZE) & (cols >= 0) & (cols < SIZE)
        assert inside.sum() > 100, "too few shadows whose cloud is in the window"
        return float(cloudy[rows[inside], cols[inside]].mean())

    assert cloud_share(to_cloud) > 0.95
    assert cloud_share(-to_cloud) < 0.6  # the other way is just the background cloud cover


def test_a_blue_threshold_is_far_from_a_perfect_mask(scenes):
    """``B02 > 0.2`` = cloud: snow and bright, hazy desert are false clouds; thin cloud slips."""
    true_positive = false_positive = false_negative = 0
    for scene in scenes.values():
        valid = scene.valid
        cloud = np.isin(scene.mask, [THICK_CLOUD, THIN_CLOUD]) & valid
        flagged = (scene.reflectance[BAND["B02"]] > 0.2) & valid
        true_positive += int((cloud & flagged).sum())
        false_positive += int((~cloud & flagged).sum())
        false_negative += int((cloud & ~flagged).sum())
    iou = true_positive / (true_positive + false_positive + false_negative)
    assert 0.2 < iou < 0.7, f"IoU {iou:.2f}"

    alps = scenes["alps_winter"]
    snow = (alps.mask == CLEAR) & (alps.snow_fraction > 0.9)
    assert (alps.reflectance[BAND["B02"]][snow] > 0.2).mean() > 0.9
    desert_scene = scenes["hazy_desert"]
    desert = (desert_scene.mask == CLEAR) & (desert_scene.landcover == DESERT)
    assert (desert_scene.reflectance[BAND["B02"]][desert] > 0.2).mean() > 0.05
    cirrus = scenes["cirrus_fields"]
    assert (cirrus.reflectance[BAND["B02"]][cirrus.mask == THIN_CLOUD] <= 0.2).mean() > 0.5
