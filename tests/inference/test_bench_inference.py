"""The benchmark's simulated tile is a readable scene with native 10/20/60 m bands."""

from __future__ import annotations

import numpy as np

from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.reader import open_scene


def test_simulated_tile_has_native_resolutions_clouds_and_a_swath_edge(tmp_path, load_experiment):
    bench = load_experiment("bench_inference")
    folder = bench.write_tile(tmp_path / "tile", size=216)
    with open_scene(folder) as scene:
        assert scene.bands == L1C_BANDS
        assert scene.grid().shape == (216, 216) and scene.grid().resolution == 10
        assert scene.layer_grid("B11").resolution == 20 and scene.layer_grid("B10").resolution == 60
        blue = scene.read_reflectance(["B02"])[0]
    assert np.isnan(blue[:, 0]).any() and not np.isnan(blue[:, -1]).any()  # swath edge on the left
    assert np.nanmax(blue) > 0.5 and np.nanmin(blue) < 0.1  # clouds and dark surfaces
    assert bench.write_tile(tmp_path / "tile", size=216) == folder  # reused, not rewritten
