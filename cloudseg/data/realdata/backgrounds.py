"""Simulated clouds on real backgrounds: the simulator's atmosphere over real clear ground.

The clear parts of a real scene's training half (every detector agrees, away from cloud edges)
are the surface; an :class:`~cloudseg.data.simulate.atmosphere.Atmosphere` drawn from a simulated
site's climate is rendered over it with
:func:`~cloudseg.data.simulate.atmosphere.render_atmosphere`: cloud reflectance and transmittance
per band, cirrus, haze, and shadows displaced along the sun azimuth by the cloud height. The
scene is placed in world coordinates at its ground sampling distance (a 30 m pixel spans three
10 m world pixels), so clouds keep their physical size and shadows their physical offset at any
GSD. Labels are exact where the ground is known clear; where the real scene was not clear the
label is ``thick_cloud`` if an opaque rendered cloud hides it, else ignore (255).

A top-of-atmosphere (L1C) background already holds the light the air scatters towards the sensor;
with ``keep_path`` a rendered shadow darkens only the ground's part of it (the scene's darkest
clear pixels bound the path, at most the nominal Rayleigh path), as real shadows keep that haze
of light; without it the whole pixel is darkened, as the simulator does.

Bands the real scene lacks are carried as NaN through the rendering and not written: a 4-band
chip gives 4-band training scenes.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudseg.data.manifest import MANIFEST_NAME, DatasetWriter
from cloudseg.data.realdata.detectors import clear_agreement, run_detectors
from cloudseg.data.realdata.scenes import LoadedScene, training_columns
from cloudseg.data.simulate.acquisition import revisit_dates
from cloudseg.data.simulate.atmosphere import (
    RAYLEIGH_PATH,
    Atmosphere,
    CirrusLayer,
    CloudLayer,
    HazeLayer,
    classify,
    draw_atmosphere,
    render_atmosphere,
)
from cloudseg.data.simulate.noise import stable_key
from cloudseg.data.simulate.scale import BASE_GSD_M, block_mean, coarser_grid
from cloudseg.data.simulate.sites import SITES, get_site
from cloudseg.labels import IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.radiometry import reflectance_to_dn

#: Regime odds of a rendered atmosphere: mostly broken cloud, some overcast or cloud-free.
REGIME_ODDS = {"clear": 0.05, "partly": 0.85, "overcast": 0.1}
MIN_CLEAR_SHARE = 0.2  # training halves less clear than this are not used as backgrounds
MIN_SIZE_PX = 64
WORLD_SPAN_PX = 20_000  # world offsets are drawn in this range (different cloud fields)
SUN_AZIMUTH = (100.0, 170.0)
SUN_ELEVATION = (25.0, 65.0)
#: A thin veil (opt-in, ``veil_share``): a low stratus sheet, semi-transparent almost everywhere
#: it lies (optical depth 1-5: labelled thin cloud; thick only where it meets another layer), over
#: most of the view. Real low veils are bright and flat across the visible and NIR but dim in B10
#: (under the water vapour); the climates' overcast is opaque stratus and their partly-cloudy
#: days broken cumulus, so without it a model meets few such veils.
VEIL_COVERAGE = (0.7, 1.0)
VEIL_OPTICAL_DEPTH = (1.0, 5.0)
VEIL_HEIGHT_KM = (0.3, 1.5)
#: A range for the veil's B10 relative to the visible (``veil_b10``; default: from its height,
#: as every simulated cloud): the water vapour above a low cloud absorbs 1375 nm, leaving from
#: almost nothing (humid air; the real eo-learn veils: about 0.007) to the simulator's low-cloud
#: value (0.02).
HUMID_VEIL_B10_GAIN = (0.0, 0.02)
#: Dense haze (opt-in, ``haze_share``): aerosol path reflectance of this much in the blue at its
#: densest (the simulated climates' haze goes up to 0.12), labelled clear. The veil's foil: haze
#: brightens the blue far more than the NIR and SWIR, a veil all bands alike.
DENSE_HAZE_STRENGTH = (0.04, 0.12)
#: Faint cirrus (opt-in, ``cirrus_share``): a streaky ice layer of this peak visible reflectance
#: over this share of the view, in place of the climate's cirrus. Labelled thin cloud where its
#: reflectance reaches 0.02 (:data:`~cloudseg.data.simulate.atmosphere.THIN_CIRRUS_REFLECTANCE`),
#: clear below; without B10 it is a faint, near-flat brightening, easily lost over bright soil.
FAINT_CIRRUS_REFLECTANCE = (0.03, 0.08)
FAINT_CIRRUS_COVERAGE = (0.3, 0.9)
#: Cloud colour (opt-in, ``tilt_share``): each cloud layer's spectrum tilted by its own draw from
#: this range (:attr:`~cloudseg.data.simulate.atmosphere.CloudLayer.tilt`: every band but B10
#: times (wavelength / 490 nm) ** tilt). The simulator's clouds have one colour per kind (NIR /
#: blue 0.95, B11 / blue 0.72); the brightest 3 % of the shared real cloudy scenes range over
#: NIR / blue 0.79-1.22 and B11 / blue 0.63-1.02, which tilts of -0.3 to 0.3 span.
CLOUD_TILT = (-0.3, 0.3)
#: Atmospheres rendered per background view. 24 won the real-scene ablation over 6
#: (experiments/real_training/ablation.md, 6 bands, 20 epochs: real cloud IoU 0.483 -> 0.566,
#: soil/water false alarms 9.2 % -> 4.7 %, simulated IoU unchanged at 0.918).
DEFAULT_RENDERS = 24


def render_on_background(
    surface: np.ndarray,
    clear: np.ndarray,
    gsd_m: float,
    atmosphere: Atmosphere,
    sun_azimuth: float,
    sun_elevation: float,
    origin: tuple[float, float] = (0.0, 0.0),
    path: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(toa (13, y, x), mask (y, x))`` of ``atmosphere`` over ``surface`` (13-band reflectance,
    NaN for bands the scene lacks) at ``gsd_m``; ``origin`` is (col, row) in 10 m world pixels;
    ``path``: the path reflectance in ``surface``, which shadows leave (:func:`path_reflectance`)."""
    if surface.shape[0] != len(L1C_BANDS) or clear.shape != surface.shape[1:]:
        raise ValueError(f"surface {surface.shape} must be (13, y, x) over clear {clear.shape}.")
    step = gsd_m / BASE_GSD_M
    cols = origin[0] + (np.arange(surface.shape[2]) + 0.5) * step
    rows = origin[1] + (np.arange(surface.shape[1]) + 0.5) * step
    missing = np.isnan(surface)
    rendered = render_atmosphere(
        atmosphere, np.where(missing, 0.0, surface), cols, rows, sun_azimuth, sun_elevation, path
    )
    toa = np.where(missing, np.nan, rendered.reflectance).astype(np.float32)
    mask = classify(rendered)
    mask[~clear & (mask != THICK_CLOUD)] = IGNORE_INDEX
    return toa, mask


@dataclass(frozen=True)
class RenderExtras:
    """Layers added to a share of the renders on top of the climates' atmospheres (all off by
    default): a thin low veil (``veil_share``, :data:`VEIL_COVERAGE`; its B10 gain drawn from
    ``veil_b10`` when given, e.g. :data:`HUMID_VEIL_B10_GAIN`), dense haze in place of the
    climate's (``haze_share``, :data:`DENSE_HAZE_STRENGTH`) and faint cirrus in place of the
    climate's (``cirrus_share``, :data:`FAINT_CIRRUS_REFLECTANCE`), and cloud layers of another
    colour (``tilt_share``, :data:`CLOUD_TILT`; the veil included). Each is drawn on its own
    random stream, so adding one leaves every other draw of a render as it was."""

    veil_share: float = 0.0
    veil_b10: tuple[float, float] | None = None
    haze_share: float = 0.0
    cirrus_share: float = 0.0
    tilt_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("veil_share", "haze_share", "cirrus_share", "tilt_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a share of the renders (0-1), got {getattr(self, name)}.")

    def add_to(self, atmosphere: Atmosphere, key: int) -> Atmosphere:
        """``atmosphere`` with the extras that render ``key`` draws."""
        veil_rng = np.random.default_rng([key, 1])
        if veil_rng.random() < self.veil_share:
            veil = CloudLayer(
                kind="stratus", coverage=float(veil_rng.uniform(*VEIL_COVERAGE)),
                height_km=float(veil_rng.uniform(*VEIL_HEIGHT_KM)),
                optical_depth=float(veil_rng.uniform(*VEIL_OPTICAL_DEPTH)),
                key=int(veil_rng.integers(2**31)),
                b10_gain=None if self.veil_b10 is None else float(veil_rng.uniform(*self.veil_b10)),
            )  # fmt: skip
            clouds = tuple(sorted((*atmosphere.clouds, veil), key=lambda c: c.height_km))
            atmosphere = replace(atmosphere, clouds=clouds)
        haze_rng = np.random.default_rng([key, 2])
        if haze_rng.random() < self.haze_share:
            strength = float(haze_rng.uniform(*DENSE_HAZE_STRENGTH))
            atmosphere = replace(atmosphere, haze=HazeLayer(strength, int(haze_rng.integers(2**31))))
        cirrus_rng = np.random.default_rng([key, 3])
        if cirrus_rng.random() < self.cirrus_share:
            cirrus = CirrusLayer(
                coverage=float(cirrus_rng.uniform(*FAINT_CIRRUS_COVERAGE)),
                reflectance=float(cirrus_rng.uniform(*FAINT_CIRRUS_REFLECTANCE)),
                angle_deg=float(cirrus_rng.uniform(0.0, 180.0)),
                key=int(cirrus_rng.integers(2**31)),
            )
            atmosphere = replace(atmosphere, cirrus=cirrus)
        tilt_rng = np.random.default_rng([key, 4])
        if tilt_rng.random() < self.tilt_share:
            tilted = tuple(replace(layer, tilt=float(tilt_rng.uniform(*CLOUD_TILT)))
                           for layer in atmosphere.clouds)  # fmt: skip
            atmosphere = replace(atmosphere, clouds=tilted)
        return atmosphere


def random_atmosphere(
    key: int, extras: RenderExtras = RenderExtras()
) -> tuple[Atmosphere, float, float, tuple[float, float]]:
    """An atmosphere from a random simulated site's climate and date with ``extras`` added, sun
    angles and origin."""
    rng = np.random.default_rng(key)
    site = get_site(sorted(SITES)[int(rng.integers(len(SITES)))])
    dates = revisit_dates(site, "2019-01-01", "2019-12-31")
    date: dt.date = dates[int(rng.integers(len(dates)))]
    regime = str(rng.choice(list(REGIME_ODDS), p=list(REGIME_ODDS.values())))
    atmosphere = draw_atmosphere(site, date, int(rng.integers(2**31)), regime)
    origin = (float(rng.uniform(0, WORLD_SPAN_PX)), float(rng.uniform(0, WORLD_SPAN_PX)))
    sun = float(rng.uniform(*SUN_AZIMUTH)), float(rng.uniform(*SUN_ELEVATION))
    return extras.add_to(atmosphere, key), *sun, origin


def path_reflectance(scene: LoadedScene, surface: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """The path reflectance (13 values) a background ``surface`` holds: none for bottom-of-
    atmosphere (L2A) scenes; for top-of-atmosphere ones the nominal Rayleigh path, bounded by the
    first percentile of the scene's ``clear`` pixels in each band (0 for bands it lacks)."""
    if scene.product_level != "l1c" or not clear.any():
        return np.zeros(len(L1C_BANDS), np.float32)
    darkest = np.nan_to_num(np.percentile(surface[:, clear], 1.0, axis=1), nan=0.0)
    return np.minimum(RAYLEIGH_PATH, darkest).astype(np.float32)


def _full_surface(scene: LoadedScene, columns: slice) -> np.ndarray:
    surface = np.full((len(L1C_BANDS), scene.grid.height, columns.stop), np.nan, np.float32)
    for band in scene.bands:
        surface[L1C_BANDS.index(band)] = scene.band(band)[:, columns]
    return surface


def background_views(scene: LoadedScene, gsds: tuple[int, ...]):
    """``(gsd_m, surface (13, y, x), clear, grid)`` of the training half at ``scene``'s GSD and
    at each coarser GSD of ``gsds`` that is a whole multiple of it."""
    columns = training_columns(scene.grid.width)
    clear = clear_agreement(run_detectors(scene), scene.gsd_m)[:, columns]
    surface = _full_surface(scene, columns)
    grid = scene.grid.window_grid(Window(0, 0, columns.stop, scene.grid.height))
    views = [(scene.gsd_m, surface, clear, grid)]
    for gsd in gsds:
        factor = int(round(gsd / scene.gsd_m))
        if factor > 1 and np.isclose(gsd / scene.gsd_m, factor, rtol=0.02):
            if min(clear.shape) // factor < MIN_SIZE_PX:
                continue
            coarse_clear = block_mean(clear.astype(np.float32), factor) == 1.0
            views.append((float(gsd), block_mean(surface, factor), coarse_clear,
                          coarser_grid(grid, factor)))  # fmt: skip
    return views


def write_background_set(
    scenes: list[LoadedScene],
    out: str | os.PathLike,
    renders_per_view: int = DEFAULT_RENDERS,
    seed: int = 0,
    gsds: tuple[int, ...] = (20, 30, 60),
    verbose: bool = True,
    extras: RenderExtras = RenderExtras(),
    keep_path: bool = False,
) -> Path:
    """Render ``renders_per_view`` atmospheres (with ``extras``) over every usable background
    view of ``scenes`` into a dataset at ``out`` (split ``train``; site = the real scene) and
    return its manifest. ``keep_path``: shadows keep the path reflectance (module doc)."""
    out = Path(out)
    with DatasetWriter(out) as writer:
        for scene in scenes:
            if not scene.has(("B02", "B03", "B04", "B08")):
                continue
            for gsd, surface, clear, grid in background_views(scene, gsds):
                if clear.mean() < MIN_CLEAR_SHARE:
                    if verbose:
                        print(f"backgrounds: {scene.name} at {gsd:g} m skipped "
                              f"(clear share {clear.mean():.2f} < {MIN_CLEAR_SHARE})")  # fmt: skip
                    continue
                bands = [L1C_BANDS.index(band) for band in scene.bands]
                path = path_reflectance(scene, surface, clear) if keep_path else None
                for render in range(renders_per_view):
                    key = stable_key(seed, scene.name, gsd, render, "background")
                    atmosphere, azimuth, elevation, origin = random_atmosphere(key, extras)
                    toa, mask = render_on_background(
                        surface, clear, gsd, atmosphere, azimuth, elevation, origin, path
                    )
                    scene_id = f"{scene.name.replace('/', '-')}_{gsd:g}m_{render:02d}"
                    writer.add(
                        scene_id, reflectance_to_dn(toa[bands]), mask, grid, scene.bands,
                        site=scene.name.replace("/", "-"), date="", label_source="real_background",
                        split="train", tags={"ATMOSPHERE": atmosphere.regime,
                                             "GSD_M": f"{gsd:g}"},
                    )  # fmt: skip
                if verbose:
                    print(f"backgrounds: {scene.name} at {gsd:g} m: {renders_per_view} renders")
    return out / MANIFEST_NAME
