"""Bad input to the composite gets a clear error or a counted skip, never a silent wrong result.

Covered elsewhere (not repeated here):
- an empty folder (``holds no scenes``) and every scene filtered out (``No scenes left ... from
  <source> ... filtered out {...}``): tests/composite/test_stack.py
  ``test_sources_and_settings_errors_are_explained`` and ``test_a_list_of_scenes_and_year_month_filters``;
- unreadable scenes at assembly: test_stack.py ``test_unreadable_scenes_are_skipped_...``;
- a scene unreadable while its mask is made: test_masking.py ``test_a_scene_unreadable_while_masking_is_skipped``;
- a corrupt (truncated) scene in the middle of the stack while compositing: test_driver.py
  ``test_a_scene_that_breaks_mid_run_is_dropped_and_the_run_restarts``.

Here: an empty STAC API search, scenes on two UTM zones (reprojected onto the output grid), and a
checkpoint trained on bands the scenes lack.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pystac_client
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from test_composite_cli import tiny_checkpoint

from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from composite.cluster import LocalExecutor
from composite.driver import CompositeSettings
from composite.masking import MaskSettings, prepare_masks
from composite.pipeline import composite_stack
from composite.stack import StackSettings, build_stack

SCL_CLEAR = 4
#: Reflectance of each scene in the two-zone stack (the last one is in the neighbouring zone).
ZONE_LEVELS = (0.10, 0.20, 0.30, 0.05)


def test_an_empty_stac_api_search_names_the_api_and_its_filters(monkeypatch):
    class EmptySearch:
        def items(self):
            return iter([])

    class EmptyClient:
        def search(self, **kwargs):
            return EmptySearch()

    monkeypatch.setattr(pystac_client.Client, "open", classmethod(lambda cls, url: EmptyClient()))
    settings = StackSettings(source="https://stac.example.com/v1", tile="31TDH", years=[2019])
    with pytest.raises(ValueError, match="found no items") as error:
        build_stack(settings, progress=False)
    message = str(error.value)
    assert "https://stac.example.com/v1" in message
    assert "MGRS-31TDH" in message and "2019-01-01/2019-12-31" in message


def neighbour_zone_grid(grid: Grid, pad_m: float = 200.0) -> Grid:
    """A 10 m grid in UTM 32N (EPSG:32632) covering ``grid`` (UTM 31N) with ``pad_m`` to spare."""
    left, bottom, right, top = transform_bounds(grid.crs, "EPSG:32632", *grid.bounds)
    left, top = np.floor(left - pad_m), np.ceil(top + pad_m)
    width = int(np.ceil((right + pad_m - left) / 10.0))
    height = int(np.ceil((top - bottom + pad_m) / 10.0))
    return Grid("EPSG:32632", Affine(10.0, 0, left, 0, -10.0, top), height, width)


def test_a_scene_in_the_neighbouring_utm_zone_is_reprojected_onto_the_output_grid(
    tmp_path, scene_writer, grid_of
):
    grid = grid_of(40, 40)
    other_zone = neighbour_zone_grid(grid)
    for t, level in enumerate(ZONE_LEVELS):
        scene_grid = other_zone if t == len(ZONE_LEVELS) - 1 else grid
        reflectance = np.full((4, *scene_grid.shape), level, dtype=np.float32)
        scl = np.full(scene_grid.shape, SCL_CLEAR, dtype=np.uint8)
        when = dt.datetime(2021, 6, 1 + 5 * t, 10, 30, tzinfo=dt.UTC)
        scene_writer(
            tmp_path / "scenes" / f"{when.date()}.tif", reflectance, scene_grid, when, scl=scl
        )
    stack = build_stack(StackSettings(source=str(tmp_path / "scenes")), progress=False)
    assert {scene.grid.crs.to_epsg() for scene in stack.scenes} == {32631, 32632}
    result = composite_stack(
        stack,
        MaskSettings(source="scl", cache_dir=str(tmp_path / "masks")),  # masks warp too
        CompositeSettings(window_size=16, crs="EPSG:32631", bounds=grid.bounds),
        out_dir=tmp_path / "out",
        work_dir=tmp_path / "work",
        executor=LocalExecutor(),
        progress=False,
    )
    assert result.grid == grid
    with rasterio.open(result.outputs.count) as dataset:
        count = dataset.read(1)
    with rasterio.open(result.outputs.composite) as dataset:
        composite = dataset.read()
    assert (count == len(ZONE_LEVELS)).all()  # the other zone's scene counts everywhere
    expected = np.percentile(ZONE_LEVELS, 25) * 10000  # 875 DN; 1500 without that scene
    np.testing.assert_allclose(composite, expected, atol=1)


def test_a_checkpoint_whose_bands_the_scenes_lack_is_refused_naming_both(tiny_stack, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "l1c.ckpt", L1C_BANDS)
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    settings = MaskSettings(
        source="model", checkpoint=str(checkpoint), cache_dir=str(tmp_path / "masks")
    )
    with pytest.raises(ValueError, match="scenes lack some") as error:
        prepare_masks(stack, settings, LocalExecutor(), progress=False)
    message = str(error.value)
    assert str(checkpoint) in message
    assert "10 of 10 scenes" in message
    # the scenes have B02 B03 B04 B08: the first lacking scene names the other nine L1C bands
    lacking = [band for band in L1C_BANDS if band not in ("B02", "B03", "B04", "B08")]
    assert f"lacks {lacking}" in message
    assert not (tmp_path / "masks").exists()  # refused before any mask is made
