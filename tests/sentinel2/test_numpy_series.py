"""eo-learn numpy series as scenes, and the processing level of a scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloudseg.sentinel2 import open_scene
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import pixel_size_m, processing_grid
from cloudseg.sentinel2.numpy_series import describe_series, write_series_scenes
from cloudseg.sentinel2.product import level_from_text, product_level
from cloudseg.sentinel2.sources import SceneError


def write_series(folder, array, crs="urn:ogc:def:crs:EPSG::32633"):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "REFERENCE_SCENES.npy", array)
    ring = [[500000, 4000000], [500000, 4000040], [500030, 4000040], [500030, 4000000]]
    geometry = {"crs": {"properties": {"name": crs}}, "type": "Polygon", "coordinates": [ring]}
    (folder / "bbox.geojson").write_text(json.dumps(geometry))


def test_a_series_becomes_one_georeferenced_scene_per_date(tmp_path):
    array = np.random.default_rng(0).uniform(0.01, 0.5, (2, 4, 3, 13)).astype(np.float32)
    write_series(tmp_path / "series", array)
    series = describe_series(tmp_path / "series")
    assert series.dates == 2 and series.grid.shape == (4, 3) and series.grid.resolution == 10
    paths = write_series_scenes(series, tmp_path / "out")
    with open_scene(paths[1]) as scene:
        assert scene.bands == L1C_BANDS
        assert scene.grid().crs.to_epsg() == 32633
        assert scene.grid().bounds == pytest.approx((500000, 4000000, 500030, 4000040))
        back = scene.read_reflectance(["B02", "B8A"])
    expected = np.moveaxis(array[1][..., [1, 8]], -1, 0)
    assert np.allclose(back, expected, atol=1e-4)


def test_a_series_whose_bands_do_not_fit_is_refused(tmp_path):
    write_series(tmp_path / "series", np.zeros((1, 4, 3, 4), dtype=np.float32))
    with pytest.raises(SceneError, match=r"shape \(1, 4, 3, 4\); expected \(dates, y, x, 13\)"):
        describe_series(tmp_path / "series")


def test_the_real_eolearn_series(realdata, tmp_path):
    series = describe_series(realdata / "eolearn-5dates")
    assert series.dates == 5 and series.grid.shape == (101, 100)
    path = write_series_scenes(series, tmp_path)[0]
    with open_scene(path) as scene:
        assert product_level(scene) == "l1c"  # B10 present
        assert pixel_size_m(scene.grid()) == pytest.approx(10, abs=0.01)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("S2B_MSIL2A_20200219T112229_N0214", "l2a"),
        ("S2MSI1C", "l1c"),
        ("../shared/realdata/l2a-cloudcover-chips/adwp", "l2a"),
        ("/data/l1c-T31TDH-20150726", "l1c"),
        ("eolearn-5dates/0.tif", None),
    ],
)
def test_level_from_names(text, level):
    assert level_from_text(text) == level


def test_processing_grid_in_metres_also_for_degrees(realdata):
    with open_scene(realdata / "l1c-betsiboka-s2cloudless" / "image.tif") as scene:
        grid = scene.grid()  # EPSG:4326, about 76 m pixels
    assert pixel_size_m(grid) == pytest.approx(76, abs=1)
    assert processing_grid(grid, 30) == grid
    assert processing_grid(grid, 160).shape == (397, 244)
