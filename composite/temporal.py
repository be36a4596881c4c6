"""The stack as evidence: a multi-temporal cloud and shadow test for every observation of a window.

A composite sees each pixel tens to hundreds of times. A single-date mask judges every view alone;
the stack knows what the clear ground looks like at each pixel. This module turns one window's
stack (dates x bands x h x w reflectance, harmonised DN) and the single-date exclusion into a
*verdict* per observation: does the view match the pixel's clear background within its noise, or
does it depart from it the way a cloud (brighter in the blue, brighter in the B10 cirrus band) or
a cloud shadow (darker in both the NIR and the SWIR) does?

How the operational processors do it, and what is taken from each:

- **Tmask** (Zhu & Woodcock 2014) fits a robust harmonic model per pixel to the observations
  Fmask calls clear (at least 15, three years) and flags an observation whose blue (B2) is more
  than 0.04 above the prediction as cloud, and whose NIR and SWIR1 are both more than 0.04 below
  it as shadow. Taken: the background comes from the clear observations of the single-date mask
  (falling back to all observations where too few are clear), the band logic (blue up = cloud,
  NIR *and* SWIR down = shadow), and the robust fit. Not taken: the harmonic model, which needs
  several years and breaks on crop rotations; a per-pixel percentile background needs neither.
- **Multi-temporal Fmask / MFmask** (Candra et al.) compare with clear reference dates and use
  NDSI to keep snow apart. Taken: a view that looks like snow (NDSI = (B03 - B11) / (B03 + B11)
  above ``snow_ndsi``) is never a cloud by the blue test: snow is bright in the visible and dark
  in the SWIR, thick cloud is bright in both (NDSI about 0.1-0.3).
- **MAJA** (Hagolle et al. 2010) flags a view whose blue rose above a recent cloud-free composite
  by more than a threshold that grows with the time since that composite, and lifts the flag
  where the local pattern correlates with the reference. Taken: the threshold scales with how
  much the pixel varies (its noise), so seasonal change within the stack's usual range is not a
  departure. Not taken: the spatial correlation test, which needs a halo around each window; the
  test stays per pixel, so a window's verdicts equal the whole stack's.

The test, per window:

1. **Base set** per pixel: the observations the single-date mask calls clear (masks ``none``: all
   of them). Where fewer than ``min_clear`` are clear, the background is taken from every valid
   observation, and it is trusted only where it is *stable* (every test band's noise threshold
   at its floor: a roof, a desert, permanent snow the single-date mask calls cloud on every date);
   elsewhere those pixels get no verdict (``NEUTRAL``: the single-date call stands). On a site
   cloudy on 9 dates in 10 the all-observation background is the cloud itself: an earlier
   version trusted it everywhere, so thick clouds *matched* it and were overruled, and the switch
   between the two backgrounds followed small differences of the single-date masks at tile edges
   (the seam error against the neighbouring tile rose 6-fold, ``experiments/temporal``).
2. **Dark-side cloud screen**: the single-date mask may have missed many clouds (or there is
   none), and a cloudy majority moves a median. Clouds only brighten the blue and B10, so their
   lower quartile (centre) and P10-P25 spread (noise) are still the clear ground's on a pixel
   cloudy on up to ~70 % of its dates; views brighter than that by the cloud test below leave
   the base set (like Tmask's iterative reweighting of its robust fit).
3. **Background and noise** per pixel and test band from what is left, with the composite's own
   masked-percentile kernel: the median is the background, the interquartile range / 1.349 the
   noise (a robust standard deviation: a minority of missed clouds or shadows moves neither).
   Shadow bands are judged in log reflectance (a shadow multiplies the direct light), cloud bands
   in reflectance (a cloud adds light). With ``passes`` > 1 it is estimated again without the
   views the last estimate flagged.
4. **Departure** of every observation in noise units, with a floor per test so that a very
   stable pixel (water, desert) is not flagged for sensor noise: cloud where the blue departs
   upward by ``max(k * noise, cloud_floor)`` (never for snow-like views, nor, below ``strong``
   thresholds, for haze-like ones: see ``haze_ratio``) or B10 by ``max(k * noise, cirrus_floor)``
   (where the stack has B10; for snow-like views only by ``strong`` thresholds: dry winter air
   lets bright snow show in B10, as Fmask's cirrus test knows); shadow where the NIR darkens by
   ``max(k * noise, shadow_floor)`` in log reflectance and the SWIR darkens too (by any amount:
   seasonal snow widens the SWIR's spread, and snow melt, harvest, senescence and burns all
   brighten the SWIR while darkening the NIR; only a shadow, or new water, darkens both).

Why permanent surfaces are not flagged: a bright desert, a roof or permanent snow is bright on
every date, so its background is bright and its views do not depart; water is dark on every date,
so its background is dark. Seasonal change (crops, leaf-off, seasonal snow) widens the pixel's
spread, so its usual range is within noise; a green-up brightens the NIR and darkens the SWIR,
a harvest the opposite, never both down like a shadow; seasonal snow is snow-like (NDSI).

Verdicts (uint8 per observation): ``MATCH`` (every test band within ``match`` of its threshold:
the view looks like the clear background), ``NEUTRAL`` (no clear opinion, or too few valid
observations at the pixel), ``FLAG`` (departs like a cloud or shadow), ``STRONG`` (departs by
``strong`` thresholds or more). :mod:`composite.temporal_rules` combines them with the
single-date exclusion. Everything here is numpy and the percentile kernel: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from composite.percentile import masked_percentile

NEUTRAL, MATCH, FLAG, STRONG = 0, 1, 2, 3
VERDICT_NAMES = ("neutral", "match", "flag", "strong")
#: Harmonised DN per unit reflectance (composite DN have offset 0).
DN_SCALE = 10000.0
#: IQR of a normal distribution in standard deviations.
IQR_PER_SIGMA = 1.349
#: Reflectance below which a band is treated as this value in log space (no log of 0).
LOG_FLOOR = 0.005

#: Test bands, in order of preference (the first present in the composite's bands is used).
BLUE_BANDS = ("B02", "B01", "B03")
NIR_BANDS = ("B08", "B8A")
SWIR_BANDS = ("B11", "B12")
CIRRUS_BANDS = ("B10",)
GREEN_BANDS = ("B03",)
AEROSOL_BANDS = ("B01",)


@dataclass(frozen=True)
class TemporalTest:
    """The test's settings (``masks.temporal_test`` in ``conf/composite.yaml``).

    ``k`` and ``cloud_floor`` were chosen on two overlapping tiles of ``sim-site01`` (farmland,
    forest, lakes, winter snow) with a demo model; the demo's own tiles (``sim-site09``, cloudy
    tropical mountains) and a desert site (``sim-site03``) are held out (``experiments/temporal``).
    Lower values catch more thin cloud and drop more clear (hazy) views.

    Attributes:
        min_dates: a stack with fewer dates runs without the test (said in the log and run.json),
            and a pixel with fewer valid observations gets no verdict (``NEUTRAL``). 15 is
            Tmask's minimum of clear observations for a per-pixel model.
        min_clear: a pixel with fewer clear observations (by the single-date mask) takes its
            background from all its valid observations, and gets a verdict only where that
            background is stable.
        k: departure threshold in noise units (robust standard deviations).
        cloud_floor: smallest blue brightening (reflectance) that flags a cloud.
        cirrus_floor: smallest B10 brightening (reflectance) that flags cirrus.
        shadow_floor: smallest NIR darkening, as a fraction of the background
            (0.25: the view is at most 75 % of it).
        snow_ndsi: views with NDSI above this are snow-like: never clouds by the blue test.
        match: a view matches the background where every test band departs by less than this
            share of its threshold.
        strong: a departure of this many thresholds is ``STRONG``.
        passes: full background estimates after the screen; each later one drops the views the
            last one flagged (1 measured as good as 2 on the demo tiles, at less cost).
        haze_ratio: the haze guard (``None``: off; it also needs B01 among the composite's
            bands). Aerosol scattering grows towards the short wavelengths, a cloud's
            reflectance does not: a view whose blue rose (by less than ``strong`` thresholds)
            and whose aerosol band B01 rose by ``haze_ratio`` times as much or more, while its
            SWIR rose less than the blue (aerosol path reflectance at 1.6 um is a fifth of the
            blue's; a thin cloud brightens every band alike, as on eo-learn's real hazy date),
            is haze, not a cloud by the blue test (B10 still flags cirrus). 1.0 is the physical
            boundary, not a tuned value; on the simulated sites the guard keeps most of the
            hazy clear views the test would otherwise drop (nine in ten on the hazy desert), for
            a little more thin cloud, and on the real eo-learn series it flags 0.85 of the
            veiled date instead of 0.93 (``experiments/temporal``).
    """

    min_dates: int = 15
    min_clear: int = 5
    k: float = 1.75
    cloud_floor: float = 0.0375
    cirrus_floor: float = 0.01
    shadow_floor: float = 0.25
    snow_ndsi: float = 0.5
    match: float = 0.5
    strong: float = 2.0
    passes: int = 1
    haze_ratio: float | None = 1.0

    def __post_init__(self) -> None:
        key = "masks.temporal_test"
        if self.min_dates < 3:
            raise ValueError(
                f"{key}.min_dates={self.min_dates} must be >= 3 (a median and a spread)."
            )
        if not 1 <= self.min_clear <= self.min_dates:
            raise ValueError(
                f"{key}.min_clear={self.min_clear} must lie in [1, min_dates={self.min_dates}]."
            )
        for name in ("k", "cloud_floor", "cirrus_floor", "shadow_floor", "match", "strong"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{key}.{name}={getattr(self, name)} must be > 0.")
        if self.shadow_floor >= 1:
            raise ValueError(f"{key}.shadow_floor={self.shadow_floor} is a fraction: use < 1.")
        if not self.match < 1 < self.strong:
            raise ValueError(
                f"{key}: match={self.match} must be < 1 < strong={self.strong} (thresholds)."
            )
        if self.passes < 1:
            raise ValueError(f"{key}.passes={self.passes} must be >= 1.")
        if self.haze_ratio is not None and not 0 < self.haze_ratio <= 2:
            raise ValueError(
                f"{key}.haze_ratio={self.haze_ratio} must lie in (0, 2] (or null: no haze guard)."
            )

    def record(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class TemporalBands:
    """Indices of the test bands in the composite's bands (``None``: absent)."""

    blue: int
    nir: int
    swir: int | None
    cirrus: int | None
    green: int | None
    aerosol: int | None = None

    @classmethod
    def resolve(cls, bands: tuple[str, ...]) -> TemporalBands:
        """The test bands among ``bands``; blue and NIR are required."""

        def first(candidates: tuple[str, ...]) -> int | None:
            return next((bands.index(b) for b in candidates if b in bands), None)

        blue, nir = first(BLUE_BANDS), first(NIR_BANDS)
        if blue is None or nir is None:
            raise ValueError(
                f"masks.temporal needs a blue band ({'/'.join(BLUE_BANDS)}) and a NIR band "
                f"({'/'.join(NIR_BANDS)}) among the composite's bands {list(bands)}; add them to "
                "composite.bands or set masks.temporal=none."
            )
        return cls(blue, nir, first(SWIR_BANDS), first(CIRRUS_BANDS), first(GREEN_BANDS),
                   first(AEROSOL_BANDS))  # fmt: skip

    def used(self) -> tuple[int, ...]:
        return tuple(i for i in (self.blue, self.nir, self.swir, self.cirrus) if i is not None)


def valid_observations(stack: np.ndarray) -> np.ndarray:
    """``(dates, h, w)``: True where no band of the observation is nodata (0)."""
    return (stack != 0).all(axis=1)


def base_set(valid: np.ndarray, clear: np.ndarray, min_clear: int) -> np.ndarray:
    """The observations the background is taken from: ``clear`` (and valid) where a pixel has at
    least ``min_clear`` of them, else every valid one."""
    clear = clear & valid
    enough = clear.sum(axis=0) >= min_clear
    return np.where(enough[np.newaxis], clear, valid)


@dataclass(frozen=True)
class Background:
    """Per test band ``(h, w)`` arrays: centre and noise (reflectance, or log for shadow bands)."""

    centre: dict[int, np.ndarray]
    noise: dict[int, np.ndarray]


#: (percentiles, which of them is the centre, the normal quantile distance they span): the full
#: background (median, IQR) and the dark-side screen (lower quartile, P10-P25) that a cloudy
#: majority does not move.
FULL = ((25.0, 50.0, 75.0), 1, IQR_PER_SIGMA)
DARK_SIDE = ((10.0, 25.0), 1, 0.6745 - 0.2533)


def background(
    stack: np.ndarray, base: np.ndarray, bands: tuple[int, ...], log_bands: tuple[int, ...],
    statistic: tuple = FULL,
) -> Background:  # fmt: skip
    """Centre and robust spread of ``bands`` over ``base`` (the percentile kernel), in log
    reflectance for ``log_bands``; ``statistic`` is :data:`FULL` or :data:`DARK_SIDE`."""
    q, centre_at, span = statistic
    centre, noise = {}, {}
    for band in bands:
        result = masked_percentile(
            stack[:, band], ~base, q, method="lower", nodata=0, out_dtype=np.float32
        )  # lower: one order statistic per q (linear reads two), plenty for a noise scale
        values = result.composite / np.float32(DN_SCALE)
        if band in log_bands:
            values = np.log(np.maximum(values, np.float32(LOG_FLOOR)))
        centre[band] = values[centre_at]
        noise[band] = (values[-1] - values[0]) / np.float32(span)
    return Background(centre, noise)


#: Rows of :func:`bounds`: where a test band's value (DN) stops matching, flags, flags strongly.
MATCH_LOW, MATCH_HIGH, FLAG_AT, STRONG_AT = range(4)


@njit(parallel=True, cache=True)
def _score(stack, test_bands, limits, centres, snow_ndsi, haze_ratio, cloud_only, out):
    """``out[t, y, x]``: the verdict of each observation, by comparisons with ``limits``.

    test_bands: int64 [blue, nir, swir, cirrus, green, aerosol] indices into the stack's bands,
    -1 where absent; limits: ``(4 test bands, 4, h, w)`` float32 DN (see :func:`limits`);
    centres: ``(2, h, w)`` float32 DN, the blue and aerosol backgrounds the guards measure rises
    from; haze_ratio: 0 = no haze guard. A view is cloud where blue >= its flag limit, unless
    snow-like or (below ``STRONG``) haze-like (the aerosol band rose by ``haze_ratio`` x the
    blue's rise or more, the SWIR by less than the blue); or where B10 >= its flag limit (for
    snow-like views: its strong limit). Shadow where NIR <= its flag limit and the SWIR is below
    its centre. It matches where every test band is in its match range.
    """
    n_dates, _, height, width = stack.shape
    blue, nir, swir, cirrus, green, aerosol = test_bands
    for y in prange(height):
        for t in range(n_dates):  # x innermost: contiguous reads
            for x in range(width):
                b = np.float32(stack[t, blue, y, x])
                rise = b - centres[0, y, x]
                fit = limits[0, MATCH_LOW, y, x] <= b <= limits[0, MATCH_HIGH, y, x]
                level = 0  # 0 none, 1 flag, 2 strong
                if b >= limits[0, FLAG_AT, y, x]:
                    level = 2 if b >= limits[0, STRONG_AT, y, x] else 1
                s = np.float32(0.0)
                snow = False
                if swir >= 0:
                    s = np.float32(stack[t, swir, y, x])
                    if green >= 0:
                        g = np.float32(stack[t, green, y, x])
                        snow = g - s > snow_ndsi * (g + s)
                if level == 1 and haze_ratio > 0 and aerosol >= 0:
                    aerosol_rise = np.float32(stack[t, aerosol, y, x]) - centres[1, y, x]
                    # the SWIR's flag limit is its centre (inf in the cloud-only screen)
                    swir_rise = s - limits[2, FLAG_AT, y, x] if swir >= 0 else np.float32(0.0)
                    if aerosol_rise >= haze_ratio * rise and swir_rise < rise:
                        level = 0  # haze-like: aerosol scattering grows towards the short waves
                if snow:
                    level = 0  # snow-like: not a cloud by the blue test
                if cirrus >= 0:
                    c = np.float32(stack[t, cirrus, y, x])
                    fit = fit and limits[3, MATCH_LOW, y, x] <= c <= limits[3, MATCH_HIGH, y, x]
                    if c >= limits[3, STRONG_AT, y, x]:
                        level = 2
                    elif c >= limits[3, FLAG_AT, y, x] and not snow:
                        level = max(level, 1)  # dry air over snow shows the ground in B10
                if not cloud_only:
                    n = np.float32(stack[t, nir, y, x])
                    fit = fit and limits[1, MATCH_LOW, y, x] <= n <= limits[1, MATCH_HIGH, y, x]
                    darker = True
                    if swir >= 0:
                        fit = fit and limits[2, MATCH_LOW, y, x] <= s <= limits[2, MATCH_HIGH, y, x]
                        darker = s < limits[2, FLAG_AT, y, x]
                    if darker and n <= limits[1, STRONG_AT, y, x]:
                        level = 2
                    elif darker and n <= limits[1, FLAG_AT, y, x]:
                        level = max(level, 1)
                if level == 2:
                    out[t, y, x] = STRONG
                elif level == 1:
                    out[t, y, x] = FLAG
                elif fit and not cloud_only:
                    out[t, y, x] = MATCH
                else:
                    out[t, y, x] = NEUTRAL


def departures(
    bands: TemporalBands, test: TemporalTest
) -> tuple[tuple[int | None, float, int], ...]:
    """(band, floor, direction) per test band in :func:`limits`' order (blue, nir, swir, cirrus):
    the smallest departure that flags (reflectance, or log reflectance for the shadow bands) and
    its sign (+1 brighter for clouds, -1 darker for shadows)."""
    shadow_floor = float(-np.log1p(-test.shadow_floor))
    return ((bands.blue, test.cloud_floor, 1), (bands.nir, shadow_floor, -1),
            (bands.swir, shadow_floor, -1), (bands.cirrus, test.cirrus_floor, 1))  # fmt: skip


def stable(bands: TemporalBands, bg: Background, test: TemporalTest) -> np.ndarray:
    """``(h, w)``: True where every test band's noise threshold is at its floor (``k * noise <=
    floor``): the background varies no more than sensor noise, a permanent surface's."""
    out = np.ones(next(iter(bg.noise.values())).shape, bool)
    for band, floor, _ in departures(bands, test):
        if band is not None and band in bg.noise:
            out &= np.float32(test.k) * bg.noise[band] <= np.float32(floor)
    return out


def limits(bands: TemporalBands, bg: Background, test: TemporalTest) -> np.ndarray:
    """``(4, 4, h, w)`` float32 DN limits per test band (blue, nir, swir, cirrus) and row
    (``MATCH_LOW``, ``MATCH_HIGH``, ``FLAG_AT``, ``STRONG_AT``): the departures of the module
    docstring turned into values, so the kernel only compares. Clouds flag upwards, shadows
    (log reflectance) downwards; the SWIR's flag limit is its centre (it only has to be darker).
    Absent bands get limits that never flag and always match."""
    shape = next(iter(bg.centre.values())).shape
    out = np.empty((4, 4, *shape), np.float32)
    out[:, MATCH_LOW], out[:, MATCH_HIGH] = -np.inf, np.inf
    out[:, FLAG_AT], out[:, STRONG_AT] = np.inf, np.inf
    for row, (band, floor, direction) in enumerate(departures(bands, test)):
        if band is None or band not in bg.centre:
            continue
        centre = bg.centre[band]
        step = np.maximum(np.float32(test.k) * bg.noise[band], np.float32(floor))
        values = [centre - test.match * step, centre + test.match * step,
                  centre + direction * step, centre + direction * test.strong * step]  # fmt: skip
        if direction < 0:  # log reflectance -> reflectance; the SWIR flags below its centre
            values = [np.exp(v) for v in values]
            values[FLAG_AT] = np.exp(centre) if band == bands.swir else values[FLAG_AT]
            values[STRONG_AT] = np.exp(centre) if band == bands.swir else values[STRONG_AT]
        out[row] = np.stack(values) * np.float32(DN_SCALE)
    return out


def score(
    stack: np.ndarray, bands: TemporalBands, bg: Background, test: TemporalTest, cloud_only: bool
) -> np.ndarray:
    """``(dates, h, w)`` uint8 verdicts against ``bg`` (only clouds flagged when ``cloud_only``)."""
    out = np.empty((stack.shape[0], *stack.shape[2:]), np.uint8)
    index = np.array(
        [-1 if b is None else b for b in (bands.blue, bands.nir, bands.swir, bands.cirrus,
                                          bands.green, bands.aerosol)], np.int64)  # fmt: skip
    centres = np.zeros((2, *stack.shape[2:]), np.float32)
    centres[0] = bg.centre[bands.blue] * np.float32(DN_SCALE)
    guard = haze_bands(bands, test)
    if guard:
        centres[1] = bg.centre[bands.aerosol] * np.float32(DN_SCALE)
    ratio = np.float32(test.haze_ratio if guard else 0.0)
    limits_dn = limits(bands, bg, test)
    _score(stack, index, limits_dn, centres, np.float32(test.snow_ndsi), ratio, cloud_only, out)
    return out


def haze_bands(bands: TemporalBands, test: TemporalTest) -> tuple[int, ...]:
    """The aerosol band the haze guard also needs a background of (empty: no guard, because
    ``haze_ratio`` is None or the composite has no B01 besides its blue band)."""
    on = test.haze_ratio is not None and bands.aerosol not in (None, bands.blue)
    return (bands.aerosol,) if on else ()


def haze_guard_note(bands: TemporalBands, test: TemporalTest) -> str:
    """Whether the haze guard runs on these bands, and why not (for the log and ``run.json``)."""
    if test.haze_ratio is None:
        return "off: masks.temporal_test.haze_ratio=null"
    if not haze_bands(bands, test):
        return "off: the composite's bands have no B01 besides their blue band"
    return f"on: B01 against the blue, haze_ratio={test.haze_ratio:g}"


def verdicts(
    stack: np.ndarray,
    bands: TemporalBands,
    clear: np.ndarray,
    test: TemporalTest,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """``(dates, h, w)`` uint8 verdict per observation (see the module docstring).

    stack: ``(dates, bands, h, w)`` uint16 harmonised DN (0 = nodata).
    clear: ``(dates, h, w)`` bool, the observations the single-date mask keeps (all True for
        masks ``none``).
    valid: :func:`valid_observations` of ``stack``, where the caller has it already.
    """
    if stack.ndim != 4 or clear.shape != (stack.shape[0], *stack.shape[2:]):
        raise ValueError(
            f"stack {stack.shape} must be (dates, bands, h, w), clear {clear.shape} (dates, h, w)."
        )
    if stack.dtype != np.uint16:
        raise TypeError(f"stack is {stack.dtype}; the test reads uint16 harmonised DN.")
    valid = valid_observations(stack) if valid is None else valid
    trusted = (clear & valid).sum(axis=0) >= test.min_clear  # a clear background to compare with
    base = base_set(valid, clear, test.min_clear)
    log_bands = tuple(b for b in (bands.nir, bands.swir) if b is not None)
    cloud_bands = tuple(b for b in (bands.blue, bands.cirrus) if b is not None)
    cloud_bands += haze_bands(bands, test)
    # The dark-side screen: clouds found against the lower quartile leave the base set.
    bg = background(stack, base, cloud_bands, log_bands, DARK_SIDE)
    out = score(stack, bands, bg, test, cloud_only=True)
    for _ in range(test.passes):
        base = base_set(base, out < FLAG, test.min_clear)  # where enough views are left
        bg = background(stack, base, bands.used() + haze_bands(bands, test), log_bands)
        out = score(stack, bands, bg, test, cloud_only=False)
    trusted |= stable(bands, bg, test)  # a stable stack is its own clear background
    enough = (valid.sum(axis=0) >= test.min_dates) & trusted
    out[~(valid & enough[np.newaxis])] = NEUTRAL
    return out
