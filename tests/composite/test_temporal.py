"""The multi-temporal test on tiny made-up stacks: what it flags, what it must not, and the rules."""

from __future__ import annotations

import numpy as np
import pytest

from composite.temporal import (
    FLAG,
    MATCH,
    NEUTRAL,
    STRONG,
    TemporalBands,
    TemporalTest,
    haze_guard_note,
    verdicts,
)
from composite.temporal_rules import ExclusionSources, check_rule, combine

BANDS = ("B02", "B03", "B08", "B10", "B11")
N_DATES = 40
#: Clear-sky reflectance per surface in BANDS order.
SURFACES = {
    "vegetation": (0.07, 0.07, 0.30, 0.003, 0.17),
    "desert": (0.18, 0.24, 0.42, 0.01, 0.55),
    "roof": (0.30, 0.32, 0.35, 0.005, 0.40),
    "snow": (0.85, 0.85, 0.75, 0.01, 0.10),
    "water": (0.08, 0.06, 0.02, 0.002, 0.01),
    "soil": (0.10, 0.12, 0.24, 0.004, 0.32),
}
CLOUD = np.array((0.55, 0.55, 0.52, 0.03, 0.40))


def series(surface: str, seed: int) -> np.ndarray:
    """``(dates, bands)`` reflectance of one clear pixel with 2 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    clear = np.asarray(SURFACES[surface])
    return clear * (1 + 0.02 * rng.standard_normal((N_DATES, len(BANDS))))


def to_stack(pixels: list[np.ndarray]) -> np.ndarray:
    """``(dates, bands, 1, n)`` uint16 DN from per-pixel ``(dates, bands)`` reflectance."""
    values = np.stack(pixels, axis=-1)[:, :, np.newaxis, :]
    return np.clip(np.round(values * 10000), 1, 65535).astype(np.uint16)


def run(stack: np.ndarray, clear: np.ndarray | None = None, **settings) -> np.ndarray:
    clear = np.ones((stack.shape[0], *stack.shape[2:]), bool) if clear is None else clear
    return verdicts(stack, TemporalBands.resolve(BANDS), clear, TemporalTest(**settings))[:, 0]


def flagged(verdict: np.ndarray) -> np.ndarray:
    return verdict >= FLAG


def test_bright_outlier_date_is_flagged_and_permanently_bright_pixels_are_not():
    cloudy = series("vegetation", 0)
    cloudy[7] = 0.6 * CLOUD + 0.4 * cloudy[7]
    thin = series("vegetation", 1)
    thin[12, :2] += 0.06  # thin cloud / haze over vegetation: blue up 0.06
    verdict = run(
        to_stack([cloudy, thin, series("desert", 2), series("roof", 3), series("snow", 4)])
    )
    assert flagged(verdict[7, 0]) and flagged(verdict[12, 1])
    assert flagged(verdict[:, 0]).sum() == 1 and flagged(verdict[:, 1]).sum() == 1
    assert not flagged(verdict[:, 2:]).any(), "desert, roof or permanent snow flagged"
    assert (verdict[:, 2:] == MATCH).mean() > 0.8


def test_shadowed_date_is_flagged_and_permanently_dark_water_is_not():
    shadowed = series("vegetation", 5)
    shadowed[20] *= (0.6, 0.55, 0.35, 1.0, 0.3)  # direct light blocked: NIR/SWIR lose most
    verdict = run(to_stack([shadowed, series("water", 6)]))
    assert verdict[20, 0] >= FLAG
    assert flagged(verdict[:, 0]).sum() == 1
    assert not flagged(verdict[:, 1]).any(), "permanently dark water flagged"


def test_seasonal_change_and_seasonal_snow_are_not_flagged():
    fields = series("vegetation", 7)
    fields[N_DATES // 2 :] = series("soil", 8)[N_DATES // 2 :]  # harvest: soil half the year
    snowy = series("vegetation", 9)
    snowy[:8] = series("snow", 10)[:8]  # winter snow on 8 dates
    verdict = run(to_stack([fields, snowy]))
    assert not flagged(verdict).any()


def test_a_cloudy_majority_still_gets_a_clear_background():
    """Without a single-date mask, 60 % of the dates cloudy: the dark-side screen finds them."""
    pixel = series("vegetation", 11)
    cloudy_dates = np.arange(0, N_DATES, 5).tolist() + np.arange(1, N_DATES, 5).tolist()
    cloudy_dates += np.arange(2, N_DATES, 5).tolist()
    pixel[cloudy_dates] = CLOUD * np.linspace(0.5, 1.0, len(cloudy_dates))[:, None]
    verdict = run(to_stack([pixel]))
    truth = np.zeros(N_DATES, bool)
    truth[cloudy_dates] = True
    assert np.array_equal(flagged(verdict[:, 0]), truth)


def test_pixels_with_too_few_valid_observations_get_no_verdict():
    pixel = series("vegetation", 12)
    pixel[5] = CLOUD
    stack = to_stack([pixel, pixel.copy()])
    stack[N_DATES // 2 :, :, 0, 1] = 0  # second pixel: half its dates nodata
    verdict = run(stack, min_dates=N_DATES // 2 + 1)
    assert verdict[5, 0] >= FLAG
    assert (verdict[:, 1] == NEUTRAL).all()


def test_rules_combine_mask_and_verdicts():
    mask = np.array([True, True, True, False, False, False])
    verdict = np.array([MATCH, NEUTRAL, FLAG, MATCH, FLAG, STRONG], np.uint8)
    assert combine("none", mask, verdict).tolist() == mask.tolist()
    assert combine("union", mask, verdict).tolist() == [1, 1, 1, 0, 1, 1]
    assert combine("veto", mask, verdict).tolist() == [0, 1, 1, 0, 1, 1]
    assert combine("vote", mask, verdict).tolist() == [0, 0, 1, 0, 0, 1]
    with pytest.raises(ValueError, match="masks.temporal='majority'"):
        check_rule("majority")


def test_veto_overrules_single_date_calls_on_a_bright_roof():
    """A single-date mask that calls a bright roof cloud on every date: veto gives it back."""
    stack = to_stack([series("roof", 13)])
    model = np.ones((N_DATES, 1, 1), bool)
    verdict = verdicts(stack, TemporalBands.resolve(BANDS), ~model, TemporalTest())
    excluded = combine("veto", model, verdict)
    assert excluded.mean() < 0.2
    sources = ExclusionSources.of(model, verdict, excluded, np.ones_like(model))
    totals = sources.totals()
    assert totals["overruled"] == N_DATES - excluded.sum()
    assert totals["model"] == excluded.sum() and totals["temporal"] == 0


def test_veto_keeps_single_date_cloud_calls_where_the_stack_is_mostly_cloud():
    """A pixel cloudy on 36 of 40 dates whose mask keeps only 3 clear views (< min_clear): the
    all-observation background is the cloud itself, so no verdict may overrule the mask there,
    whether the 3 clear views are 3 or 4 (the masks of two neighbouring tiles at their edges)."""
    rng = np.random.default_rng(5)
    pixel = series("vegetation", 14)
    cloudy = np.arange(N_DATES) >= 4
    thickness = rng.uniform(0.4, 0.95, cloudy.sum())[:, np.newaxis]
    pixel[cloudy] = thickness * CLOUD + (1 - thickness) * pixel[cloudy]
    stack = to_stack([pixel])
    for clear_views in (3, 4):
        model = np.ones((N_DATES, 1, 1), bool)
        model[:clear_views] = False
        verdict = verdicts(stack, TemporalBands.resolve(BANDS), ~model, TemporalTest(min_clear=5))
        excluded = combine("veto", model, verdict)
        assert excluded[cloudy].all(), f"{clear_views} clear views: a cloudy date given back"
        assert (verdict[:, 0, 0] == NEUTRAL).all()


def test_exclusion_sources_count_each_observation_once():
    mask = np.array([[True], [True], [False], [False], [True]])[:, :, None]
    verdict = np.array([[FLAG], [NEUTRAL], [FLAG], [MATCH], [MATCH]], np.uint8)[:, :, None]
    excluded = combine("veto", mask, verdict)
    counts = ExclusionSources.of(mask, verdict, excluded, np.ones_like(mask)).totals()
    assert counts == {"model": 1, "temporal": 1, "both": 1, "overruled": 1}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_dates": 2}, "min_dates=2"),
        ({"min_clear": 20, "min_dates": 10}, "min_clear=20"),
        ({"k": 0}, "k=0"),
        ({"shadow_floor": 1.5}, "shadow_floor=1.5"),
        ({"match": 1.5}, "match=1.5"),
        ({"passes": 0}, "passes=0"),
    ],
)
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=f"masks.temporal_test.*{message}"):
        TemporalTest(**settings)


def test_bands_without_blue_or_nir_are_refused():
    with pytest.raises(ValueError, match="masks.temporal needs a blue band"):
        TemporalBands.resolve(("B04", "B08"))
    bands = TemporalBands.resolve(("B02", "B04", "B08"))
    assert (bands.swir, bands.cirrus, bands.green) == (None, None, None)


def test_haze_guard_keeps_hazy_views_and_still_flags_clouds():
    """Haze adds more light in the aerosol band B01 than in the blue and little in the SWIR
    (aerosol path reflectance grows towards the short wavelengths); a cloud brightens B01 less
    than the blue, however thin, and a flat veil (eo-learn's real hazy date) brightens the SWIR
    as much as the blue. With the guard (``haze_ratio``, on by default) the hazy view is not a
    cloud by the blue test; without it, it is. A strong departure is a cloud whatever its
    colour."""
    bands = ("B01", "B02", "B03", "B04", "B08", "B11")
    clear = np.array([0.09, 0.06, 0.08, 0.05, 0.30, 0.17])  # vegetation, top of atmosphere
    rng = np.random.default_rng(21)
    pixel = clear * (1 + 0.02 * rng.standard_normal((N_DATES, len(bands))))
    haze = np.array([0.055, 0.05, 0.04, 0.03, 0.015, 0.005])
    pixel[5] = clear + haze  # B01 rose more than the blue
    flat = np.array([0.55, 0.55, 0.55, 0.55, 0.52, 0.40])
    pixel[9] = 0.1 * flat + 0.9 * clear  # thin cloud: blue +0.049, B01 +0.046
    pixel[14] = clear + 2.5 * haze  # dense haze: a strong departure
    pixel[20] = clear + (0.055, 0.05, 0.05, 0.05, 0.05, 0.05)  # a veil: B01 up, and the SWIR
    stack = to_stack([pixel])
    clear_views = np.ones((N_DATES, 1, 1), bool)

    def flags(**settings):
        test = TemporalTest(**settings)
        return verdicts(stack, TemporalBands.resolve(bands), clear_views, test)[:, 0, 0] >= FLAG

    unguarded = flags(haze_ratio=None)
    assert unguarded[[5, 9, 14, 20]].all() and unguarded.sum() == 4
    guarded = flags()
    assert TemporalTest().haze_ratio == 1.0
    assert not guarded[5] and guarded[[9, 14, 20]].all()
    assert guarded.sum() == 3
    without_b01 = verdicts(
        stack[:, 1:], TemporalBands.resolve(bands[1:]), clear_views, TemporalTest()
    )[:, 0, 0]
    assert (without_b01 >= FLAG)[5], "no B01: no guard"
    with pytest.raises(ValueError, match="haze_ratio=2.5"):
        TemporalTest(haze_ratio=2.5)
    assert haze_guard_note(TemporalBands.resolve(bands), TemporalTest()).startswith("on: B01")
    off = haze_guard_note(TemporalBands.resolve(bands), TemporalTest(haze_ratio=None))
    assert off == "off: masks.temporal_test.haze_ratio=null"


def test_snow_brightening_b10_is_not_cirrus_but_cirrus_over_snow_is():
    """Dry winter air lets bright snow show in the B10 cirrus band; over snow-like views B10
    flags only at its strong limit, which real cirrus reaches."""
    snowy = series("vegetation", 23)
    snowy[:8] = series("snow", 24)[:8]
    snowy[:8, 3] = 0.016  # B10 over snow: 0.013 above the vegetation's 0.003
    snowy[4, 3] = 0.04  # cirrus over the snow
    verdict = run(to_stack([snowy]))
    assert flagged(verdict[4])
    assert flagged(verdict).sum() == 1
