"""The output grid of a composite: its bands, CRS, pixel size and bounds (see
:class:`composite.driver.CompositeSettings` for the defaults), and its JSON record."""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from cloudseg.sentinel2.bands import AUXILIARY_LAYERS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.sources import LAYER_ORDER
from composite.stack import WGS84, Stack, StackScene

if TYPE_CHECKING:
    from composite.driver import CompositeSettings

log = logging.getLogger(__name__)


def composite_bands(stack: Stack, settings: CompositeSettings) -> tuple[str, ...]:
    """The output bands: ``settings.bands``, checked against every scene, or all common ones."""
    if settings.bands is not None:
        lacking = {
            scene.scene_id: [band for band in settings.bands if band not in scene.bands]
            for scene in stack.scenes
        }
        lacking = {sid: bands for sid, bands in lacking.items() if bands}
        if lacking:
            sid, bands = next(iter(lacking.items()))
            raise ValueError(
                f"composite.bands={list(settings.bands)}, but {len(lacking)} scenes lack some "
                f"(e.g. {sid} lacks {bands}). Choose bands every scene has."
            )
        not_spectral = [band for band in settings.bands if band in AUXILIARY_LAYERS]
        if not_spectral:
            raise ValueError(
                f"composite.bands lists {not_spectral}, which are not reflectance bands."
            )
        return settings.bands
    common = set.intersection(*(set(scene.spectral_bands) for scene in stack.scenes))
    if not common:
        raise ValueError("The scenes of the stack have no spectral band in common.")
    return tuple(band for band in LAYER_ORDER if band in common)


def output_grid(
    stack: Stack,
    settings: CompositeSettings,
    bands: tuple[str, ...],
    bbox: tuple[float, float, float, float] | None = None,
) -> Grid:
    """The grid to composite on (see :class:`CompositeSettings` for the defaults).

    Pixel edges are aligned with the reference scene's grid (the first scene in the output
    CRS), so scenes on that grid are read without resampling.
    """
    crs_counts = Counter(scene.grid.crs.to_wkt() for scene in stack.scenes)
    crs = (
        CRS.from_user_input(settings.crs)
        if settings.crs
        else CRS.from_wkt(crs_counts.most_common(1)[0][0])
    )
    same_crs = [scene for scene in stack.scenes if scene.grid.crs == crs]
    reference = same_crs[0] if same_crs else stack.scenes[0]
    resolution = settings.resolution or _native_resolution(reference, bands)
    if settings.bounds is not None:
        bounds = settings.bounds
    elif bbox is not None:
        bounds = _bbox_in(bbox, crs)
    else:
        bounds = _union([scene.grid.bounds_in(crs) for scene in stack.scenes])
        _warn_of_other_crs_margin(stack, crs, bounds)
    if reference.grid.crs == crs:
        origin_x, origin_y = reference.grid.transform.c, reference.grid.transform.f
    else:
        origin_x, origin_y = bounds[0], bounds[3]
    left = origin_x + math.floor(round((bounds[0] - origin_x) / resolution, 6)) * resolution
    top = origin_y - math.floor(round((origin_y - bounds[3]) / resolution, 6)) * resolution
    width = max(1, math.ceil(round((bounds[2] - left) / resolution, 6)))
    height = max(1, math.ceil(round((top - bounds[1]) / resolution, 6)))
    return Grid(crs, Affine(resolution, 0, left, 0, -resolution, top), height, width)


def _union(boxes: list[tuple[float, ...]]) -> tuple[float, float, float, float]:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _warn_of_other_crs_margin(stack: Stack, crs: CRS, bounds: tuple[float, ...]) -> None:
    """Warn when scenes in another CRS (another UTM zone) grow the grid past the scenes in its
    own: their reprojected footprints are tilted, so the growth is mostly a nodata margin."""
    others = [scene for scene in stack.scenes if scene.grid.crs != crs]
    own = [scene.grid.bounds_in(crs) for scene in stack.scenes if scene.grid.crs == crs]
    if not others or not own:
        return
    inner = _union(own)
    area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    grown = 1.0 - (inner[2] - inner[0]) * (inner[3] - inner[1]) / area
    if grown > 0.001:
        epsg = sorted({str(scene.grid.crs.to_epsg() or scene.grid.crs) for scene in others})
        log.warning(
            "%d scene(s) in another CRS (EPSG %s, e.g. %s) are reprojected to EPSG:%s and grow "
            "the output grid by %.1f %% of its area beyond the scenes in EPSG:%s, mostly a nodata "
            "margin. Set composite.bounds (or stack.bbox) to keep the grid to the area you want.",
            len(others), ", ".join(epsg), others[0].scene_id, crs.to_epsg(), 100 * grown,
            crs.to_epsg(),
        )  # fmt: skip


def _native_resolution(scene: StackScene, bands: tuple[str, ...]) -> float:
    """The finest native pixel size among ``bands`` of ``scene``."""
    with scene.open() as opened:
        return min(opened.layer_grid(band).resolution for band in bands)


def _bbox_in(bbox: tuple[float, float, float, float], crs: CRS) -> tuple[float, ...]:
    return tuple(transform_bounds(WGS84, crs, *bbox, densify_pts=21))


def grid_record(grid: Grid) -> dict[str, Any]:
    """JSON-ready grid."""
    epsg = grid.crs.to_epsg()
    return {
        "crs": f"EPSG:{epsg}" if epsg else grid.crs.to_wkt(),
        "transform": list(grid.transform)[:6],
        "height": grid.height,
        "width": grid.width,
        "resolution": grid.resolution,
        "bounds": list(grid.bounds),
    }
