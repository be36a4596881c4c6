"""`train.py experiment=vit_b16` as the seed's users run it, offline: without weights it stops
with the error naming the option and the file to fetch; with a local ViT-B/16 file it trains."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from hydra.errors import InstantiationException

from cloudseg.models import PretrainedWeightsUnavailableError, build_segmenter
from cloudseg.training import train
from helpers.training import TINY_SHRINK, compose_train

#: TINY_SHRINK without its `pretrained=none`: these tests are about the pretrained weights.
SHRINK_KEEPING_WEIGHTS = [o for o in TINY_SHRINK if not o.startswith("model.segmenter.pretrained")]
VIT_B16_TIMM_NAME = "vit_base_patch16_224"


def test_vit_b16_without_weights_stops_naming_the_option_and_the_file(
    offline,
    tiny_dataset,
):
    cfg = compose_train(
        ["experiment=vit_b16", "debug=fdr", f"data.root={tiny_dataset}", *SHRINK_KEEPING_WEIGHTS],
        offline / "run",
    )
    assert cfg.model.segmenter.pretrained == "imagenet"
    with pytest.raises(InstantiationException) as caught:  # Hydra wraps the task's error
        train(cfg)
    assert isinstance(caught.value.__cause__, PretrainedWeightsUnavailableError)
    message = str(caught.value)  # what `python train.py experiment=vit_b16` prints
    assert "pretrained='file' with weights_path=" in message
    assert "pretrained='none'" in message
    hub_id = timm.models.get_pretrained_cfg(VIT_B16_TIMM_NAME).hf_hub_id.partition("@")[0]
    assert f"https://huggingface.co/{hub_id}/resolve/" in message  # the file to download
    assert not (offline / "run" / "metrics.json").exists()


def test_vit_b16_trains_from_a_local_imagenet_style_file(
    offline,
    tiny_dataset,
    monkeypatch,
):
    torch.manual_seed(0)
    backbone = timm.create_model(VIT_B16_TIMM_NAME, pretrained=False, num_classes=0)
    weights_path = offline / "vit_b16_rgb.pth"
    torch.save(backbone.state_dict(), weights_path)  # 3 channels: read as ImageNet R, G, B
    block_weight = backbone.state_dict()["blocks.11.mlp.fc2.weight"]
    del backbone

    cfg = compose_train(
        [
            "experiment=vit_b16",
            "debug=fdr",
            f"data.root={tiny_dataset}",
            *SHRINK_KEEPING_WEIGHTS,
            "model.segmenter.pretrained=file",
            f"model.segmenter.weights_path={weights_path}",
        ],
        offline / "run",
    )
    built = {}

    def build_and_record(**kwargs):
        model = build_segmenter(**kwargs)
        built["report"] = model.load_report
        built["fc2"] = model.backbone.blocks[11].mlp.fc2.weight.detach().clone()
        return model

    monkeypatch.setattr("cloudseg.task.build_segmenter", build_and_record)
    score = train(cfg)
    assert built["report"].source == f"file: {weights_path}"
    assert torch.equal(built["fc2"], block_weight)
    report = json.loads((offline / "run" / "metrics.json").read_text())
    assert 0.0 <= score <= 1.0 and "test/miou" in report["test"]
