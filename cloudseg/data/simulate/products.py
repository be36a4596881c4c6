"""The simulator's three products, written in the formats the real pipeline reads.

* :func:`write_labeled_set`: scenes from several sites through :class:`DatasetWriter`
  (``manifest.csv``, ``images/`` uint16 DN, ``masks/`` uint8 classes), cloud regimes in fixed
  shares (some clear, mostly partly cloudy, some overcast), some scenes cut by a swath edge.
* :func:`write_stack`: a time series over one site::

      <out>/stack.json                   site, tile, grid, bands, dates and file lists
      <out>/scenes/<date>.tif            13-band uint16 DN (baseline offset applied), nodata 0,
                                         tags SENSING_TIME, PROCESSING_BASELINE, TILE_ID, ...
      <out>/truth/masks/<date>.tif       uint8 true classes (255 outside the swath)
      <out>/truth/surface/<date>.tif     uint16 true cloud-free reflectance x 10000 (offset 0)

* :func:`write_overlapping_tiles`: the same stack on two neighbouring grids that overlap, each
  written like :func:`write_stack`, plus ``tiles.json`` locating the overlap in both.

A rerun overwrites: every raster is written atomically and the JSON files last.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cloudseg.data.manifest import MANIFEST_NAME, DatasetWriter
from cloudseg.data.simulate.acquisition import (
    acquisition_for,
    parse_date,
    partial_orbit_edge,
    revisit_dates,
    select_dates,
)
from cloudseg.data.simulate.library import SpectralLibrary
from cloudseg.data.simulate.noise import stable_key
from cloudseg.data.simulate.scale import (
    BASE_GSD_M,
    block_mean,
    block_mode,
    coarser_grid,
    gsd_factor,
)
from cloudseg.data.simulate.scene import SimulatedScene, World
from cloudseg.data.simulate.sites import (
    CLOUD_REGIMES,
    LABELED_SITES,
    TILE_SIZE_PX,
    Site,
    get_site,
)
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.cog import atomic_path, write_cog
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.radiometry import reflectance_to_dn

#: Shares of clear, partly cloudy and overcast scenes in the labeled set.
LABELED_REGIME_SHARES = {"clear": 0.15, "partly": 0.65, "overcast": 0.20}
#: Share of labeled scenes on a partial-orbit date that are placed across the swath edge.
SWATH_EDGE_SHARE = 0.4
LABELED_DATE_RANGE = ("2017-07-01", "2023-12-31")
STACK_DATE_RANGE = ("2019-01-01", "2023-12-31")
STACK_SITE = "sim-site01"
STACK_FOLDERS = ("scenes", "truth/masks", "truth/surface")
SURFACE_TAGS = {
    "CONTENT": "true cloud-free, noise-free TOA reflectance x 10000 (simulated)",
    "RADIO_ADD_OFFSET": "0",
}


def regime_quota(n_scenes: int, rng: np.random.Generator) -> list[str]:
    """``n_scenes`` regimes in the shares of ``LABELED_REGIME_SHARES`` (largest remainders),
    shuffled."""
    shares = np.array([LABELED_REGIME_SHARES[name] for name in CLOUD_REGIMES])
    exact = shares * n_scenes
    counts = np.floor(exact).astype(int)
    for index in np.argsort(counts - exact)[: n_scenes - counts.sum()]:
        counts[index] += 1
    regimes = [
        name for name, count in zip(CLOUD_REGIMES, counts, strict=True) for _ in range(count)
    ]
    return [regimes[i] for i in rng.permutation(n_scenes)]


def _labeled_window(
    site: Site, date: dt.date, size: int, rng: np.random.Generator
) -> tuple[int, int]:
    """(row, col) of a labeled scene in its tile. On partial-orbit dates the window is either
    placed across the swath edge (a nodata border, ``SWATH_EDGE_SHARE`` of them) or inside the
    swath, never beyond it."""
    limit = TILE_SIZE_PX - size
    row = int(rng.integers(0, limit + 1))
    if acquisition_for(site, date).swath_edge is None:
        return row, int(rng.integers(0, limit + 1))
    edge = partial_orbit_edge(site)
    slope = math.tan(math.radians(edge.angle_deg))
    edge_cols = [edge.col - (r - edge.row) * slope for r in (row, row + size)]
    if rng.random() < SWATH_EDGE_SHARE:
        col = int(np.mean(edge_cols) - size * rng.uniform(0.45, 0.9))
    else:
        col = int(rng.integers(0, max(int(min(edge_cols)) - size, 0) + 1))
    return row, min(max(col, 0), limit)


@dataclass(frozen=True)
class PlannedScene:
    """One scene of a labeled set before it is rendered: its index, world, 10 m grid, date and
    sky regime (:func:`labeled_set_plan`)."""

    index: int
    world: World
    grid: Grid
    date: dt.date
    regime: str

    @property
    def scene_id(self) -> str:
        """The scene's id at 10 m (a coarser set appends ``_<gsd>m``)."""
        return f"{self.world.site.site_id}_{self.date:%Y%m%d}_{self.index:04d}"

    def render(self) -> SimulatedScene:
        return self.world.render(self.grid, self.date, regime=self.regime)


def labeled_set_plan(
    n_scenes: int = 100,
    size: int = 512,
    seed: int = 0,
    *,
    sites: list[str] | None = None,
    library: SpectralLibrary | None = None,
) -> list[PlannedScene]:
    """The scenes :func:`write_labeled_set` renders with these arguments, in its order: cycling
    over ``sites`` (default: ``LABELED_SITES``, every preset but stack-only ones), a date and a
    window drawn per scene, cloud regimes in the shares of ``LABELED_REGIME_SHARES``. Replaying
    a set's plan renders its scenes again, e.g. to ask what made a pixel's label."""
    if n_scenes < 1 or size < 1:
        raise ValueError(f"n_scenes ({n_scenes}) and size ({size}) must be positive.")
    if size > TILE_SIZE_PX:
        raise ValueError(f"size {size} exceeds the {TILE_SIZE_PX}-px tile.")
    worlds = [World(get_site(site), seed, library) for site in (sites or LABELED_SITES)]
    rng = np.random.default_rng(stable_key(seed, "labeled set"))
    regimes = regime_quota(n_scenes, rng)
    candidates = {
        world.site.site_id: revisit_dates(world.site, *LABELED_DATE_RANGE) for world in worlds
    }
    plan = []
    for index in range(n_scenes):
        world = worlds[index % len(worlds)]
        dates = candidates[world.site.site_id]
        date = dates[int(rng.integers(len(dates)))]
        row, col = _labeled_window(world.site, date, size, rng)
        grid = world.site.window_grid(row, col, size, size)
        plan.append(PlannedScene(index, world, grid, date, regimes[index]))
    return plan


def write_labeled_set(
    out: str | os.PathLike,
    n_scenes: int = 100,
    size: int = 512,
    seed: int = 0,
    *,
    sites: list[str] | None = None,
    library: SpectralLibrary | None = None,
    gsds: tuple[int, ...] = (BASE_GSD_M,),
    ignore_cirrus_only: bool = False,
    progress: bool = True,
) -> Path:
    """Write the ``n_scenes`` labeled ``size`` x ``size`` scenes of :func:`labeled_set_plan`
    and return the manifest path. Like every :class:`DatasetWriter` it merges into a manifest
    already in ``out`` (same scene ids are replaced): use a fresh folder for a different set.

    ``library`` mixes each scene's surface from real spectra (:class:`SpectralLibrary`);
    ``gsds`` cycles the scenes over ground sampling distances (a 10 m render averaged to 20, 30
    or 60 m pixels, :mod:`.scale`), so scene ``i`` is ``size / (gsd / 10)`` px at ``gsds[i % n]``.
    ``ignore_cirrus_only`` labels ignore (255) the pixels that are not clear only because of
    cirrus (:meth:`World.cirrus_only`): a set for models without B10, which barely see it.
    """
    factors = [gsd_factor(gsd) for gsd in gsds]
    plan = labeled_set_plan(n_scenes, size, seed, sites=sites, library=library)
    out = Path(out)
    with DatasetWriter(out) as writer:
        for planned in tqdm(plan, desc="labeled scenes", disable=not progress):
            scene = planned.render()
            mask = scene.mask
            if ignore_cirrus_only:
                mask = np.where(planned.world.cirrus_only(scene), np.uint8(IGNORE_INDEX), mask)
            factor = factors[planned.index % len(factors)]
            suffix = f"_{BASE_GSD_M * factor}m" if len(factors) > 1 else ""
            writer.add(
                planned.scene_id + suffix,
                reflectance_to_dn(
                    block_mean(scene.reflectance, factor), scene.acquisition.dn_offset
                ),
                block_mode(mask, factor),
                coarser_grid(scene.grid, factor),
                scene.bands,
                site=scene.site.site_id,
                date=scene.date.isoformat(),
                label_source="simulated",
                processing_baseline=scene.processing_baseline,
                tags=scene.tags(),
            )
    return out / MANIFEST_NAME


def stack_window(site: Site | str, size: int = 512) -> tuple[int, int]:
    """(row, col) in the tile of the default ``size`` x ``size`` stack window: mid-tile, with the
    partial orbit's swath edge crossing it about 80 % of the way east."""
    site = get_site(site)
    if not 0 < size <= TILE_SIZE_PX // 2:
        raise ValueError(f"Stack size {size} must be between 1 and {TILE_SIZE_PX // 2} px.")
    edge = partial_orbit_edge(site)
    return int(edge.row) - size // 2, int(edge.col) - int(0.8 * size)


def stack_grid(site: Site | str, size: int = 512) -> Grid:
    """The grid of :func:`stack_window`."""
    site = get_site(site)
    return site.window_grid(*stack_window(site, size), size, size)


def _json_grid(grid: Grid) -> dict[str, Any]:
    return {
        "crs": grid.crs.to_string(),
        "transform": list(grid.transform)[:6],
        "height": grid.height,
        "width": grid.width,
    }


def _write_stack_date(scene: SimulatedScene, root: Path, tile_id: str) -> dict[str, Any]:
    """Write one date's scene and truth; return its ``stack.json`` entry."""
    name = scene.date.isoformat()
    files = {
        "scene": f"scenes/{name}.tif",
        "mask": f"truth/masks/{name}.tif",
        "surface": f"truth/surface/{name}.tif",
    }
    tags = scene.acquisition.tags(tile_id)
    write_cog(root / files["scene"], scene.dn(), scene.grid, nodata=0, band_names=scene.bands,
              tags=tags)  # fmt: skip
    write_cog(root / files["mask"], scene.mask, scene.grid, nodata=IGNORE_INDEX, categorical=True,
              tags=tags)  # fmt: skip
    write_cog(root / files["surface"], scene.surface_dn(), scene.grid, nodata=0,
              band_names=scene.bands, tags={**tags, **SURFACE_TAGS})  # fmt: skip
    counts = np.bincount(scene.mask.ravel(), minlength=IGNORE_INDEX + 1)
    valid = max(int(counts[: len(CLASS_NAMES)].sum()), 1)
    acquisition = scene.acquisition
    return {
        "date": name,
        "sensing_time": tags["SENSING_TIME"],
        "spacecraft": acquisition.spacecraft,
        "orbit": acquisition.orbit,
        "processing_baseline": acquisition.processing_baseline,
        "dn_offset": acquisition.dn_offset,
        "sun_azimuth": round(acquisition.sun_azimuth, 4),
        "sun_elevation": round(acquisition.sun_elevation, 4),
        "regime": scene.atmosphere.regime,
        "class_fractions": {
            name: round(int(counts[code]) / valid, 5) for code, name in enumerate(CLASS_NAMES)
        },
        "nodata_fraction": round(int(counts[IGNORE_INDEX]) / scene.mask.size, 5),
        **files,
    }


def write_stack(
    out: str | os.PathLike,
    n_dates: int = 100,
    size: int = 512,
    seed: int = 0,
    *,
    site: Site | str = STACK_SITE,
    start: dt.date | str = STACK_DATE_RANGE[0],
    end: dt.date | str = STACK_DATE_RANGE[1],
    grid: Grid | None = None,
    tile_id: str | None = None,
    progress: bool = True,
) -> Path:
    """Write an ``n_dates`` time series of one site (see the module docstring); return the path
    of its ``stack.json``. ``grid`` defaults to :func:`stack_grid`; the dates are drawn from the
    overpasses between ``start`` and ``end`` (the same for every grid of one ``seed``)."""
    world = World(site, seed)
    site = world.site
    grid = stack_grid(site, size) if grid is None else grid
    tile_id = tile_id or site.tile_id
    rng = np.random.default_rng(stable_key(seed, site.site_id, "stack dates"))
    dates = select_dates(site, n_dates, parse_date(start), parse_date(end), rng)
    root = Path(out)
    entries = []
    for date in tqdm(dates, desc=f"stack {site.site_id} {tile_id}", disable=not progress):
        entries.append(_write_stack_date(world.render(grid, date), root, tile_id))
    _remove_stale_dates(root, {entry["date"] for entry in entries})
    description = {
        "site": site.site_id,
        "site_description": site.description,
        "tile_id": tile_id,
        "seed": seed,
        "grid": _json_grid(grid),
        "bands": list(L1C_BANDS),
        "nodata": 0,
        "dn_scale": "reflectance = (DN + dn_offset) / 10000",
        "truth_surface": "uint16 reflectance x 10000, offset 0: the clear-sky scene without "
        "clouds, haze, shadows or noise",
        "mask_classes": {**dict(enumerate(CLASS_NAMES)), IGNORE_INDEX: "nodata"},
        "dates": entries,
    }
    path = root / "stack.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(description, indent=1))
    return path


def _remove_stale_dates(root: Path, dates: set[str]) -> None:
    """Delete ``<date>.tif`` files a previous, different run left in the stack's folders, so
    that a folder of scenes never mixes two stacks."""
    for folder in STACK_FOLDERS:
        for path in (root / folder).glob("????-??-??.tif"):
            if path.stem not in dates:
                path.unlink()


def neighbour_tile_id(tile_id: str) -> str:
    """The MGRS-style id of the tile east of ``tile_id`` (next column letter, I and O skipped)."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    column = tile_id[-2]
    if column not in letters:
        raise ValueError(f"Tile id {tile_id!r} does not end in two MGRS letters.")
    following = letters[(letters.index(column) + 1) % len(letters)]
    return f"{tile_id[:-2]}{following}{tile_id[-1]}"


def write_overlapping_tiles(
    out: str | os.PathLike,
    n_dates: int = 100,
    size: int = 512,
    overlap: int = 128,
    seed: int = 0,
    *,
    site: Site | str = STACK_SITE,
    start: dt.date | str = STACK_DATE_RANGE[0],
    end: dt.date | str = STACK_DATE_RANGE[1],
    progress: bool = True,
) -> Path:
    """Write the stack of ``site`` on two grids side by side (west ``tile_a``, east ``tile_b``)
    that share ``overlap`` columns, like neighbouring MGRS tiles; return ``tiles.json``.

    Both see the same world and atmosphere, so on the overlap their truth surfaces are identical
    and their scenes agree up to nothing at all: composites of each should agree there too.
    """
    if not 0 < overlap < size:
        raise ValueError(f"overlap {overlap} must be between 1 and size - 1 ({size - 1}) px.")
    site = get_site(site)
    row, col = stack_window(site, size)
    grid_a = site.window_grid(row, col, size, size)
    grid_b = site.window_grid(row, col + size - overlap, size, size)
    root = Path(out)
    tiles = {"tile_a": (grid_a, site.tile_id), "tile_b": (grid_b, neighbour_tile_id(site.tile_id))}
    for name, (grid, tile_id) in tiles.items():
        write_stack(root / name, n_dates, size, seed, site=site, start=start, end=end, grid=grid,
                    tile_id=tile_id, progress=progress)  # fmt: skip
    description = {
        "site": site.site_id,
        "seed": seed,
        "overlap_px": overlap,
        "tiles": {
            name: {"stack": f"{name}/stack.json", "tile_id": tile_id, "grid": _json_grid(grid)}
            for name, (grid, tile_id) in tiles.items()
        },
        # (row_off, col_off, height, width) of the shared pixels in each tile
        "overlap_windows": {
            "tile_a": [0, size - overlap, size, overlap],
            "tile_b": [0, 0, size, overlap],
        },
    }
    path = root / "tiles.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(description, indent=1))
    return path
