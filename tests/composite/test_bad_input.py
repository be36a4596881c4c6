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
import json

import numpy as np
import pystac_client
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from composite.cluster import LocalExecutor
from composite.driver import CompositeSettings
from composite.masking import MaskSettings, prepare_masks
from composite.output_grid import output_grid
from composite.pipeline import composite_stack
from composite.stack import StackSettings, build_stack
from helpers.composite import tiny_checkpoint

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


def test_a_scene_in_another_utm_zone_that_grows_the_grid_is_warned_of(
    tmp_path, scene_writer, grid_of, caplog
):
    """Issue 19.8: without bounds, the union with a reprojected other-zone scene adds a nodata
    margin; the run says so and names the key that crops it."""
    grid = grid_of(40, 40)
    for t, scene_grid in enumerate((grid, neighbour_zone_grid(grid, pad_m=100.0))):
        when = dt.datetime(2021, 6, 1 + 5 * t, 10, 30, tzinfo=dt.UTC)
        reflectance = np.full((4, *scene_grid.shape), 0.1, dtype=np.float32)
        scene_writer(tmp_path / "scenes" / f"{when.date()}.tif", reflectance, scene_grid, when)
    stack = build_stack(StackSettings(source=str(tmp_path / "scenes")), progress=False)
    bands = ("B02", "B03", "B04", "B08")
    output_grid(stack, CompositeSettings(crs="EPSG:32631"), bands)
    assert "1 scene(s) in another CRS (EPSG 32632, e.g. " in caplog.text
    assert "are reprojected to EPSG:32631 and grow the output grid by " in caplog.text
    assert "Set composite.bounds (or stack.bbox)" in caplog.text
    caplog.clear()
    output_grid(stack, CompositeSettings(crs="EPSG:32631", bounds=grid.bounds), bands)
    assert "another CRS" not in caplog.text


def test_a_missing_file_in_an_explicit_scene_list_is_warned_of(tiny_stack, caplog):
    """Issue 19.8: the run goes on (exit 0) without it, but says the listed file is missing."""
    missing = tiny_stack.folder / "2099-01-01.tif"
    listed = [str(tiny_stack.paths[0]), str(missing), str(tiny_stack.paths[1])]
    stack = build_stack(StackSettings(source=listed), progress=False)
    assert len(stack.scenes) == 2 and [s.source for s in stack.skipped] == [str(missing)]
    assert (
        f"stack.source lists {missing}, which does not exist: the composite goes on without it. "
        "Fix the path in stack.source if the scene belongs in the stack." in caplog.text
    )


def test_composite_inputs_and_outputs_are_checked_before_any_scene_is_read(
    tiny_stack, tmp_path, monkeypatch
):
    """Issue 19.4/19.7: each bad value is named with its key before the stack is assembled."""
    import composite.run
    from composite.run import run_composite, settings_from_config
    from helpers.composite import compose_composite

    monkeypatch.setattr(composite.run, "build_stack", None)  # nothing may be read first
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    base = [f"stack.source={tiny_stack.folder}", "masks.source=scl"]
    cases = {
        f"out_dir={a_file}": f"out_dir={a_file} is a file, not a folder. Pass a folder path",
        f"out_dir={a_file / 'out'}": f"lies inside the file {a_file}, not a folder",
        f"evaluation.reference={a_file}": (
            f"evaluation.reference={a_file} is not a readable raster ("
        ),
        f"evaluation.compare_with={a_file}": f"evaluation.compare_with={a_file} is not a readable",
        f"ckpt={tiny_stack.paths[0]}": (
            f"ckpt={tiny_stack.paths[0]} is not a readable PyTorch checkpoint: it looks like a "
            "TIFF raster"
        ),
    }
    for override, message in cases.items():
        extra = ["masks.source=model"] if override.startswith("ckpt=") else []
        with pytest.raises((ValueError, OSError)) as error:
            run_composite(compose_composite([*base, *extra, override], tmp_path))
        assert message in str(error.value), override
    with pytest.raises(ValueError) as error:
        settings_from_config(compose_composite([*base, "composite.bands=[B04,B99]"], tmp_path))
    assert str(error.value).startswith(
        "composite.bands=['B04', 'B99']: Unknown Sentinel-2 band 'B99'. Valid names: B01"
    )
    with pytest.raises(ValueError) as error:
        settings_from_config(compose_composite(["masks.source=none"], tmp_path))
    assert str(error.value).startswith("stack.source is required: pass stack.source=<a folder")


def test_a_stack_without_a_usable_pixel_ends_with_run_json_saying_so(
    tmp_path, scene_writer, grid_of
):
    """Issue 19.4: not "No pixels to summarise" after the rasters, but a finished run whose
    record says why there are no metrics."""
    from composite.run import run_composite
    from helpers.composite import compose_composite

    grid = grid_of(32, 32)
    when = dt.datetime(2021, 6, 1, 10, 30, tzinfo=dt.UTC)
    nodata = np.full((4, *grid.shape), np.nan, dtype=np.float32)
    scene_writer(tmp_path / "scenes" / "only.tif", nodata, grid, when, scl=np.zeros(grid.shape))
    overrides = [f"stack.source={tmp_path / 'scenes'}", "masks.source=scl", "progress=false"]
    result = run_composite(compose_composite(overrides, tmp_path))
    record = json.loads(result.outputs.run_json.read_text())
    assert record["pixels"]["no_valid"] == record["pixels"]["total"] == 32 * 32
    evidence = record["reports"]["evidence"]
    assert evidence["metrics"]["composite"] == {}
    assert evidence["not_computed"]["composite"] == {
        "all": "no usable pixel: no scene of the stack has data on the grid"
    }
