"""The one COG writer (window by window, published together or not at all) and the one tiler."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.windows import Window

from cloudseg.sentinel2.cog import CogWriter, publish, write_cog
from cloudseg.sentinel2.errors import SCENE_READ_ERRORS, CloudfreeError, SceneError
from cloudseg.sentinel2.grid import Grid, bounds_intersect, tile_windows

GRID = Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 4800000), 70, 50)


def test_tile_windows_cover_the_raster_once_row_major():
    windows = tile_windows(70, 50, 32)
    assert windows[:3] == (Window(0, 0, 32, 32), Window(32, 0, 18, 32), Window(0, 32, 32, 32))
    assert windows[-1] == Window(32, 64, 18, 6)
    covered = np.zeros((70, 50), int)
    for window in windows:
        covered[window.toslices()] += 1
    assert (covered == 1).all()


def test_bounds_intersect_needs_a_shared_area():
    assert bounds_intersect((0, 0, 10, 10), (5, 5, 15, 15))
    assert not bounds_intersect((0, 0, 10, 10), (10, 0, 20, 10))  # touching edges only
    assert not bounds_intersect((0, 0, 10, 10), (0, 11, 10, 20))


def test_a_window_by_window_raster_equals_the_same_array_written_whole(tmp_path):
    data = np.arange(2 * 70 * 50, dtype=np.uint16).reshape(2, 70, 50)
    whole = write_cog(tmp_path / "whole.tif", data, GRID, nodata=0, band_names=["B02", "B03"])
    with CogWriter(
        tmp_path / "windows.tif", GRID, count=2, dtype="uint16", nodata=0,
        band_names=["B02", "B03"], workdir=tmp_path / "work",
    ) as writer:  # fmt: skip
        for window in tile_windows(70, 50, 16):
            writer.write(data[(slice(None), *window.toslices())], window=window)
        publish(writer)
    assert (tmp_path / "windows.tif").read_bytes() == whole.read_bytes()
    assert list((tmp_path / "work").iterdir()) == []  # the tiled file is gone


def test_writers_published_together_appear_together_or_not_at_all(tmp_path, monkeypatch):
    def writer(name):
        return CogWriter(tmp_path / name, GRID, count=1, dtype="uint8")

    first, second = writer("a.tif"), writer("b.tif")
    second.dataset.close()
    second.tiled.unlink()  # its copy will fail after the first one's
    with pytest.raises(Exception, match="No such file"), first, second:
        publish(first, second)
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_one_error_root_and_one_tuple_of_scene_read_errors():
    assert issubclass(SceneError, CloudfreeError) and issubclass(SceneError, ValueError)
    assert SceneError in SCENE_READ_ERRORS and OSError in SCENE_READ_ERRORS
    assert ValueError not in SCENE_READ_ERRORS  # a configuration error is not a bad scene
