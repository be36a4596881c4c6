"""predict_scene: COGs on the scene's grid, nodata kept as nodata, tiling invisible, coarser
inference resolution upsampled correctly, atomic outputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch

from cloudseg.inference.predict import (
    PROBABILITY_NODATA,
    decode_probabilities,
    output_paths,
    predict_scene,
)
from cloudseg.inference.spec import CLASS_NODATA, MaskRule
from cloudseg.labels import CLASS_NAMES, CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.reader import open_scene

NODATA_ROWS = 7  # not a multiple of the coarse pixel, so nodata must be decided at 10 m


@pytest.fixture
def scene_path(write_scene, smooth_reflectance):
    reflectance = smooth_reflectance(5, 130, 110, seed=3)
    reflectance[:, :NODATA_ROWS] = np.nan
    reflectance[:, 60:70, 100:] = np.nan
    return write_scene("scene", reflectance)


def raster_info(path):
    """What the tests check of an output raster, read once (the dataset is closed after)."""
    with rasterio.open(path) as dataset:
        return SimpleNamespace(
            crs=dataset.crs,
            transform=dataset.transform,
            shape=dataset.shape,
            dtypes=dataset.dtypes,
            nodata=dataset.nodata,
            descriptions=dataset.descriptions,
            scales=dataset.scales,
            tags=dataset.tags(),
            tiled=dataset.profile.get("tiled", False),
            data=dataset.read(),
        )


def read_outputs(prediction):
    classes, probabilities = raster_info(prediction.classes), raster_info(prediction.probabilities)
    return classes, classes.data[0], probabilities, probabilities.data


def test_outputs_are_cogs_on_the_scene_grid_with_nodata_kept(make_predictor, scene_path, tmp_path):
    predictor = make_predictor(window_size=32, overlap=8)
    with open_scene(scene_path) as scene:
        prediction = predict_scene(predictor, scene, *output_paths(tmp_path / "out", "scene"))
    classes_ds, classes, probabilities_ds, encoded = read_outputs(prediction)
    with rasterio.open(scene_path) as source:
        for output in (classes_ds, probabilities_ds):
            assert output.crs == source.crs
            assert output.transform == source.transform
            assert output.shape == source.shape
        no_data = (source.read() == 0).all(axis=0)
    assert classes_ds.dtypes == ("uint8",) and classes_ds.nodata == CLASS_NODATA
    assert probabilities_ds.descriptions == CLASS_NAMES
    assert probabilities_ds.nodata == PROBABILITY_NODATA
    assert probabilities_ds.scales == (1 / 254,) * 4
    assert probabilities_ds.tiled
    assert probabilities_ds.tags["INFERENCE_RESOLUTION"] == "10"
    np.testing.assert_array_equal(classes == CLASS_NODATA, no_data)
    assert (encoded[:, no_data] == PROBABILITY_NODATA).all()
    assert set(np.unique(classes[~no_data])) <= {0, 1, 2, 3}
    decoded = decode_probabilities(encoded)[:, ~no_data]
    np.testing.assert_allclose(decoded.sum(axis=0), 1.0, atol=2.5 / 254)
    agrees = classes[~no_data] == decoded.argmax(axis=0)
    assert agrees.mean() > 0.99  # ties after rounding to 1/254 may differ
    leftovers = {p.name for p in (tmp_path / "out").iterdir()}
    assert leftovers == {"scene_classes.tif", "scene_probabilities.tif"}


def test_scene_larger_than_a_window_matches_one_window(make_predictor, scene_path, tmp_path):
    with open_scene(scene_path) as scene:
        tiled = predict_scene(
            make_predictor(window_size=32, overlap=16), scene, *output_paths(tmp_path, "tiled")
        )
        whole = predict_scene(
            make_predictor(window_size=144), scene, *output_paths(tmp_path, "whole")
        )
    _, tiled_classes, _, tiled_probabilities = read_outputs(tiled)
    _, whole_classes, _, whole_probabilities = read_outputs(whole)
    difference = np.abs(tiled_probabilities.astype(int) - whole_probabilities.astype(int))
    # blending tolerance: window borders (and the padded whole-scene edges) differ slightly
    assert np.mean(difference) < 1.0  # in 1/254 steps
    assert (tiled_classes == whole_classes).mean() > 0.99


def test_coarser_inference_is_upsampled_onto_the_output_grid(make_predictor, scene_path, tmp_path):
    predictor = make_predictor(window_size=32, overlap=8, resolution=30)
    with open_scene(scene_path) as scene:
        prediction = predict_scene(predictor, scene, *output_paths(tmp_path, "coarse"))
        coarse_grid = scene.grid(30)
        coarse = predictor.predict_array(scene.read_reflectance(predictor.bands, grid=coarse_grid))
        no_data = (scene.read(predictor.bands) == 0).all(axis=0)
    classes_ds, classes, probabilities_ds, encoded = read_outputs(prediction)
    assert prediction.grid.resolution == 10 and prediction.inference_grid == coarse_grid
    assert classes_ds.shape == (130, 110) and classes_ds.transform.a == 10
    assert probabilities_ds.tags["INFERENCE_RESOLUTION"] == "30"
    np.testing.assert_array_equal(classes == CLASS_NODATA, no_data)  # 7 rows, not 6 or 9
    # every third 10 m pixel centre is a 30 m pixel centre: bilinear returns the coarse value
    decoded = decode_probabilities(encoded)
    centres = decoded[:, 1::3, 1::3]
    expected = coarse[:, : centres.shape[1], : centres.shape[2]]
    both = np.isfinite(centres).all(axis=0) & np.isfinite(expected).all(axis=0)
    assert both.mean() > 0.8
    np.testing.assert_allclose(centres[:, both], expected[:, both], atol=0.6 / 254 + 1e-4)


def test_cloud_threshold_decides_cloud_then_the_likelier_cloud_class():
    probabilities = np.array(
        [  # clear, thick, thin, shadow for five pixels
            [0.40, 0.05, 0.50, 0.10, 0.30],
            [0.30, 0.30, 0.10, 0.05, 0.10],
            [0.05, 0.20, 0.10, 0.05, 0.25],
            [0.25, 0.45, 0.30, 0.80, 0.35],
        ],
        dtype=np.float32,
    )
    argmax = MaskRule().classes(probabilities)
    assert argmax.tolist() == [CLEAR, CLOUD_SHADOW, CLEAR, CLOUD_SHADOW, CLOUD_SHADOW]
    thresholded = MaskRule(cloud_threshold=0.3).classes(probabilities)
    assert thresholded.tolist() == [THICK_CLOUD, THICK_CLOUD, CLEAR, CLOUD_SHADOW, THIN_CLOUD]
    with pytest.raises(ValueError, match="cloud_threshold"):
        MaskRule(cloud_threshold=1.5)


def test_clear_threshold_keeps_clear_only_where_p_clear_reaches_it():
    probabilities = np.array(
        [  # clear, thick, thin, shadow for seven pixels
            [0.90, 0.80, 0.79, 0.70, 0.70, 0.70, 0.35],
            [0.05, 0.10, 0.11, 0.20, 0.05, 0.10, 0.40],
            [0.02, 0.05, 0.05, 0.06, 0.20, 0.05, 0.05],
            [0.03, 0.05, 0.05, 0.04, 0.05, 0.15, 0.20],
        ],
        dtype=np.float32,
    )
    assert (MaskRule().classes(probabilities)[:6] == CLEAR).all()
    classes = MaskRule(clear_threshold=0.8).classes(probabilities)
    # above, exactly at, then below the threshold (the likeliest other class wins); a pixel
    # whose argmax is not clear keeps it
    expected = [CLEAR, CLEAR, THICK_CLOUD, THICK_CLOUD, THIN_CLOUD, CLOUD_SHADOW, THICK_CLOUD]
    assert classes.tolist() == expected
    low = MaskRule(clear_threshold=0.3).classes(probabilities)
    assert low.tolist()[6] == THICK_CLOUD  # p(clear) >= 0.3 does not make it clear: argmax does
    only_certain = MaskRule(clear_threshold=1.0).classes(probabilities)
    assert CLEAR not in only_certain.tolist()


def test_clear_threshold_applies_after_cloud_threshold():
    probabilities = np.array(
        [  # clear, thick, thin, shadow for four pixels
            [0.70, 0.85, 0.60, 0.50],
            [0.10, 0.10, 0.05, 0.12],
            [0.15, 0.03, 0.05, 0.14],
            [0.05, 0.02, 0.30, 0.24],
        ],
        dtype=np.float32,
    )
    cloud_only = MaskRule(cloud_threshold=0.25).classes(probabilities)
    assert cloud_only.tolist() == [THIN_CLOUD, CLEAR, CLEAR, THIN_CLOUD]
    both = MaskRule(cloud_threshold=0.25, clear_threshold=0.8).classes(probabilities)
    # cloud stays cloud (the last one too, though shadow is its likeliest non-clear class),
    # clear at 0.85 stays clear, clear at 0.60 goes to its likeliest other class
    assert both.tolist() == [THIN_CLOUD, CLEAR, CLOUD_SHADOW, THIN_CLOUD]


def test_nodata_probabilities_stay_nodata_classes():
    encoded = np.array([[[254, 0, 255]], [[0, 254, 255]], [[0, 0, 255]], [[0, 0, 255]]], np.uint8)
    probabilities = decode_probabilities(encoded)  # the third pixel is nodata: NaN
    for rule in ({}, {"clear_threshold": 0.8}, {"cloud_threshold": 0.5, "clear_threshold": 0.8}):
        classes = MaskRule(**rule).classes(probabilities)
        assert classes[0].tolist() == [CLEAR, THICK_CLOUD, CLASS_NODATA], rule


@pytest.mark.parametrize("value", [0, 0.0, -0.2, 1.5, float("nan"), True, "0.8"])
def test_invalid_clear_thresholds_are_rejected_with_the_range(value):
    with pytest.raises(ValueError, match=r"clear_threshold must be a probability in \(0, 1\]"):
        MaskRule(clear_threshold=value)
    with pytest.raises(ValueError, match=r"cloud_threshold must be a probability in \(0, 1\)"):
        MaskRule(cloud_threshold=1.0)


def test_predict_scene_with_a_clear_threshold(make_predictor, scene_path, tmp_path):
    predictor = make_predictor(window_size=32, overlap=8)
    strict_predictor = make_predictor(window_size=32, overlap=8, rule=MaskRule(clear_threshold=0.8))
    with open_scene(scene_path) as scene:
        plain = predict_scene(predictor, scene, *output_paths(tmp_path, "plain"))
        strict = predict_scene(strict_predictor, scene, *output_paths(tmp_path, "strict"))
    plain_info, plain_classes, _, encoded = read_outputs(plain)
    strict_info, strict_classes, strict_probabilities, _ = read_outputs(strict)
    assert strict_info.tags["CLEAR_THRESHOLD"] == "0.8"
    assert plain_info.tags["CLEAR_THRESHOLD"] == "none"
    np.testing.assert_array_equal(strict_probabilities.data, encoded)  # same model output
    np.testing.assert_array_equal(strict_classes == CLASS_NODATA, plain_classes == CLASS_NODATA)
    p_clear = decode_probabilities(encoded)[CLEAR]
    clear = strict_classes == CLEAR
    assert clear.any() and (p_clear[clear] >= 0.8 - 0.5 / 254).all()  # up to rounding
    assert (plain_classes[clear] == CLEAR).all()  # it only removes pixels from clear
    demoted = (plain_classes == CLEAR) & ~clear
    assert demoted.any() and (p_clear[demoted] < 0.8 + 0.5 / 254).all()
    kept = plain_classes != CLEAR
    np.testing.assert_array_equal(strict_classes[kept], plain_classes[kept])


def test_missing_model_band_is_a_clear_error(make_predictor, scene_path, tmp_path):
    predictor = make_predictor(bands=("B02", "B10"))
    with open_scene(scene_path) as scene, pytest.raises(ValueError, match=r"lacks bands \['B10'\]"):
        predict_scene(predictor, scene, *output_paths(tmp_path, "x"))


def test_a_failed_prediction_leaves_nothing_behind(make_predictor, scene_path, tmp_path):
    calls = []

    class FailsOnSecondBatch(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("out of memory (simulated)")
            return torch.zeros(x.shape[0], 4, *x.shape[-2:])

    predictor = make_predictor(model=FailsOnSecondBatch(), window_size=32, overlap=8)
    out = tmp_path / "out"
    with open_scene(scene_path) as scene, pytest.raises(RuntimeError, match="simulated"):
        predict_scene(predictor, scene, *output_paths(out, "scene"))
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("resolution", [None, 20])
def test_nodata_follows_the_bands_stored_at_the_output_resolution(
    make_predictor, smooth_reflectance, utm_grid, tmp_path, resolution
):
    """A folder with B02 at 10 m (no data in its first 5 rows) and B11 at 20 m (data
    everywhere): the output is 10 m and has no data where B02 has none."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    blue = smooth_reflectance(1, 60, 40, seed=5)
    blue[:, :5] = np.nan
    swir = smooth_reflectance(1, 30, 20, seed=6)
    for name, reflectance, grid in (
        ("B02", blue, utm_grid(60, 40)),
        ("B11", swir, utm_grid(30, 20, resolution=20)),
    ):
        dn = np.where(np.isnan(reflectance), 0, np.rint(reflectance * 10000)).astype(np.uint16)
        write_cog(folder / f"{name}.tif", dn, grid, nodata=0)
    predictor = make_predictor(
        bands=("B02", "B11"), window_size=32, overlap=8, resolution=resolution
    )
    with open_scene(folder) as scene:
        prediction = predict_scene(predictor, scene, *output_paths(tmp_path, "mixed"))
    classes = raster_info(prediction.classes).data[0]
    assert classes.shape == (60, 40)
    assert (classes[:5] == CLASS_NODATA).all()
    assert (classes[5:] != CLASS_NODATA).all()
