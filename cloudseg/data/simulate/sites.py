"""Simulated sites: where each world lies (a UTM tile) and what it is like (land cover, climate).

Each site is one MGRS-like tile (10980 x 10980 px at 10 m, origin on the 60 m lattice like real
tiles) with a land-cover mix, relief, snow regime and cloud climate. Tile ids have the MGRS shape
(zone, latitude band, two letters) but the sites are invented; they stand for typical Sentinel-2
situations, including the confusers a cloud mask must not fall for (snow, bright desert, water,
haze, urban).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS

from cloudseg.sentinel2.grid import Grid

TILE_SIZE_PX = 10980
PIXEL_SIZE_M = 10.0
CLOUD_REGIMES = ("clear", "partly", "overcast")


@dataclass(frozen=True)
class LandCoverMix:
    """Target area fractions. ``water``/``ice`` are of the whole tile (lowest/highest ground),
    ``urban`` of the land, and ``desert``/``fields``/``forest`` of the rest (``soil`` fills up)."""

    water: float = 0.03
    ice: float = 0.0
    urban: float = 0.03
    desert: float = 0.0
    fields: float = 0.4
    forest: float = 0.3
    rivers: bool = False

    def __post_init__(self) -> None:
        values = (self.water, self.ice, self.urban, self.desert, self.fields, self.forest)
        if any(v < 0 or v > 1 for v in values) or self.desert + self.fields + self.forest > 1:
            raise ValueError(f"Invalid land-cover fractions {self}: each in [0, 1] and "
                             f"desert + fields + forest <= 1.")  # fmt: skip


@dataclass(frozen=True)
class Site:
    """One simulated site. Elevation-like thresholds (snowlines, treeline) are quantiles of the
    site's elevation field: ``snowline_winter=0.4`` puts winter snow on the upper 60 % of ground."""

    site_id: str
    description: str
    epsg: int
    tile_id: str
    tile_origin: tuple[float, float]  # upper-left (x, y) in metres, on the 60 m lattice
    latitude: float
    landcover: LandCoverMix
    base_altitude_m: float = 200.0
    relief_m: float = 300.0
    treeline: float = 1.0
    snowline_summer: float = 1.1  # > 1: no snow in summer
    snowline_winter: float = 1.1  # persistent winter snowline
    snow_event_probability: float = 0.0  # chance in mid-winter that snow reaches the lowlands
    lakes_freeze: bool = False
    vegetation_seasonality: float = 1.0  # 0 tropical evergreen .. 1 strongly seasonal
    regime_probabilities: tuple[float, float, float] = (0.2, 0.6, 0.2)  # clear, partly, overcast
    haze_strength: float = 0.03  # typical additive blue reflectance of haze
    in_labeled_set: bool = True  # False: a stack site the default labeled set leaves unseen

    def __post_init__(self) -> None:
        if abs(sum(self.regime_probabilities) - 1.0) > 1e-6:
            raise ValueError(
                f"Site {self.site_id}: regime_probabilities {self.regime_probabilities} must "
                f"sum to 1 (clear, partly, overcast)."
            )
        x0, y0 = self.tile_origin
        if x0 % 60 or y0 % 60:
            raise ValueError(f"Site {self.site_id}: tile origin {self.tile_origin} must lie on "
                             f"the 60 m lattice like MGRS tiles.")  # fmt: skip

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def utm_zone(self) -> int:
        return self.epsg % 100

    @property
    def longitude(self) -> float:
        """Approximate longitude of the tile centre (for the UTC sensing time)."""
        central_meridian = self.utm_zone * 6 - 183
        x_centre = self.tile_origin[0] + TILE_SIZE_PX * PIXEL_SIZE_M / 2
        metres_per_degree = 111_320.0 * math.cos(math.radians(self.latitude))
        return central_meridian + (x_centre - 500_000.0) / metres_per_degree

    def tile_grid(self) -> Grid:
        """The whole 10980 x 10980 px tile at 10 m."""
        x0, y0 = self.tile_origin
        transform = Affine(PIXEL_SIZE_M, 0.0, x0, 0.0, -PIXEL_SIZE_M, y0)
        return Grid(self.crs, transform, TILE_SIZE_PX, TILE_SIZE_PX)

    def window_grid(self, row: int, col: int, height: int, width: int) -> Grid:
        """A sub-window of the tile grid (pixel offsets from the tile's upper-left corner)."""
        x0, y0 = self.tile_origin
        transform = Affine(
            PIXEL_SIZE_M, 0.0, x0 + col * PIXEL_SIZE_M, 0.0, -PIXEL_SIZE_M, y0 - row * PIXEL_SIZE_M
        )
        return Grid(self.crs, transform, height, width)


SITES: dict[str, Site] = {
    site.site_id: site
    for site in (
        Site(
            "sim-site01",
            "agricultural valley with forested hills, a river, lakes, villages, winter snow",
            32632, "32TNT", (399960.0, 5300040.0), 47.8,
            LandCoverMix(water=0.04, urban=0.05, fields=0.55, forest=0.3, rivers=True),
            base_altitude_m=300, relief_m=600, snowline_winter=0.75, snow_event_probability=0.3,
        ),
        Site(
            "sim-site02",
            "alpine mountains: glaciers, seasonal snow, forest below the treeline, lakes",
            32632, "32TMS", (300000.0, 5200020.0), 46.9,
            LandCoverMix(water=0.03, ice=0.08, urban=0.01, fields=0.15, forest=0.55),
            base_altitude_m=700, relief_m=3000, treeline=0.7, snowline_summer=0.9,
            snowline_winter=0.35, snow_event_probability=0.5, regime_probabilities=(0.2, 0.55, 0.25),
        ),
        Site(
            "sim-site03",
            "bright desert: dunes, rocky plains, an oasis town with irrigated fields",
            32636, "36RUN", (199980.0, 2900040.0), 26.2,
            LandCoverMix(water=0.005, urban=0.02, desert=0.65, fields=0.04, forest=0.0),
            base_altitude_m=150, relief_m=250, vegetation_seasonality=0.3,
            regime_probabilities=(0.55, 0.35, 0.10), haze_strength=0.07,
        ),
        Site(
            "sim-site04",
            "lake district at a boreal coast: water, forest, small fields, frozen winters",
            32635, "35VND", (499980.0, 6800040.0), 61.3,
            LandCoverMix(water=0.35, urban=0.03, fields=0.15, forest=0.7),
            base_altitude_m=50, relief_m=150, snowline_winter=0.15, snow_event_probability=0.8,
            lakes_freeze=True, regime_probabilities=(0.15, 0.5, 0.35),
        ),
        Site(
            "sim-site05",
            "large city on a river with suburbs and farmland",
            32633, "33TVF", (399960.0, 4600020.0), 41.5,
            LandCoverMix(water=0.03, urban=0.45, fields=0.5, forest=0.2, rivers=True),
            base_altitude_m=50, relief_m=200, snow_event_probability=0.05, haze_strength=0.05,
        ),
        Site(
            "sim-site06",
            "subarctic hills: tundra, boreal forest, lakes, long snow season, small ice caps",
            32634, "34WDA", (399960.0, 7500000.0), 67.6,
            LandCoverMix(water=0.12, ice=0.02, urban=0.005, fields=0.02, forest=0.4),
            base_altitude_m=300, relief_m=900, treeline=0.6, snowline_summer=0.97,
            snowline_winter=0.0, snow_event_probability=0.9, lakes_freeze=True,
            regime_probabilities=(0.15, 0.5, 0.35),
        ),
        Site(
            "sim-site07",
            "semi-arid uplands: bare soil, sandy patches, dry farmland, snow on high ground",
            32630, "30SVH", (499980.0, 4200000.0), 37.9,
            LandCoverMix(water=0.02, urban=0.04, desert=0.2, fields=0.35, forest=0.08),
            base_altitude_m=600, relief_m=1500, treeline=0.85, snowline_winter=0.85,
            snow_event_probability=0.1, vegetation_seasonality=0.7,
            regime_probabilities=(0.4, 0.45, 0.15), haze_strength=0.05,
        ),
        Site(
            "sim-site08",
            "humid tropics: rainforest, a meandering river, clearings and plantations",
            32620, "20NQF", (699960.0, 400020.0), 3.6,
            LandCoverMix(water=0.05, urban=0.01, fields=0.12, forest=0.8, rivers=True),
            base_altitude_m=80, relief_m=300, vegetation_seasonality=0.05,
            regime_probabilities=(0.05, 0.55, 0.40), haze_strength=0.04,
        ),
        Site(
            "sim-site09",
            "persistently cloudy tropical mountains: cloud forest on steep slopes, valley farms; "
            "overcast on most dates, clear on a few (the demo's tile)",
            32618, "18NVL", (499980.0, 600000.0), 5.4,
            LandCoverMix(water=0.01, urban=0.01, fields=0.15, forest=0.75, rivers=True),
            base_altitude_m=900, relief_m=2600, treeline=0.92, vegetation_seasonality=0.1,
            regime_probabilities=(0.07, 0.23, 0.70), haze_strength=0.04, in_labeled_set=False,
        ),
    )
}  # fmt: skip
#: The sites of the default labeled set: every preset except stack-only ones (the demo's tiles lie
#: on a site the model never saw in training, like a user's own area).
LABELED_SITES: tuple[str, ...] = tuple(name for name, site in SITES.items() if site.in_labeled_set)


def get_site(site: Site | str) -> Site:
    """A :class:`Site` or a preset's id (``"sim-site01"`` ... ``"sim-site09"``)."""
    if isinstance(site, Site):
        return site
    if site not in SITES:
        raise ValueError(f"Unknown simulated site {site!r}; presets: {sorted(SITES)}.")
    return SITES[site]
