"""WindowedPredictor: tiling with blending reproduces whole-image prediction; batching, flips,
nodata and the checkpoint's normalisation behave as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudseg.data.normalization import normalize
from cloudseg.inference.predictor import normalization_for

BANDS = ("B02", "B04", "B8A", "B11")


@pytest.fixture
def reflectance(smooth_reflectance):
    """96 x 80: multiples of 16, so the whole-image reference needs no padding."""
    return smooth_reflectance(len(BANDS), 96, 80, seed=1)


def test_pointwise_model_tiled_equals_whole(make_predictor, reflectance):
    """Without spatial context, blending normalised weights must give back the same numbers."""
    tiled = make_predictor(kernel_size=1, window_size=32, overlap=8).predict_array(reflectance)
    whole = make_predictor(kernel_size=1, window_size=96).predict_array(reflectance)
    assert make_predictor(window_size=32, overlap=8).plan(96, 80).num_strips > 3
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_contextual_model_tiled_matches_whole_within_blending_tolerance(
    make_predictor, reflectance
):
    """Window borders see zero padding, but the ramps weight those pixels almost to nothing."""
    tiled = make_predictor(window_size=32, overlap=16).predict_array(reflectance)
    whole = make_predictor(window_size=96).predict_array(reflectance)
    difference = np.abs(tiled - whole)
    assert difference.max() < 0.05
    assert difference.mean() < 2e-3
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.999
    # the seams are real without overlap: this model's window borders are far off
    no_overlap = make_predictor(window_size=32, overlap=0).predict_array(reflectance)
    assert np.abs(no_overlap - whole).max() > 0.5


def test_probabilities_sum_to_one_and_do_not_depend_on_batch_size(make_predictor, reflectance):
    one = make_predictor(window_size=32, overlap=8, batch_size=1).predict_array(reflectance)
    many = make_predictor(window_size=32, overlap=8, batch_size=7).predict_array(reflectance)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(one.sum(axis=0), 1.0, atol=1e-5)
    assert len(np.unique(one.argmax(axis=0))) > 1  # the stand-in model is not constant


def test_flips_average_the_predictions_of_flipped_images(make_predictor, reflectance):
    plain = make_predictor(window_size=96)
    flipped = make_predictor(window_size=96, flips=True).predict_array(reflectance)
    expected = (
        plain.predict_array(reflectance)
        + plain.predict_array(reflectance[:, :, ::-1].copy())[:, :, ::-1]
        + plain.predict_array(reflectance[:, ::-1].copy())[:, ::-1]
    ) / 3
    np.testing.assert_allclose(flipped, expected, atol=1e-5)
    assert np.abs(flipped - plain.predict_array(reflectance)).max() > 1e-3


def test_pixels_without_any_band_are_nan_and_partial_nodata_is_predicted(
    make_predictor, reflectance
):
    reflectance[:, :10, :] = np.nan  # no band at all
    reflectance[0, 50:60, :] = np.nan  # one band missing: still a prediction
    probabilities = make_predictor(window_size=32, overlap=8).predict_array(reflectance)
    assert np.isnan(probabilities[:, :10]).all()
    assert np.isfinite(probabilities[:, 10:]).all()


def test_normalisation_follows_the_model_band_order(make_predictor, checkpoint_meta, reflectance):
    meta = checkpoint_meta(BANDS)
    stored = meta["normalization"]
    shuffled = {key: list(reversed(values)) for key, values in stored.items()}
    assert normalization_for(shuffled, BANDS) == normalization_for(stored, BANDS)
    meta_shuffled = {**meta, "normalization": shuffled}
    a = make_predictor(window_size=96).predict_array(reflectance)
    b = make_predictor(window_size=96, meta=meta_shuffled).predict_array(reflectance)
    np.testing.assert_array_equal(a, b)


def test_model_sees_normalised_zero_padded_multiples_of_16(make_predictor, reflectance):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 4, *x.shape[-2:])

    predictor = make_predictor(model=Recorder(), window_size=112)
    image = reflectance[:, :90, :70]
    predictor.predict_array(image)
    (batch,) = seen
    assert tuple(batch.shape) == (1, 4, 96, 80)
    expected = normalize(image, predictor.normalization)
    np.testing.assert_allclose(batch[0, :, :90, :70].numpy(), expected, atol=1e-6)
    assert batch[0, :, 90:].abs().max() == 0 and batch[0, :, :, 70:].abs().max() == 0


def test_bad_configuration_and_input_are_clear_errors(make_predictor, checkpoint_meta):
    with pytest.raises(ValueError, match="multiple of 16"):
        make_predictor(window_size=100)
    with pytest.raises(ValueError, match="classes"):
        make_predictor(meta={**checkpoint_meta(BANDS), "classes": ["clear", "cloud"]})
    with pytest.raises(ValueError, match="normalisation has no statistics"):
        meta = checkpoint_meta(BANDS)
        meta["normalization"] = checkpoint_meta(BANDS[:2])["normalization"]
        make_predictor(meta=meta)
    with pytest.raises(ValueError, match="4 bands"):
        make_predictor().predict_windows(np.zeros((1, 3, 20, 20), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected \(4, 20, 20\)"):
        make_predictor().predict_array(np.zeros((3, 20, 20), dtype=np.float32))


def test_a_failing_read_surfaces_from_the_reading_thread(make_predictor):
    def broken_read(window):
        raise OSError(f"cannot read {window}")

    predictor = make_predictor(window_size=32, overlap=8)
    with pytest.raises(OSError, match="cannot read Window"):
        list(predictor.probability_strips(broken_read, 96, 80))


def test_each_batch_is_read_once_as_one_span(make_predictor, reflectance):
    requested = []

    def read(window):
        requested.append(window)
        return reflectance[(slice(None), *window.toslices())]

    predictor = make_predictor(window_size=32, overlap=8, batch_size=2)
    strips = list(predictor.probability_strips(read, 96, 80))
    plan = predictor.plan(96, 80)
    assert len(requested) == plan.num_strips * 2  # 3 windows per strip -> batches of 2 and 1
    assert requested[0].width == 32 + 24 and requested[1].width == 32
    assert sum(strip.rows for strip in strips) == 96


def test_default_batch_holds_a_fixed_number_of_pixels(make_predictor):
    assert make_predictor(window_size=256).batch_size == 8
    assert make_predictor(window_size=64).batch_size == 128
    assert make_predictor(window_size=64, batch_size=3).batch_size == 3
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        make_predictor(batch_size=0)
