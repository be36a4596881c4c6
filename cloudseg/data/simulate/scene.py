"""One simulated scene: a world (site + seed) rendered on a 10 m grid on one date.

World coordinates are 10 m pixels counted from the site tile's upper-left corner (columns east,
rows south); every field is a function of them, so any two grids over the same world agree
pixel for pixel where they overlap. A scene is rendered on its window widened to whole 60 m
blocks (for the coarse bands), then cut to the window.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, replace

import numpy as np

from cloudseg.data.simulate.acquisition import Acquisition, acquisition_for, parse_date
from cloudseg.data.simulate.atmosphere import (
    Atmosphere,
    classify,
    draw_atmosphere,
    render_atmosphere,
)
from cloudseg.data.simulate.library import SpectralLibrary
from cloudseg.data.simulate.noise import stable_key
from cloudseg.data.simulate.sensor import add_sensor_noise, apply_band_resolutions, block_aligned
from cloudseg.data.simulate.sites import PIXEL_SIZE_M, Site, get_site
from cloudseg.data.simulate.surface import (
    SPECTRA,
    StaticSurface,
    build_static_surface,
    surface_state,
)
from cloudseg.labels import CLEAR, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import reflectance_to_dn


@dataclass
class SimulatedScene:
    """A rendered scene with its truth. Arrays are on ``grid``; bands in ``L1C_BANDS`` order."""

    reflectance: np.ndarray  # (13, y, x) float32 TOA reflectance, NaN outside the swath
    mask: np.ndarray  # (y, x) uint8: 0 clear, 1 thick, 2 thin, 3 shadow, 255 outside the swath
    surface: np.ndarray  # (13, y, x) float32 true cloud-free, noise-free reflectance
    landcover: np.ndarray  # (y, x) uint8 codes of surface.LANDCOVER_CLASSES
    snow_fraction: np.ndarray  # (y, x) float32 seasonal snow cover 0..1
    grid: Grid
    site: Site
    acquisition: Acquisition
    atmosphere: Atmosphere
    bands: tuple[str, ...] = L1C_BANDS

    @property
    def date(self) -> dt.date:
        return self.acquisition.date

    @property
    def processing_baseline(self) -> str:
        return self.acquisition.processing_baseline

    @property
    def sun_azimuth(self) -> float:
        return self.acquisition.sun_azimuth

    @property
    def sun_elevation(self) -> float:
        return self.acquisition.sun_elevation

    @property
    def valid(self) -> np.ndarray:
        return self.mask != IGNORE_INDEX

    def dn(self) -> np.ndarray:
        """The scene as the product stores it: uint16 DN with its baseline's offset, 0 nodata."""
        return reflectance_to_dn(self.reflectance, self.acquisition.dn_offset)

    def surface_dn(self) -> np.ndarray:
        """The true surface as uint16 reflectance x 10000 (offset 0, no nodata)."""
        return reflectance_to_dn(self.surface, 0.0)

    def tags(self) -> dict[str, str]:
        return self.acquisition.tags(self.site.tile_id)

    def cloud_fraction(self) -> float:
        """Share of valid pixels labelled thick or thin cloud."""
        valid = self.valid
        if not valid.any():
            return 0.0
        cloudy = (self.mask == THICK_CLOUD) | (self.mask == THIN_CLOUD)
        return float(cloudy[valid].mean())


class World:
    """A simulated world: one site and one seed, renderable on any 10 m grid over the site.

    The static surface of the last rendered region is kept, so rendering many dates on one grid
    (a time series) computes land cover and relief once. With a ``library`` each date's surface
    is mixed from real endmember spectra drawn from it (:class:`SpectralLibrary`).
    """

    def __init__(
        self, site: Site | str, seed: int = 0, library: SpectralLibrary | None = None
    ) -> None:
        self.site = get_site(site)
        self.seed = int(seed)
        self.library = library
        self._static: tuple[tuple[float, ...], StaticSurface] | None = None

    def pixel_offset(self, grid: Grid) -> tuple[int, int]:
        """(row, col) of the grid's upper-left pixel in world pixels; the grid must be a 10 m
        north-up grid in the site's CRS on the 10 m lattice of its tile."""
        transform = grid.transform
        if grid.crs != self.site.crs:
            raise ValueError(
                f"Grid CRS {grid.crs} differs from {self.site.site_id}'s {self.site.crs}; "
                f"build grids with Site.window_grid()."
            )
        if (
            transform.a != PIXEL_SIZE_M
            or transform.e != -PIXEL_SIZE_M
            or transform.b
            or transform.d
        ):
            raise ValueError(f"Grid transform {tuple(transform)[:6]} is not a north-up 10 m grid.")
        col = (transform.c - self.site.tile_origin[0]) / PIXEL_SIZE_M
        row = (self.site.tile_origin[1] - transform.f) / PIXEL_SIZE_M
        if not (math.isclose(col, round(col)) and math.isclose(row, round(row))):
            raise ValueError(
                f"Grid origin ({transform.c}, {transform.f}) is not on the 10 m pixel lattice of "
                f"tile {self.site.tile_id} (origin {self.site.tile_origin})."
            )
        return round(row), round(col)

    def static_surface(self, cols: np.ndarray, rows: np.ndarray) -> StaticSurface:
        """Land cover, relief and texture at the given world pixel centres (last one cached)."""
        region = (cols[0], cols[-1], rows[0], rows[-1], len(cols), len(rows))
        if self._static is None or self._static[0] != region:
            self._static = (region, build_static_surface(self.site, self.seed, cols, rows))
        return self._static[1]

    def acquisition(self, date: dt.date | str) -> Acquisition:
        return acquisition_for(self.site, parse_date(date))

    def spectra(self, date: dt.date) -> np.ndarray:
        """The endmember spectra of ``date``: built-in, or drawn from the library."""
        if self.library is None:
            return SPECTRA
        key = stable_key(self.seed, self.site.site_id, date.isoformat(), "library")
        return self.library.draw(SPECTRA, np.random.default_rng(key))

    def atmosphere(self, date: dt.date | str, regime: str | None = None) -> Atmosphere:
        return draw_atmosphere(self.site, parse_date(date), self.seed, regime)

    def render(
        self,
        grid: Grid,
        date: dt.date | str,
        *,
        regime: str | None = None,
        atmosphere: Atmosphere | None = None,
    ) -> SimulatedScene:
        """The scene of ``date`` on ``grid``; ``regime`` forces clear/partly/overcast skies and
        ``atmosphere`` replaces the drawn one entirely."""
        date = parse_date(date)
        acquisition = self.acquisition(date)
        if atmosphere is None:
            atmosphere = self.atmosphere(date, regime)
        row0, col0 = self.pixel_offset(grid)
        row_start, row_stop = block_aligned(row0, row0 + grid.height)
        col_start, col_stop = block_aligned(col0, col0 + grid.width)
        rows = np.arange(row_start, row_stop) + 0.5
        cols = np.arange(col_start, col_stop) + 0.5

        static = self.static_surface(cols, rows)
        sun = (acquisition.sun_azimuth, acquisition.sun_elevation)
        state = surface_state(static, self.site, self.seed, date, *sun, self.spectra(date))
        rendered = render_atmosphere(atmosphere, state.reflectance, cols, rows, *sun)
        noise_key = stable_key(self.seed, self.site.site_id, date.isoformat(), "sensor noise")
        toa = add_sensor_noise(apply_band_resolutions(rendered.reflectance), cols, rows, noise_key)
        surface = apply_band_resolutions(state.reflectance)

        window = (
            slice(row0 - row_start, row0 - row_start + grid.height),
            slice(col0 - col_start, col0 - col_start + grid.width),
        )
        reflectance = toa[(slice(None), *window)]
        mask = classify(rendered)[window]
        if acquisition.swath_edge is not None:
            outside = acquisition.swath_edge.outside(cols[window[1]], rows[window[0]])
            reflectance[:, outside] = np.nan
            mask[outside] = IGNORE_INDEX
        return SimulatedScene(
            reflectance=np.ascontiguousarray(reflectance),
            mask=np.ascontiguousarray(mask),
            surface=np.ascontiguousarray(surface[(slice(None), *window)]),
            landcover=np.ascontiguousarray(static.landcover[window]),
            snow_fraction=np.ascontiguousarray(state.snow_fraction[window]),
            grid=grid,
            site=self.site,
            acquisition=acquisition,
            atmosphere=atmosphere,
        )

    def cirrus_only(self, scene: SimulatedScene) -> np.ndarray:
        """Where ``scene`` (rendered by this world) is labelled not clear only because of its
        cirrus: the same scene rendered without its cirrus layer is clear there. Faint cirrus is
        bright in B10 and adds only a few hundredths of reflectance, nearly flat, in the other
        bands, so this is what a model without B10 can barely see."""
        if scene.atmosphere.cirrus is None:
            return np.zeros(scene.mask.shape, dtype=bool)
        without = self.render(
            scene.grid, scene.date, atmosphere=replace(scene.atmosphere, cirrus=None)
        )
        labelled = (scene.mask != CLEAR) & (scene.mask != IGNORE_INDEX)
        return labelled & (without.mask == CLEAR)


def simulate_scene(
    site: Site | str,
    date: dt.date | str,
    *,
    grid: Grid | None = None,
    size: int = 512,
    seed: int = 0,
    regime: str | None = None,
) -> SimulatedScene:
    """Render one scene of ``site`` on ``date`` (an overpass, see ``revisit_dates``).

    ``grid`` defaults to the ``size`` x ``size`` window at the tile's upper-left corner.
    """
    world = World(site, seed)
    if grid is None:
        grid = world.site.window_grid(0, 0, size, size)
    return world.render(grid, date, regime=regime)
