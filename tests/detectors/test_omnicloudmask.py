"""OmniCloudMask plumbing with a tiny TorchScript model the test writes (no real weights here)."""

from __future__ import annotations

import numpy as np
import pytest

from cloudseg.detectors import omnicloudmask as ocm
from cloudseg.labels import CLEAR, THICK_CLOUD


def test_missing_weights_name_the_option(tmp_path):
    with pytest.raises(ocm.OCMWeightsError, match="masks.producer_options.ocm.weights"):
        ocm.load_models(None)
    with pytest.raises(ocm.OCMWeightsError, match="lacks .*PM_model_OCM"):
        ocm.load_models(tmp_path)
    with pytest.raises(ocm.OCMWeightsError, match="does not exist"):
        ocm.load_models(tmp_path / "nowhere")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ocm.OCMWeightsError, match="not a TorchScript"):
        ocm.load_models(bad)


@pytest.mark.parametrize("shape", [(64, 80), (20, 25)])  # the small one is padded to 32 px
def test_a_tiny_model_runs_through_omnicloudmask(ocm_tiny_weights, shape):
    models = ocm.load_models(ocm_tiny_weights)
    image = np.full((3, *shape), 0.1, dtype=np.float32)
    image[:, :, shape[1] // 2 :] = 0.6
    image[:, 0, 0] = np.nan
    classes = ocm.classify(image, models)
    assert classes.shape == shape
    assert classes[0, 0] == ocm.CLASS_NODATA
    assert (classes[1:, shape[1] // 2 + 2 :] == THICK_CLOUD).all()
    assert (classes[1:, : shape[1] // 2 - 2] == CLEAR).all()


@pytest.mark.slow
def test_a_folder_of_official_weight_files_loads_as_the_package_loads_them(tmp_path):
    """Random-init weights written under the official file names (the real ones cannot be
    downloaded here): the folder option finds both and builds the package's own models."""
    import segmentation_models_pytorch as smp
    from safetensors.torch import save_file

    for model_file in ocm.official_model_files():
        model = smp.Unet(
            encoder_name=model_file.timm_model_name, encoder_weights=None, in_channels=3, classes=4
        )
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        save_file(state, tmp_path / model_file.file_name)
    models = ocm.load_models(tmp_path)
    assert len(models) == len(ocm.official_model_files()) == 2
    classes = ocm.classify(np.random.default_rng(0).random((3, 64, 64), np.float32), models)
    assert classes.shape == (64, 64) and set(np.unique(classes)) <= {0, 1, 2, 3}
