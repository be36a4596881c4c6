"""Filtering scenes (tile, bbox, years, months, cloud cover) and deduplicating overpasses: the same
local solar day, tile, spacecraft and relative orbit keeps the scene with the least nodata."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter

from cloudseg.sentinel2.radiometry import parse_baseline
from composite.stack.scenes import WGS84, StackScene
from composite.stack.settings import StackSettings

log = logging.getLogger(__name__)


#: Longest side (pixels) of the coarse read that measures a scene's nodata share.
NODATA_PROBE_SIZE = 128


def filter_reasons(scene: StackScene, settings: StackSettings) -> str | None:
    """The first filter ``scene`` fails (``"tile"``, ``"bbox"``, ``"years"``, ``"months"``,
    ``"cloud_cover"``), or ``None`` if it passes them all."""
    if settings.tile is not None and scene.tile_id not in (None, settings.tile):
        return "tile"
    if settings.bbox is not None:
        west, south, east, north = scene.grid.bounds_in(WGS84)
        b_west, b_south, b_east, b_north = settings.bbox
        if not (west < b_east and b_west < east and south < b_north and b_south < north):
            return "bbox"
    if settings.years is not None and scene.datetime.year not in settings.years:
        return "years"
    if settings.months is not None and scene.datetime.month not in settings.months:
        return "months"
    if (
        settings.max_cloud_cover is not None
        and scene.cloud_cover is not None
        and scene.cloud_cover > settings.max_cloud_cover
    ):
        return "cloud_cover"
    return None


def overpass_key(scene: StackScene) -> tuple:
    """Scenes with equal keys are the same overpass: same solar day, tile, spacecraft, orbit."""
    return (scene.solar_date, scene.tile_id, scene.spacecraft, scene.relative_orbit)


def nodata_fraction(scene: StackScene) -> float:
    """Share of the scene's grid without data in its first spectral band (a coarse read)."""
    band = scene.spectral_bands[0] if scene.spectral_bands else scene.bands[0]
    factor = max(1, math.ceil(max(scene.grid.shape) / NODATA_PROBE_SIZE))
    with scene.open() as opened:
        probe = opened.read([band], grid=scene.grid.with_resolution(scene.grid.resolution * factor))
    return float((probe == 0).mean())


def deduplicate(scenes: list[StackScene]) -> tuple[list[StackScene], list[tuple[str, str]]]:
    """Keep one scene per :func:`overpass_key`: the one with the least nodata (then the newest
    processing baseline, then the first listed). Returns ``(kept, [(dropped, kept), ...])``."""
    groups: dict[tuple, list[StackScene]] = {}
    for scene in scenes:
        groups.setdefault(overpass_key(scene), []).append(scene)
    kept: list[StackScene] = []
    dropped: list[tuple[str, str]] = []
    for group in groups.values():
        if len(group) == 1:
            kept.append(group[0])
            continue
        ranked = sorted(
            enumerate(group),
            key=lambda pair: (
                nodata_fraction(pair[1]),
                _baseline_rank(pair[1].processing_baseline),
                pair[0],
            ),
        )
        best = ranked[0][1]
        kept.append(best)
        for _, scene in ranked[1:]:
            dropped.append((scene.scene_id, best.scene_id))
            log.info(
                "Scene %s is the same overpass as %s (%s); keeping %s, which has less nodata.",
                scene.scene_id, best.scene_id, scene.solar_date, best.scene_id,
            )  # fmt: skip
    return kept, dropped


def _baseline_rank(baseline: str | None) -> float:
    """Sort key that puts newer processing baselines first."""
    try:
        value = parse_baseline(baseline)
    except ValueError:
        value = None
    return -(value or 0.0)


def unique_ids(scenes: list[StackScene]) -> list[StackScene]:
    """Suffix repeated scene ids with ``-2``, ``-3``... (in stack order)."""
    counts = Counter(scene.scene_id for scene in scenes)
    seen: Counter[str] = Counter()
    out = []
    for scene in scenes:
        if counts[scene.scene_id] > 1:
            seen[scene.scene_id] += 1
            if seen[scene.scene_id] > 1:
                scene = dataclasses.replace(
                    scene, scene_id=f"{scene.scene_id}-{seen[scene.scene_id]}"
                )
        out.append(scene)
    return out
