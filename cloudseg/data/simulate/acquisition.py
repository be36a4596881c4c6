"""When and how a simulated scene was acquired: revisit dates, spacecraft, relative orbit and its
swath edge, processing baseline (and with it the DN offset), sensing time and sun angles."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from cloudseg.data.simulate.sites import TILE_SIZE_PX, Site
from cloudseg.sentinel2.radiometry import offset_for_baseline

#: Sentinel-2A's first revisit cycle starts here; the 5-day cadence below counts from it.
CADENCE_EPOCH = dt.date(2015, 6, 28)
SENTINEL_2B_FROM = dt.date(2017, 7, 1)
#: Local solar time of the descending node (the overpass time over any site).
LOCAL_SOLAR_TIME_H = 10.5
#: Below this sun elevation no acquisition is simulated (real products stop near it too).
MIN_SUN_ELEVATION_DEG = 10.0
#: Sine of the ground track's angle to the meridian at the equator (98.6 deg inclination).
ORBIT_TILT_AT_EQUATOR = 0.15

#: Processing baselines by start date (approximate history up to 04.00). From 2022-01-25 on,
#: products are "04.00" and carry the -1000 DN offset.
BASELINE_HISTORY: tuple[tuple[dt.date, str], ...] = (
    (dt.date(2015, 6, 23), "02.04"),
    (dt.date(2017, 5, 2), "02.05"),
    (dt.date(2018, 5, 23), "02.06"),
    (dt.date(2018, 11, 6), "02.07"),
    (dt.date(2019, 7, 8), "02.08"),
    (dt.date(2020, 1, 28), "02.09"),
    (dt.date(2021, 6, 30), "03.01"),
    (dt.date(2022, 1, 25), "04.00"),
)

#: Day in the 10-day cycle -> (relative orbit role, spacecraft). The "full" orbit covers the
#: whole tile; the "partial" neighbouring orbit has its swath edge across the tile.
_CYCLE_DAYS = {0: ("full", "Sentinel-2A"), 2: ("partial", "Sentinel-2A"),
               5: ("full", "Sentinel-2B"), 7: ("partial", "Sentinel-2B")}  # fmt: skip


def parse_date(value: dt.date | str) -> dt.date:
    """A ``datetime.date`` or an ISO string ``YYYY-MM-DD``."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as err:
        raise ValueError(f"Cannot read date {value!r}; use ISO format like '2021-06-14'.") from err


def processing_baseline_for(date: dt.date) -> str:
    """The (approximate) processing baseline a product sensed on ``date`` carries."""
    if date < BASELINE_HISTORY[0][0]:
        raise ValueError(
            f"{date} is before Sentinel-2 operations began ({BASELINE_HISTORY[0][0]})."
        )
    baseline = BASELINE_HISTORY[0][1]
    for start, name in BASELINE_HISTORY:
        if date >= start:
            baseline = name
    return baseline


def solar_angles(latitude: float, date: dt.date) -> tuple[float, float]:
    """(azimuth, elevation) in degrees at the overpass (10:30 local solar time).

    Azimuth is clockwise from north (about 130-165 degrees in the northern morning).
    """
    day_of_year = date.timetuple().tm_yday
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365.0)
    hour_angle = math.radians(15.0 * (LOCAL_SOLAR_TIME_H - 12.0))
    lat = math.radians(latitude)
    sin_elevation = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(
        declination
    ) * math.cos(hour_angle)
    elevation = math.asin(max(-1.0, min(1.0, sin_elevation)))
    azimuth_from_south = math.atan2(
        math.sin(hour_angle),
        math.cos(hour_angle) * math.sin(lat) - math.tan(declination) * math.cos(lat),
    )
    azimuth = (math.degrees(azimuth_from_south) + 180.0) % 360.0
    return azimuth, math.degrees(elevation)


@dataclass(frozen=True)
class SwathEdge:
    """The edge of an orbit's swath: a line through world pixel ``(col, row)`` running
    ``angle_deg`` clockwise from north; everything east of it was not imaged (nodata)."""

    col: float
    row: float
    angle_deg: float

    def outside(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Boolean ``(len(rows), len(cols))``: True where the pixel lies beyond the edge."""
        angle = math.radians(self.angle_deg)
        # Signed distance to the line, positive to the east (cols grow east, rows grow south).
        distance = (cols[np.newaxis, :] - self.col) * math.cos(angle) + (
            rows[:, np.newaxis] - self.row
        ) * math.sin(angle)
        return distance > 0


def partial_orbit_edge(site: Site) -> SwathEdge:
    """Where the partial orbit's swath ends over ``site``: a fixed line across its tile, tilted
    from north like a descending ground track (about 12 deg at 45 N, more towards the poles)."""
    tilt = math.degrees(
        math.asin(min(1.0, ORBIT_TILT_AT_EQUATOR / math.cos(math.radians(site.latitude))))
    )
    return SwathEdge(col=0.6 * TILE_SIZE_PX, row=0.5 * TILE_SIZE_PX, angle_deg=tilt)


@dataclass(frozen=True)
class Acquisition:
    """Everything about one overpass that the scene's pixels and its metadata depend on."""

    date: dt.date
    sensing_time: dt.datetime
    spacecraft: str
    orbit: str  # "full" or "partial"
    processing_baseline: str
    sun_azimuth: float
    sun_elevation: float
    swath_edge: SwathEdge | None

    @property
    def dn_offset(self) -> float:
        """The additive DN offset of this product's baseline (0 or -1000)."""
        return offset_for_baseline(self.processing_baseline)

    def tags(self, tile_id: str) -> dict[str, str]:
        """The dataset tags scene readers take date, offset and sun angles from."""
        return {
            "SENSING_TIME": self.sensing_time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "PROCESSING_BASELINE": self.processing_baseline,
            "TILE_ID": tile_id,
            "SPACECRAFT": self.spacecraft,
            "SUN_AZIMUTH": f"{self.sun_azimuth:.4f}",
            "SUN_ELEVATION": f"{self.sun_elevation:.4f}",
        }


def cycle_day(date: dt.date) -> int:
    return (date - CADENCE_EPOCH).days % 10


def is_revisit_date(date: dt.date) -> bool:
    """True on days the constellation images a site (two orbits, one or two spacecraft)."""
    day = cycle_day(date)
    if day not in _CYCLE_DAYS:
        return False
    return date >= SENTINEL_2B_FROM or _CYCLE_DAYS[day][1] == "Sentinel-2A"


def acquisition_for(site: Site, date: dt.date | str) -> Acquisition:
    """The acquisition of ``site`` on ``date`` (a revisit date, see :func:`revisit_dates`)."""
    date = parse_date(date)
    if not is_revisit_date(date):
        raise ValueError(
            f"{date} is not a simulated overpass of {site.site_id}; pick a date from "
            f"revisit_dates() (a 5-day cadence, two orbits, Sentinel-2B from {SENTINEL_2B_FROM})."
        )
    orbit, spacecraft = _CYCLE_DAYS[cycle_day(date)]
    azimuth, elevation = solar_angles(site.latitude, date)
    if elevation < MIN_SUN_ELEVATION_DEG:
        raise ValueError(
            f"The sun is {elevation:.1f} deg high over {site.site_id} on {date}; no acquisition "
            f"below {MIN_SUN_ELEVATION_DEG} deg. Pick another date."
        )
    utc_hours = LOCAL_SOLAR_TIME_H - site.longitude / 15.0 + (0.004 if orbit == "partial" else 0)
    sensing_time = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC) + dt.timedelta(
        hours=utc_hours
    )
    return Acquisition(
        date=date,
        sensing_time=sensing_time,
        spacecraft=spacecraft,
        orbit=orbit,
        processing_baseline=processing_baseline_for(date),
        sun_azimuth=azimuth,
        sun_elevation=elevation,
        swath_edge=partial_orbit_edge(site) if orbit == "partial" else None,
    )


def revisit_dates(site: Site, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """All simulated overpasses of ``site`` between ``start`` and ``end`` (inclusive) with the sun
    high enough to image."""
    start, end = parse_date(start), parse_date(end)
    if end < start:
        raise ValueError(f"End date {end} is before start date {start}.")
    dates = []
    for offset in range((end - start).days + 1):
        date = start + dt.timedelta(days=offset)
        if is_revisit_date(date) and solar_angles(site.latitude, date)[1] >= MIN_SUN_ELEVATION_DEG:
            dates.append(date)
    return dates


def select_dates(
    site: Site, n_dates: int, start: dt.date | str, end: dt.date | str, rng: np.random.Generator
) -> list[dt.date]:
    """``n_dates`` distinct overpasses drawn at random between ``start`` and ``end``, sorted."""
    candidates = revisit_dates(site, start, end)
    if n_dates < 1 or n_dates > len(candidates):
        raise ValueError(
            f"Cannot pick {n_dates} dates: {site.site_id} has {len(candidates)} overpasses "
            f"between {start} and {end}. Widen the date range or ask for fewer dates."
        )
    chosen = rng.choice(len(candidates), size=n_dates, replace=False)
    return [candidates[i] for i in sorted(chosen)]
