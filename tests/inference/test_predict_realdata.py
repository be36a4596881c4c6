"""Predictions on the real Sentinel-2 samples come out on exactly the input's grid."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cloudseg.inference.predict import CLASS_NODATA, output_paths, predict_scene
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS
from cloudseg.sentinel2.reader import open_scene


def assert_on_grid_of(path, reference_path):
    with rasterio.open(path) as output, rasterio.open(reference_path) as reference:
        assert output.crs == reference.crs
        assert output.transform == reference.transform
        assert (output.height, output.width) == (reference.height, reference.width)
        return output.read()


@pytest.mark.parametrize("resolution", [None, 60])
def test_l1c_jp2_clip_keeps_its_10m_grid(realdata, make_predictor, tmp_path, resolution):
    folder = realdata / "l1c-T31TDH-20150726"
    predictor = make_predictor(bands=L1C_BANDS, window_size=128, overlap=32, resolution=resolution)
    with open_scene(folder) as scene:
        prediction = predict_scene(predictor, scene, *output_paths(tmp_path, "l1c"))
    reference = folder / "T31TDH_20150726T105026_B02.jp2"
    classes = assert_on_grid_of(prediction.classes, reference)[0]
    probabilities = assert_on_grid_of(prediction.probabilities, reference)
    assert classes.shape == (300, 300)
    assert (classes != CLASS_NODATA).all()  # the clip has data everywhere
    assert probabilities.shape == (4, 300, 300)
    expected_inference = 10 if resolution is None else 60
    assert prediction.inference_grid.resolution == expected_inference


def test_l2a_stac_item_keeps_its_grid_and_nodata(realdata, make_predictor, tmp_path):
    item = realdata / "l2a-29RKH-20200219" / "item.json"
    predictor = make_predictor(bands=L2A_BANDS, window_size=256, overlap=32, batch_size=16)
    with open_scene(item) as scene:
        prediction = predict_scene(predictor, scene, *output_paths(tmp_path, "l2a"))
        no_data = (scene.read(L2A_BANDS) == 0).all(axis=0)
    classes = assert_on_grid_of(prediction.classes, item.parent / "B02.tif")[0]
    assert classes.shape == (1098, 1098)
    np.testing.assert_array_equal(classes == CLASS_NODATA, no_data)
