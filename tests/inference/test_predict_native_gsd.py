"""A scene is predicted at its own ground sampling distance, whichever of 10/20/30/60 m it is:
the outputs lie on the scene's grid, every valid pixel gets a class, and the model sees the scene
unresampled (the same probabilities as the array run directly)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cloudseg.data.simulate.scale import SUPPORTED_GSD_M
from cloudseg.inference.predict import output_paths, predict_scene
from cloudseg.inference.spec import CLASS_NODATA, MaskRule
from cloudseg.sentinel2.reader import open_scene


@pytest.mark.parametrize("gsd", SUPPORTED_GSD_M)
def test_scene_is_predicted_at_its_native_gsd(
    gsd, make_predictor, write_scene, smooth_reflectance, utm_grid, tmp_path
):
    reflectance = smooth_reflectance(5, 45, 70, seed=gsd)
    path = write_scene(f"scene_{gsd}m", reflectance, grid=utm_grid(45, 70, float(gsd)))
    predictor = make_predictor()
    classes_path, probabilities_path = output_paths(tmp_path / "out", f"scene_{gsd}m")
    with open_scene(path) as scene:
        predict_scene(predictor, scene, classes_path, probabilities_path)
        direct = MaskRule().classes(
            predictor.predict_array(scene.read_reflectance(predictor.bands))
        )
    with rasterio.open(classes_path) as dataset:
        assert dataset.res == (gsd, gsd) and dataset.shape == (45, 70)
        classes = dataset.read(1)
        assert dataset.tags()["INFERENCE_RESOLUTION"] == f"{gsd}"
    assert (classes != CLASS_NODATA).all()
    assert np.array_equal(classes, direct)
