"""OmniCloudMask plumbing with a tiny TorchScript model the test writes (no real weights here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudseg.detectors import omnicloudmask as ocm
from cloudseg.labels import CLEAR, THICK_CLOUD


class RedIsCloud(torch.nn.Module):
    """Logits: thick_cloud where the (normalised) red channel is above its mean, else clear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, :1]
        zero = torch.zeros_like(red)
        return torch.cat([-red, red, zero - 10, zero - 10], dim=1)


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "ocm_tiny.pt"
    torch.jit.save(torch.jit.script(RedIsCloud()), str(path))
    return path


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
def test_a_tiny_model_runs_through_omnicloudmask(tiny_model, shape):
    models = ocm.load_models(tiny_model)
    image = np.full((3, *shape), 0.1, dtype=np.float32)
    image[:, :, shape[1] // 2 :] = 0.6
    image[:, 0, 0] = np.nan
    classes = ocm.classify(image, models)
    assert classes.shape == shape
    assert classes[0, 0] == ocm.CLASS_NODATA
    assert (classes[1:, shape[1] // 2 + 2 :] == THICK_CLOUD).all()
    assert (classes[1:, : shape[1] // 2 - 2] == CLEAR).all()
