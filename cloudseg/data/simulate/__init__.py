"""A Sentinel-2 L1C simulator: 13-band TOA reflectance scenes with their true cloud masks.

Scenes are physically plausible rather than photo-real: spatially coherent land cover with
per-class spectra, texture, relief and seasons (:mod:`.surface`); cumulus, stratus, high cloud,
cirrus, haze and cloud shadows cast along the sun's direction (:mod:`.atmosphere`); coarser
20/60 m bands, sensor noise and swath edges (:mod:`.sensor`); real acquisition metadata such as
processing baselines with their DN offset and sun angles (:mod:`.acquisition`). Everything is a
function of world coordinates and the seed (:mod:`.noise`), so the output is deterministic and
overlapping grids agree. :mod:`.products` writes the labeled set, a time-series stack with its
truth and two overlapping tiles in the formats the real pipeline reads.
"""

from cloudseg.data.simulate.acquisition import Acquisition, acquisition_for, revisit_dates
from cloudseg.data.simulate.atmosphere import Atmosphere, CirrusLayer, CloudLayer, HazeLayer
from cloudseg.data.simulate.products import (
    PlannedScene,
    labeled_set_plan,
    stack_grid,
    write_labeled_set,
    write_overlapping_tiles,
    write_stack,
)
from cloudseg.data.simulate.scene import SimulatedScene, World, simulate_scene
from cloudseg.data.simulate.sites import SITES, LandCoverMix, Site, get_site
from cloudseg.data.simulate.surface import LANDCOVER_CLASSES

__all__ = [
    "LANDCOVER_CLASSES",
    "SITES",
    "Acquisition",
    "Atmosphere",
    "CirrusLayer",
    "CloudLayer",
    "HazeLayer",
    "LandCoverMix",
    "PlannedScene",
    "SimulatedScene",
    "Site",
    "World",
    "acquisition_for",
    "get_site",
    "labeled_set_plan",
    "revisit_dates",
    "simulate_scene",
    "stack_grid",
    "write_labeled_set",
    "write_overlapping_tiles",
    "write_stack",
]
