"""Clouds, cirrus, haze and cloud shadows over a surface, and the labels they imply.

A date's :class:`Atmosphere` is a handful of layers drawn from the site's climate:

* thick layers (``cumulus``, ``stratus``, ``altocumulus``): fractal optical-depth fields with soft
  edges at a height; reflectance ``tau / (tau + 8)`` (bright in every band, a little less in the
  SWIR, B10 bright only when the layer is high above the water vapour);
* ``cirrus``: thin, streaky, additive reflectance that is strong in B10;
* ``haze``: smooth additive path reflectance falling with wavelength, absent in B10 (a confuser:
  it is labelled clear);
* shadows: each thick layer's optical depth sampled from where the sun ray through a pixel meets
  the layer (``height / tan(elevation)`` towards the sun), darkening direct light more in the
  NIR/SWIR than in the blue, which keeps diffuse sky light.

Labels (:func:`classify`) follow the CloudSEN12 scheme: thick where the thick layers' optical
depth is at least 5, thin where any cloud is semi-transparent (optical depth 0.5-5 or cirrus
reflectance >= 0.02), shadow where at least half of the direct sunlight is blocked.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from cloudseg.data.simulate.noise import FieldSpec, stable_key, uniform_field
from cloudseg.data.simulate.sites import CLOUD_REGIMES, PIXEL_SIZE_M, Site
from cloudseg.data.simulate.surface import winterness
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import BANDS

THICK_OPTICAL_DEPTH = 5.0
THIN_OPTICAL_DEPTH = 0.5
THIN_CIRRUS_REFLECTANCE = 0.02
SHADOW_BLOCKED_FRACTION = 0.5
CLOUD_REFLECTANCE_SCALE = 8.0  # optical depth at which a cloud reflects half the light

_WAVELENGTHS_NM = np.array([band.center_nm for band in BANDS], dtype=np.float32)
_B02, _B09, _B10, _B11, _B12 = 1, 9, 10, 11, 12
#: Each band's wavelength relative to the blue's (B02, 490 nm), the base of the spectral power laws.
_RELATIVE_TO_BLUE = _WAVELENGTHS_NM / _WAVELENGTHS_NM[_B02]

#: Share of the ground's light that comes straight from the sun (the part a cloud shadow removes);
#: the rest is diffuse sky light, bluer, so shadows keep more of the blue.
DIRECT_LIGHT_SHARE = np.array(
    [0.50, 0.58, 0.66, 0.72, 0.75, 0.77, 0.79, 0.80, 0.81, 0.82, 0.85, 0.86, 0.88], dtype=np.float32
)
#: A nominal clear-sky Rayleigh path reflectance at the top of the atmosphere: 0.05 in the blue,
#: falling as wavelength ** -4 (about 0.005 in the NIR, nothing in the SWIR).
RAYLEIGH_PATH_BLUE = 0.05
RAYLEIGH_PATH = (RAYLEIGH_PATH_BLUE * _RELATIVE_TO_BLUE**-4).astype(np.float32)
#: Cirrus (ice) reflectance per band relative to the visible: near-flat, strong in B10 (above the
#: water vapour), weaker in the SWIR where ice absorbs.
CIRRUS_SPECTRUM = np.array(
    [1.0, 1.0, 0.98, 0.96, 0.95, 0.94, 0.93, 0.93, 0.93, 0.9, 0.9, 0.55, 0.35], dtype=np.float32
)
#: Aerosol path reflectance per band relative to the blue: Angstrom-like, falling with
#: wavelength as ``(nm / 490) ** -1.3``, none in B10 (below the water vapour that hides it).
AEROSOL_SPECTRUM = _RELATIVE_TO_BLUE**-1.3
AEROSOL_SPECTRUM[_B10] = 0.0
#: A haze layer's path reflectance: the aerosol's, half as much in B09 (water vapour absorbs).
HAZE_SPECTRUM = AEROSOL_SPECTRUM.copy()
HAZE_SPECTRUM[_B09] *= 0.5


@dataclass(frozen=True)
class CloudKind:
    """How one kind of thick cloud looks: field shape, edge softness, height, optical depth.

    Optical depth rises from the edge as ``ramp ** edge_power`` (the ramp goes 0 -> 1 over
    ``softness`` field quantiles): cumulus have thin fringes and dense cores, stratus are dense
    almost up to their (rare) gaps.
    """

    field: FieldSpec
    softness: float
    edge_power: float
    height_km: tuple[float, float]
    optical_depth: tuple[float, float]
    ice: bool = False  # ice absorbs more in the SWIR


CLOUD_KINDS: dict[str, CloudKind] = {
    "cumulus": CloudKind(FieldSpec(cell=70, octaves=6, persistence=0.55), 0.2, 2.0, (0.8, 2.5), (20, 60)),
    "stratus": CloudKind(FieldSpec(cell=200, octaves=7), 0.15, 1.0, (0.3, 1.8), (10, 40)),
    "altocumulus": CloudKind(
        FieldSpec(cell=45, octaves=5, persistence=0.6), 0.25, 1.5, (5.0, 9.0), (8, 25), ice=True
    ),
}  # fmt: skip
CIRRUS_FIELD_CELL = 150.0
CIRRUS_SOFTNESS = 0.35
HAZE_FIELD = FieldSpec(cell=500, octaves=3)


@dataclass(frozen=True)
class CloudLayer:
    """A thick cloud layer of one :data:`CLOUD_KINDS` kind; ``key`` fixes its shapes."""

    kind: str
    coverage: float  # area fraction of the world under the layer
    height_km: float
    optical_depth: float  # peak optical depth in the layer's core
    key: int
    b10_gain: float | None = None  # B10 relative to the visible; None: from the height
    tilt: float = 0.0  # spectral slope: every band but B10 times (wavelength / B02's) ** tilt

    def optical_depth_field(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Optical depth at the given world pixel centres (0 outside the cloud)."""
        kind = CLOUD_KINDS[self.kind]
        density = uniform_field(cols, rows, kind.field, self.key)
        ramp = np.clip((density - (1.0 - self.coverage)) / kind.softness, 0.0, 1.0)
        return (self.optical_depth * ramp**kind.edge_power).astype(np.float32)

    def spectrum(self) -> np.ndarray:
        """Reflectance per band relative to the visible, for this layer's height and phase."""
        spectrum = np.array(
            [1.0, 1.0, 1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.95, 0.0, 0.0, 0.72, 0.5],
            dtype=np.float32,
        )
        if CLOUD_KINDS[self.kind].ice:
            spectrum[_B11], spectrum[_B12] = 0.58, 0.36
        spectrum[_B09] = 0.55 + 0.4 * min(self.height_km / 6.0, 1.0)
        if self.tilt:
            spectrum *= _RELATIVE_TO_BLUE**self.tilt
        spectrum[_B10] = b10_cloud_gain(self.height_km) if self.b10_gain is None else self.b10_gain
        return spectrum


def b10_cloud_gain(height_km: float) -> float:
    """B10 (1375 nm) reflectance of a cloud relative to the visible: water vapour below ~2 km
    absorbs it, so low clouds are dim (~0.02-0.06) and high clouds bright (up to ~0.35)."""
    return 0.02 + 0.33 * min(max((height_km - 1.0) / 8.0, 0.0), 1.0)


@dataclass(frozen=True)
class CirrusLayer:
    """Thin, streaky ice cloud: additive reflectance, strong in B10, no shadow modelled."""

    coverage: float
    reflectance: float  # peak additive visible reflectance
    angle_deg: float  # direction of the streaks, clockwise from north
    key: int

    def reflectance_field(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        spec = FieldSpec(
            cell=CIRRUS_FIELD_CELL,
            octaves=6,
            persistence=0.6,
            stretch=3.0,
            angle_deg=self.angle_deg,
        )
        density = uniform_field(cols, rows, spec, self.key)
        ramp = np.clip((density - (1.0 - self.coverage)) / CIRRUS_SOFTNESS, 0.0, 1.0)
        return (self.reflectance * ramp**1.2).astype(np.float32)


@dataclass(frozen=True)
class HazeLayer:
    """Low aerosol haze: smooth additive reflectance, labelled clear (a confuser)."""

    strength: float  # additive blue reflectance where the haze is densest
    key: int

    def path_reflectance(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Additive reflectance per band ``(13, y, x)``: Angstrom-like, none in B10."""
        amount = self.strength * (0.3 + 0.7 * uniform_field(cols, rows, HAZE_FIELD, self.key))
        return HAZE_SPECTRUM[:, np.newaxis, np.newaxis] * amount[np.newaxis]


@dataclass(frozen=True)
class Atmosphere:
    """The atmosphere of one date over one site, defined everywhere in world coordinates."""

    regime: str
    clouds: tuple[CloudLayer, ...] = ()
    cirrus: CirrusLayer | None = None
    haze: HazeLayer | None = None

    def __post_init__(self) -> None:
        if self.regime not in CLOUD_REGIMES:
            raise ValueError(f"Unknown cloud regime {self.regime!r}; use one of {CLOUD_REGIMES}.")


def regime_probabilities(site: Site, date: dt.date) -> np.ndarray:
    """The site's (clear, partly, overcast) odds, shifted towards overcast in winter."""
    clear, partly, overcast = site.regime_probabilities
    shift = winterness(date) - 0.5
    odds = np.array([clear * (1 - 0.6 * shift), partly, overcast * (1 + 0.6 * shift)])
    return odds / odds.sum()


def draw_atmosphere(site: Site, date: dt.date, seed: int, regime: str | None = None) -> Atmosphere:
    """The atmosphere of ``site`` on ``date`` (world ``seed``); ``regime`` forces the cloud regime,
    otherwise it is drawn from the site's climate for the season."""
    rng = np.random.default_rng(stable_key(seed, site.site_id, date.isoformat(), "atmosphere"))
    drawn = CLOUD_REGIMES[rng.choice(len(CLOUD_REGIMES), p=regime_probabilities(site, date))]
    regime = drawn if regime is None else regime

    def key(name: str) -> int:
        return stable_key(seed, site.site_id, date.isoformat(), name)

    def layer(kind: str, coverage: float) -> CloudLayer:
        spec = CLOUD_KINDS[kind]
        return CloudLayer(
            kind=kind,
            coverage=coverage,
            height_km=float(rng.uniform(*spec.height_km)),
            optical_depth=float(rng.uniform(*spec.optical_depth)),
            key=key(kind),
        )

    clouds: list[CloudLayer] = []
    cirrus_coverage = 0.0
    if regime == "partly":
        cirrus_only = rng.random() < 0.15
        if not cirrus_only:
            clouds.append(layer("cumulus", float(rng.uniform(0.08, 0.7))))
        if rng.random() < 0.25:
            clouds.append(layer("altocumulus", float(rng.uniform(0.05, 0.35))))
        if cirrus_only or rng.random() < 0.4:
            cirrus_coverage = float(rng.uniform(0.2, 0.7))
    elif regime == "overcast":
        clouds.append(layer("stratus", float(rng.uniform(0.95, 1.0))))
        if rng.random() < 0.3:
            clouds.append(layer("cumulus", float(rng.uniform(0.2, 0.6))))
        if rng.random() < 0.3:
            cirrus_coverage = float(rng.uniform(0.3, 0.9))
    cirrus = None
    if cirrus_coverage > 0:
        cirrus = CirrusLayer(
            coverage=cirrus_coverage,
            reflectance=float(rng.uniform(0.03, 0.12)),
            angle_deg=float(rng.uniform(0.0, 180.0)),
            key=key("cirrus"),
        )
    haze_strength = float(min(site.haze_strength * rng.gamma(2.0, 0.5), 0.12))
    return Atmosphere(
        regime=regime,
        clouds=tuple(sorted(clouds, key=lambda c: c.height_km)),
        cirrus=cirrus,
        haze=HazeLayer(haze_strength, key("haze")) if haze_strength > 0 else None,
    )


@dataclass
class RenderedAtmosphere:
    """The top-of-atmosphere reflectance and the fields the labels are derived from."""

    reflectance: np.ndarray  # (13, y, x)
    optical_depth: np.ndarray  # thick layers, summed
    cirrus: np.ndarray  # additive visible reflectance of cirrus
    shadow: np.ndarray  # fraction of direct sunlight blocked


def shadow_displacement(
    height_km: float, sun_azimuth: float, sun_elevation: float
) -> tuple[float, float]:
    """(d_col, d_row) in pixels from a shadowed pixel to the cloud that shades it.

    A cloud at height h shades the ground ``h / tan(elevation)`` away from the sun, i.e. in the
    anti-azimuth direction; looking back from the shadow, the cloud lies towards the sun.
    """
    distance_px = height_km * 1000.0 / math.tan(math.radians(sun_elevation)) / PIXEL_SIZE_M
    azimuth = math.radians(sun_azimuth)
    return distance_px * math.sin(azimuth), -distance_px * math.cos(azimuth)


def render_atmosphere(
    atmosphere: Atmosphere,
    surface: np.ndarray,
    cols: np.ndarray,
    rows: np.ndarray,
    sun_azimuth: float,
    sun_elevation: float,
    path: np.ndarray | None = None,
) -> RenderedAtmosphere:
    """Put ``atmosphere`` over ``surface`` reflectance ``(13, y, x)`` at the given pixel centres.
    ``path`` (13 values): reflectance of the air between ground and sensor already in
    ``surface`` (a top-of-atmosphere image); a shadow darkens the ground's light, not the path's."""
    shape = surface.shape[1:]
    direct_transmission = np.ones(shape, dtype=np.float32)
    for layer in atmosphere.clouds:
        d_col, d_row = shadow_displacement(layer.height_km, sun_azimuth, sun_elevation)
        depth_towards_sun = layer.optical_depth_field(cols + d_col, rows + d_row)
        direct_transmission *= np.exp(-0.5 * depth_towards_sun)
    blocked = 1.0 - direct_transmission
    lit = 1.0 - blocked[np.newaxis] * DIRECT_LIGHT_SHARE[:, np.newaxis, np.newaxis]
    if path is None:
        toa = surface * lit
    else:
        air = np.asarray(path, dtype=np.float32)[:, np.newaxis, np.newaxis]
        toa = air + (surface - air) * lit

    if atmosphere.haze is not None:
        path = atmosphere.haze.path_reflectance(cols, rows)
        toa = toa * (1.0 - path) + path

    total_depth = np.zeros(shape, dtype=np.float32)
    for layer in atmosphere.clouds:  # lowest first, each seen through the ones above
        depth = layer.optical_depth_field(cols, rows)
        cloud_visible = depth / (depth + CLOUD_REFLECTANCE_SCALE)
        through = (1.0 - cloud_visible) ** 2
        toa = (
            layer.spectrum()[:, np.newaxis, np.newaxis] * cloud_visible[np.newaxis]
            + toa * through[np.newaxis]
        )
        total_depth += depth

    cirrus = np.zeros(shape, dtype=np.float32)
    if atmosphere.cirrus is not None:
        cirrus = atmosphere.cirrus.reflectance_field(cols, rows)
        toa = toa * (1.0 - 0.6 * cirrus[np.newaxis]) + (
            CIRRUS_SPECTRUM[:, np.newaxis, np.newaxis] * cirrus[np.newaxis]
        )
    return RenderedAtmosphere(
        reflectance=toa.astype(np.float32),
        optical_depth=total_depth,
        cirrus=cirrus,
        shadow=blocked.astype(np.float32),
    )


def classify(rendered: RenderedAtmosphere) -> np.ndarray:
    """The true mask (uint8): 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow."""
    mask = np.full(rendered.optical_depth.shape, CLEAR, dtype=np.uint8)
    mask[rendered.shadow >= SHADOW_BLOCKED_FRACTION] = CLOUD_SHADOW
    thin = (rendered.optical_depth >= THIN_OPTICAL_DEPTH) | (
        rendered.cirrus >= THIN_CIRRUS_REFLECTANCE
    )
    mask[thin] = THIN_CLOUD
    mask[rendered.optical_depth >= THICK_OPTICAL_DEPTH] = THICK_CLOUD
    return mask
