"""The ground: a land-cover map, its texture and relief, and its 13-band reflectance on a date.

The surface is a linear mixture of seven endmember spectra (clear-sky top-of-atmosphere
reflectance, rough values from ``shared/SENTINEL2.md`` and real L1C scenes) whose weights come
from the land cover, seasonal state and texture of each pixel:

* land cover is static: water on the lowest ground (and rivers), ice on the highest, towns,
  then desert / fields / soil / forest from a cover field; fields are parcels with a crop each;
* the season changes weights: crop calendars per parcel (crops rotate between years), leaf-on
  and leaf-off forest, seasonal snow above a date's snowline, frozen lakes in cold winters;
* relief shades slopes facing away from the sun (a dark-ground confuser for shadow detection).

Everything is evaluated on world coordinates (:mod:`cloudseg.data.simulate.noise`), so a pixel's
surface does not depend on which grid it is rendered on.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numba
import numpy as np

from cloudseg.data.simulate.noise import (
    FieldSpec,
    cell_uniform,
    field_quantiles,
    fractal_noise,
    stable_key,
    to_uniform,
    uniform_field,
)
from cloudseg.data.simulate.relief import b10_altitude_gain, illumination
from cloudseg.data.simulate.sites import PIXEL_SIZE_M, Site

LANDCOVER_CLASSES: tuple[str, ...] = (
    "water", "forest", "fields", "soil", "desert", "urban", "snow_ice",
)  # fmt: skip
WATER, FOREST, FIELDS, SOIL, DESERT, URBAN, SNOW_ICE = range(len(LANDCOVER_CLASSES))

ENDMEMBERS: tuple[str, ...] = (
    "vegetation",
    "dry_vegetation",
    "soil",
    "sand",
    "water",
    "urban",
    "snow",
)
VEGETATION, DRY_VEGETATION, BARE_SOIL, SAND, WATER_BODY, BUILT_UP, SNOW = range(len(ENDMEMBERS))

#: Endmember spectra (rows, ``ENDMEMBERS`` order) in the 13 L1C bands, clear-sky TOA reflectance.
#: B01/B02 include path radiance; B09 is damped by water vapour and B10 (1375 nm) almost nothing
#: reaches the ground and comes back, except from high terrain (see ``relief.b10_altitude_gain``).
#: Columns:   B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B10    B11    B12
SPECTRA = np.array([
    [0.110, 0.078, 0.068, 0.038, 0.075, 0.200, 0.260, 0.280, 0.300, 0.085, 0.0020, 0.150, 0.065],
    [0.115, 0.090, 0.100, 0.120, 0.150, 0.190, 0.210, 0.230, 0.240, 0.075, 0.0030, 0.300, 0.220],
    [0.120, 0.100, 0.120, 0.160, 0.190, 0.210, 0.225, 0.240, 0.250, 0.080, 0.0040, 0.320, 0.260],
    [0.170, 0.180, 0.240, 0.330, 0.370, 0.390, 0.410, 0.420, 0.430, 0.140, 0.0080, 0.550, 0.480],
    [0.110, 0.080, 0.060, 0.038, 0.030, 0.025, 0.022, 0.020, 0.018, 0.006, 0.0010, 0.010, 0.005],
    [0.140, 0.120, 0.130, 0.150, 0.165, 0.180, 0.190, 0.200, 0.210, 0.070, 0.0040, 0.250, 0.200],
    [0.880, 0.850, 0.850, 0.800, 0.790, 0.770, 0.760, 0.750, 0.730, 0.250, 0.0100, 0.100, 0.050],
], dtype=np.float32)  # fmt: skip
B10_INDEX = 10

#: Crop calendars: day of year -> (green vegetation, dry vegetation) cover; the rest is soil.
CROP_CALENDARS: dict[str, tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]] = {
    "winter_cereal": (
        (0, 60, 100, 140, 175, 195, 250, 280, 300, 365),
        (0.25, 0.3, 0.6, 0.9, 0.6, 0.05, 0.0, 0.05, 0.2, 0.25),
        (0.0, 0.0, 0.0, 0.0, 0.3, 0.8, 0.6, 0.1, 0.0, 0.0),
    ),
    "summer_crop": (
        (0, 120, 150, 190, 230, 260, 285, 300, 365),
        (0.0, 0.0, 0.1, 0.7, 0.9, 0.5, 0.1, 0.0, 0.0),
        (0.2, 0.0, 0.0, 0.0, 0.0, 0.3, 0.7, 0.3, 0.2),
    ),
    "meadow": (
        (0, 80, 120, 160, 170, 200, 230, 240, 290, 365),
        (0.3, 0.35, 0.8, 0.9, 0.5, 0.85, 0.8, 0.5, 0.6, 0.3),
        (0.2, 0.1, 0.0, 0.0, 0.3, 0.0, 0.0, 0.3, 0.1, 0.2),
    ),
    "fallow": (
        (0, 120, 200, 300, 365),
        (0.1, 0.25, 0.35, 0.2, 0.1),
        (0.3, 0.2, 0.2, 0.3, 0.3),
    ),
}
#: Leaf-on fraction of deciduous vegetation over the year (northern hemisphere).
LEAF_ON = ((0, 95, 140, 265, 305, 365), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0))

ELEVATION = FieldSpec(cell=800, octaves=9)
COVER = FieldSpec(cell=140, octaves=6)
TOWNS = FieldSpec(cell=110, octaves=5, persistence=0.55)
RIVERS = FieldSpec(cell=900, octaves=5, persistence=0.45)
PARCEL_WARP = FieldSpec(cell=90, octaves=2)
EVERGREEN = FieldSpec(cell=120, octaves=4)
FINE_TEXTURE = FieldSpec(cell=6, octaves=3)
MEDIUM_TEXTURE = FieldSpec(cell=40, octaves=4)
BUILDINGS = FieldSpec(cell=3.0, octaves=2, persistence=0.6)
SNOW_PATCHES = FieldSpec(cell=60, octaves=5)
DUNES = FieldSpec(cell=30, octaves=3, stretch=3.0, angle_deg=70.0)
#: How strongly fine texture modulates each land-cover class (``LANDCOVER_CLASSES`` order):
#: tree crowns most, calm water least.
FINE_TEXTURE_GAIN = (0.3, 1.6, 0.6, 1.0, 0.3, 0.8, 0.6)
RIVER_HALF_WIDTH = 0.004  # in RIVERS noise units: about 50-100 m wide
PARCEL_SIZE_PX = (34.0, 21.0)
PARCEL_ANGLE_DEG = 17.0
SNOWLINE_RAMP = 0.04  # elevation-quantile width of the snow edge
#: Lakes of cold sites are frozen and snow-covered from about December to March.
LAKE_FREEZE_WINTERNESS = 0.65


def _season_curve(knots: tuple[tuple[int, ...], tuple[float, ...]], day: int) -> float:
    return float(np.interp(day, knots[0], knots[1]))


def winterness(date: dt.date) -> float:
    """1 in mid-January, 0 in mid-July (northern hemisphere), smooth in between."""
    day = date.timetuple().tm_yday
    return 0.5 * (1.0 + math.cos(2.0 * math.pi * (day - 15) / 365.0))


@dataclass
class StaticSurface:
    """What does not change between dates, for one block of world pixels."""

    landcover: np.ndarray  # uint8 LANDCOVER_CLASSES codes
    elevation: np.ndarray  # quantile of the site's elevation field, 0 (lowest) .. 1 (highest)
    height_m: np.ndarray
    slope_east: np.ndarray  # dz/dx, metres per metre
    slope_north: np.ndarray
    texture: np.ndarray  # multiplicative brightness around 1
    parcel_u: np.ndarray  # int64 parcel ids (fields)
    parcel_v: np.ndarray
    parcel_vigor: np.ndarray
    parcel_soil: np.ndarray  # soil brightness of each parcel
    soil_brightness: np.ndarray  # smooth soil/sand brightness elsewhere
    evergreen: np.ndarray  # forest: evergreen share 0..1
    turbidity: np.ndarray  # water: 0 clear .. 1 murky (brighter)
    snow_patchiness: np.ndarray  # uniform noise that makes snowlines ragged

    @property
    def shape(self) -> tuple[int, int]:
        return self.landcover.shape


def _pad(coords: np.ndarray) -> np.ndarray:
    return np.concatenate([[coords[0] - 1.0], coords, [coords[-1] + 1.0]])


def build_static_surface(
    site: Site, seed: int, cols: np.ndarray, rows: np.ndarray
) -> StaticSurface:
    """Land cover, relief and texture of ``site`` (world ``seed``) on the pixel centres given."""

    def key(name: str) -> int:
        return stable_key(seed, site.site_id, name)

    mix = site.landcover
    raw_elevation = fractal_noise(_pad(cols), _pad(rows), ELEVATION, key("elevation"))
    inner = raw_elevation[1:-1, 1:-1]
    elevation = to_uniform(inner, ELEVATION)
    relief_scale = site.relief_m / float(np.ptp(_marginal_span(ELEVATION)))
    height_m = site.base_altitude_m + relief_scale * (inner - _marginal_span(ELEVATION)[0])
    slope_east = (raw_elevation[1:-1, 2:] - raw_elevation[1:-1, :-2]) * (
        relief_scale / (2 * PIXEL_SIZE_M)
    )
    slope_north = (raw_elevation[:-2, 1:-1] - raw_elevation[2:, 1:-1]) * (
        relief_scale / (2 * PIXEL_SIZE_M)
    )

    cover = uniform_field(cols, rows, COVER, key("cover"))
    towns = uniform_field(cols, rows, TOWNS, key("towns"))
    landcover = np.full(elevation.shape, SOIL, dtype=np.uint8)
    rest = 1.0 - mix.desert - mix.fields - mix.forest
    landcover[cover < mix.desert] = DESERT
    landcover[(cover >= mix.desert) & (cover < mix.desert + mix.fields)] = FIELDS
    landcover[cover >= mix.desert + mix.fields + rest] = FOREST
    above_treeline = (landcover == FOREST) & (elevation > site.treeline)
    landcover[above_treeline] = SOIL
    landcover[towns > 1.0 - mix.urban] = URBAN
    landcover[elevation > 1.0 - mix.ice] = SNOW_ICE
    water = elevation < mix.water
    if mix.rivers:
        river_noise = fractal_noise(cols, rows, RIVERS, key("rivers"))
        water |= (np.abs(river_noise) < RIVER_HALF_WIDTH) & (elevation < 0.6)
    landcover[water] = WATER

    parcel_u, parcel_v = _parcels(cols, rows, key("parcels"))
    fine = fractal_noise(cols, rows, FINE_TEXTURE, key("fine"))
    medium = fractal_noise(cols, rows, MEDIUM_TEXTURE, key("medium"))
    buildings = fractal_noise(cols, rows, BUILDINGS, key("buildings"))
    dunes = fractal_noise(cols, rows, DUNES, key("dunes"))
    fine_gain = np.asarray(FINE_TEXTURE_GAIN, dtype=np.float32)[landcover]
    texture = 1.0 + fine_gain * 0.25 * fine + 0.2 * medium
    texture = np.where(landcover == URBAN, texture + 0.8 * buildings, texture)
    texture = np.where(landcover == DESERT, texture + 0.5 * dunes, texture)
    return StaticSurface(
        landcover=landcover,
        elevation=elevation,
        height_m=height_m.astype(np.float32),
        slope_east=slope_east.astype(np.float32),
        slope_north=slope_north.astype(np.float32),
        texture=np.clip(texture, 0.4, 2.0).astype(np.float32),
        parcel_u=parcel_u,
        parcel_v=parcel_v,
        parcel_vigor=0.75 + 0.25 * cell_uniform(parcel_u, parcel_v, key("vigor")),
        parcel_soil=0.8 + 0.4 * cell_uniform(parcel_u, parcel_v, key("parcel soil")),
        soil_brightness=0.85 + 0.3 * uniform_field(cols, rows, COVER, key("soil brightness")),
        evergreen=uniform_field(cols, rows, EVERGREEN, key("evergreen")),
        turbidity=uniform_field(cols, rows, MEDIUM_TEXTURE, key("turbidity")),
        snow_patchiness=uniform_field(cols, rows, SNOW_PATCHES, key("snow")),
    )


def _marginal_span(spec: FieldSpec) -> np.ndarray:
    """The 0.1 % and 99.9 % values of a field (the relief maps this span to ``relief_m``)."""
    return field_quantiles(spec)[[1, -2]]


def _parcels(cols: np.ndarray, rows: np.ndarray, key: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer parcel ids: a rotated, gently warped lattice of ~380 x 260 m fields."""
    warp_u = 6.0 * fractal_noise(cols, rows, PARCEL_WARP, key)
    warp_v = 6.0 * fractal_noise(cols, rows, PARCEL_WARP, key + 1)
    angle = math.radians(PARCEL_ANGLE_DEG)
    along = math.cos(angle) * cols[np.newaxis, :] + math.sin(angle) * rows[:, np.newaxis]
    across = math.cos(angle) * rows[:, np.newaxis] - math.sin(angle) * cols[np.newaxis, :]
    parcel_u = np.floor((along + warp_u) / PARCEL_SIZE_PX[0]).astype(np.int64)
    parcel_v = np.floor((across + warp_v) / PARCEL_SIZE_PX[1]).astype(np.int64)
    return parcel_u, parcel_v


@numba.njit(cache=True)
def _mix_kernel(weights, spectra, out):
    n_bands, n_members = spectra.shape
    for i in range(weights.shape[1]):
        for j in range(weights.shape[2]):
            for b in range(n_bands):
                total = np.float32(0.0)
                for e in range(n_members):
                    total += spectra[b, e] * weights[e, i, j]
                out[b, i, j] = total


def mix_endmembers(weights: np.ndarray, spectra: np.ndarray = SPECTRA) -> np.ndarray:
    """Endmember weights ``(7, y, x)`` -> reflectance ``(13, y, x)`` float32; ``spectra``
    ``(7, 13)`` defaults to the built-in endmembers (a spectral library draws real ones)."""
    spectra = np.ascontiguousarray(np.asarray(spectra, dtype=np.float32).T)
    out = np.empty((spectra.shape[0], *weights.shape[1:]), dtype=np.float32)
    _mix_kernel(np.ascontiguousarray(weights, dtype=np.float32), spectra, out)
    return out


@dataclass
class SurfaceState:
    """The ground on one date: reflectance ``(13, y, x)`` and the snow cover that shaped it."""

    reflectance: np.ndarray
    snow_fraction: np.ndarray


def snowline_for(site: Site, date: dt.date, seed: int) -> float:
    """The date's snowline as an elevation quantile (above it the ground is snow-covered)."""
    rng = np.random.default_rng(stable_key(seed, site.site_id, date.isoformat(), "snowline"))
    winter = winterness(date)
    snowline = site.snowline_summer + (site.snowline_winter - site.snowline_summer) * winter**0.7
    if rng.random() < site.snow_event_probability * winter**2:
        snowline = min(snowline, rng.uniform(-0.1, 0.4))  # a snowfall down to the lowlands
    return float(snowline + rng.normal(0.0, 0.03))


def surface_state(
    static: StaticSurface,
    site: Site,
    seed: int,
    date: dt.date,
    sun_azimuth: float,
    sun_elevation: float,
    spectra: np.ndarray = SPECTRA,
) -> SurfaceState:
    """The cloud-free, noise-free reflectance of the ground on ``date`` under the given sun,
    mixed from ``spectra`` (the endmembers, ``(7, 13)``)."""
    day = date.timetuple().tm_yday
    seasonality = site.vegetation_seasonality
    landcover = static.landcover
    weights = np.zeros((len(ENDMEMBERS), *static.shape), dtype=np.float32)

    crop_green, crop_dry = _crop_states(static, site, seed, date)
    leaf_on = seasonality * _season_curve(LEAF_ON, day) + (1.0 - seasonality) * 0.9
    grass_green = 0.15 + 0.3 * leaf_on

    fields = landcover == FIELDS
    soil_share = np.clip(1.0 - crop_green - crop_dry, 0.0, 1.0)
    weights[VEGETATION] = np.where(fields, crop_green * static.parcel_vigor, 0.0)
    weights[DRY_VEGETATION] = np.where(fields, crop_dry, 0.0)
    weights[BARE_SOIL] = np.where(fields, soil_share * static.parcel_soil, 0.0)

    forest = landcover == FOREST
    forest_green = static.evergreen * 0.85 + (1.0 - static.evergreen) * (0.25 + 0.65 * leaf_on)
    canopy_darkness = 0.85 - 0.2 * static.evergreen  # conifers are darker in the NIR
    weights[VEGETATION] += np.where(forest, forest_green * canopy_darkness, 0.0)
    weights[DRY_VEGETATION] += np.where(forest, (1.0 - forest_green) * 0.45, 0.0)

    soil = landcover == SOIL
    rock = np.clip((static.elevation - site.treeline) / 0.1, 0.0, 1.0)  # greyer above treeline
    weights[VEGETATION] += np.where(soil, grass_green * (1.0 - 0.7 * rock), 0.0)
    weights[BARE_SOIL] += np.where(
        soil, (1.0 - grass_green) * static.soil_brightness * (1.0 - 0.25 * rock), 0.0
    )

    desert = landcover == DESERT
    weights[SAND] += np.where(desert, 0.9 + 0.1 * static.soil_brightness, 0.0)
    weights[BARE_SOIL] += np.where(desert, 0.05, 0.0)

    urban = landcover == URBAN
    weights[BUILT_UP] += np.where(urban, 0.85, 0.0)
    weights[VEGETATION] += np.where(urban, 0.15 * leaf_on, 0.0)

    water = landcover == WATER
    weights[WATER_BODY] += np.where(water, 0.8 + 0.4 * static.turbidity, 0.0)

    ice = landcover == SNOW_ICE
    weights[SNOW] += np.where(ice, 0.75, 0.0)
    weights[BARE_SOIL] += np.where(ice, 0.2, 0.0)

    weights *= static.texture
    snow = _snow_fraction(static, site, seed, date)
    snow_weights = np.zeros_like(weights)
    snow_weights[SNOW] = 0.92 + 0.08 * static.texture
    weights = weights * (1.0 - snow) + snow_weights * snow

    reflectance = mix_endmembers(weights, spectra)
    reflectance *= illumination(static.slope_east, static.slope_north, sun_azimuth, sun_elevation)
    reflectance[B10_INDEX] *= b10_altitude_gain(static.height_m)
    return SurfaceState(reflectance=reflectance, snow_fraction=snow)


def _crop_states(
    static: StaticSurface, site: Site, seed: int, date: dt.date
) -> tuple[np.ndarray, np.ndarray]:
    """Green and dry cover of every parcel on ``date``; each parcel's crop changes by year."""
    day = date.timetuple().tm_yday
    crop_draw = cell_uniform(
        static.parcel_u, static.parcel_v, stable_key(seed, site.site_id, "crop", date.year)
    )
    crop_index = np.minimum(
        (crop_draw * len(CROP_CALENDARS)).astype(np.int64), len(CROP_CALENDARS) - 1
    )
    seasonality = site.vegetation_seasonality
    green_by_crop, dry_by_crop = [], []
    for days, green, dry in CROP_CALENDARS.values():
        green_by_crop.append(
            seasonality * np.interp(day, days, green) + (1 - seasonality) * np.mean(green)
        )
        dry_by_crop.append(
            seasonality * np.interp(day, days, dry) + (1 - seasonality) * np.mean(dry)
        )
    green_table = np.asarray(green_by_crop, dtype=np.float32)
    dry_table = np.asarray(dry_by_crop, dtype=np.float32)
    return green_table[crop_index], dry_table[crop_index]


def _snow_fraction(static: StaticSurface, site: Site, seed: int, date: dt.date) -> np.ndarray:
    """Seasonal snow cover 0..1: above the date's snowline, ragged, thinner under forest canopy."""
    snowline = snowline_for(site, date, seed)
    level = static.elevation + 0.08 * (static.snow_patchiness - 0.5)
    fraction = np.clip((level - snowline) / SNOWLINE_RAMP, 0.0, 1.0)
    landcover = static.landcover
    fraction = np.where(landcover == FOREST, 0.55 * fraction, fraction)
    fraction = np.where(landcover == URBAN, 0.8 * fraction, fraction)
    frozen = site.lakes_freeze and winterness(date) > LAKE_FREEZE_WINTERNESS
    fraction = np.where(landcover == WATER, 1.0 if frozen else 0.0, fraction)
    return fraction.astype(np.float32)
