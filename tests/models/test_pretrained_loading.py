"""Pretrained loading: local files, prefixes, band subsets, failures, and the offline errors.

Every checkpoint is written by the test; no test touches the network (``offline`` empties the
weight caches and sets ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cloudseg.models import (
    SSL4EO_WEIGHTS,
    LoadReport,
    PretrainedLoadError,
    PretrainedWeightsUnavailableError,
    build_segmenter,
)
from cloudseg.models.loading import load_backbone_state
from cloudseg.models.pretrained import _declared_bands, _torch_hub_cache_path
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS

L2A_FROM_L1C = [L1C_BANDS.index(band) for band in L2A_BANDS]


def _build_from_file(path: Path, bands=L2A_BANDS, **kwargs):
    options = {"backbone": "vit_tiny", "bands": bands, "head": "linear", "img_size": 64}
    return build_segmenter(**options, pretrained="file", weights_path=path, **kwargs)


def test_ssl4eo_style_13_band_file_subsets_to_l2a_exactly(tmp_path, make_vit_state_dict):
    checkpoint = make_vit_state_dict(in_chans=13)
    path = tmp_path / "ssl4eo_vit_tiny.pth"
    torch.save(checkpoint, path)
    model = _build_from_file(path)

    patch = model.backbone.patch_embed.proj.weight.detach()
    assert torch.equal(patch, checkpoint["patch_embed.proj.weight"][:, L2A_FROM_L1C])
    assert torch.equal(
        model.backbone.blocks[3].attn.qkv.weight, checkpoint["blocks.3.attn.qkv.weight"]
    )
    report = model.load_report
    assert set(report.adapted) == {"patch_embed.proj.weight", "pos_embed"}
    assert "resampled position grid 14x14 -> 4x4" in report.notes["pos_embed"]
    assert "blocks.11.mlp.fc2.weight" in report.loaded
    assert report.missing == [] and report.skipped == []
    assert model.backbone.pos_embed.shape == (1, 17, 192)
    assert model(torch.randn(1, 12, 64, 64)).shape == (1, 4, 64, 64)


def test_lightning_checkpoint_with_model_prefix_loads_and_head_is_skipped(
    tmp_path, make_vit_state_dict
):
    backbone_state = make_vit_state_dict(in_chans=4)
    state_dict = {f"model.backbone.{key}": value for key, value in backbone_state.items()}
    state_dict["model.head.classifier.weight"] = torch.zeros(4, 192, 1, 1)
    path = tmp_path / "epoch=3.ckpt"
    declared = ["B08", "B04", "B03", "B02"]
    torch.save(
        {"state_dict": state_dict, "hyper_parameters": {"segmenter": {"bands": declared}}}, path
    )

    model = _build_from_file(path, bands=("B02", "B03", "B04", "B08"))
    report = model.load_report
    assert torch.equal(
        model.backbone.patch_embed.proj.weight.detach(),
        backbone_state["patch_embed.proj.weight"][:, [3, 2, 1, 0]],  # declared order reversed
    )
    assert report.skipped == ["model.head.classifier.weight"]
    assert "from model.backbone.blocks.0.norm1.weight" in report.notes["blocks.0.norm1.weight"]
    assert report.missing == []


def test_torchgeo_style_model_prefix_loads(tmp_path, make_vit_state_dict):
    """torchgeo's DPT+ViT weights broke on a bare ``model.`` prefix: it must load here."""
    backbone_state = make_vit_state_dict(in_chans=12)
    path = tmp_path / "dpt_encoder.pth"
    torch.save({f"model.{key}": value for key, value in backbone_state.items()}, path)
    model = _build_from_file(path)
    assert torch.equal(model.backbone.norm.weight, backbone_state["norm.weight"])
    assert len(model.load_report.loaded) + len(model.load_report.adapted) == len(backbone_state)


def test_checkpoint_with_no_matching_keys_raises_instead_of_loading_nothing(make_vit_state_dict):
    """The torchgeo #4036 pitfall: strict=False once dropped every tensor without a word."""
    model = build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, head="linear", img_size=64)
    renamed = {f"encoder_q.{key}": value for key, value in make_vit_state_dict(12).items()}
    before = model.backbone.blocks[0].attn.qkv.weight.detach().clone()
    with pytest.raises(PretrainedLoadError, match="No tensor .* matched the backbone"):
        load_backbone_state(model.backbone, renamed, L2A_BANDS, L2A_BANDS, "renamed.pth")
    assert torch.equal(model.backbone.blocks[0].attn.qkv.weight, before)


def test_file_without_a_patch_embedding_raises(tmp_path, make_vit_state_dict):
    renamed = {f"encoder_q.{key}": value for key, value in make_vit_state_dict(12).items()}
    path = tmp_path / "moco_raw.pth"
    torch.save(renamed, path)
    with pytest.raises(PretrainedLoadError, match="has no patch embedding"):
        _build_from_file(path)


def test_missing_blocks_raise(tmp_path, make_vit_state_dict):
    truncated = {
        key: value
        for key, value in make_vit_state_dict(12).items()
        if not key.startswith("blocks.11.")
    }
    path = tmp_path / "eleven_blocks.pth"
    torch.save(truncated, path)
    with pytest.raises(PretrainedLoadError, match="lacks essential backbone tensors blocks.11"):
        _build_from_file(path)


def test_checkpoint_of_another_architecture_raises(tmp_path, make_vit_state_dict):
    path = tmp_path / "vit_narrow.pth"
    torch.save(make_vit_state_dict(12, embed_dim=96, num_heads=3), path)
    with pytest.raises(
        PretrainedLoadError, match=r"shape mismatches: cls_token: shape \(1, 1, 96\)"
    ):
        _build_from_file(path)


def test_undeclared_channel_count_raises_asking_for_bands(tmp_path, make_vit_state_dict):
    path = tmp_path / "five_bands.pth"
    torch.save(make_vit_state_dict(5), path)
    with pytest.raises(PretrainedLoadError, match="5 input channels and does not say which bands"):
        _build_from_file(path, bands=("B02", "B03", "B04", "B08"))


def test_file_option_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        _build_from_file(tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="needs weights_path"):
        build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, img_size=32, pretrained="file")
    with pytest.raises(ValueError, match="only used with pretrained='file'"):
        build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, img_size=32, weights_path="x.pth")


def test_report_summary_and_dict(tmp_path, make_vit_state_dict):
    path = tmp_path / "l1c.pth"
    torch.save(make_vit_state_dict(13), path)
    report = _build_from_file(path).load_report
    assert isinstance(report, LoadReport)
    assert report.summary.startswith(
        f"Pretrained weights from file: {path}: 148 tensors loaded, 2 adapted"
    )
    assert "adapted patch_embed.proj.weight: selected bands" in str(report)
    assert json.loads(json.dumps(report.to_dict()))["source"] == f"file: {path}"


def test_random_init_has_no_report():
    model = build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, img_size=32, pretrained="none")
    assert model.load_report is None


def _write_hf_cache(cache: Path, repo_id: str, filename: str, state_dict) -> None:
    """Lay out a Hugging Face cache entry the way ``hf_hub_download`` leaves it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file(state_dict, str(repo / "snapshots" / revision / filename))


def test_imagenet_weights_from_the_hf_cache_are_mapped_by_wavelength(offline, make_vit_state_dict):
    rgb_state = make_vit_state_dict(in_chans=3)
    hf_cache = offline / "hf_cache"
    _write_hf_cache(
        hf_cache, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k", "model.safetensors", rgb_state
    )
    bands = ("B02", "B03", "B04", "B08")
    model = build_segmenter(
        backbone="vit_tiny", bands=bands, head="linear", img_size=64, pretrained="imagenet"
    )
    rgb = rgb_state["patch_embed.proj.weight"]  # channels R, G, B
    patch = model.backbone.patch_embed.proj.weight.detach()
    torch.testing.assert_close(patch[:, bands.index("B04")], rgb[:, 0] * 3 / 4)
    torch.testing.assert_close(patch[:, bands.index("B03")], rgb[:, 1] * 3 / 4)
    torch.testing.assert_close(patch[:, bands.index("B02")], rgb[:, 2] * 3 / 4)
    torch.testing.assert_close(patch[:, bands.index("B08")], rgb[:, 0] * 3 / 4)
    assert torch.equal(
        model.backbone.blocks[5].mlp.fc1.weight, rgb_state["blocks.5.mlp.fc1.weight"]
    )
    assert model.load_report.source.startswith("imagenet: timm vit_tiny_patch16_224")
    assert "B08<-B04" in model.load_report.notes["patch_embed.proj.weight"]


@pytest.mark.parametrize(("backbone", "source"), [("vit_tiny", "imagenet"), ("vit_s16", "ssl4eo")])
def test_offline_without_cached_weights_fails_fast_naming_the_fix(offline, backbone, source):
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailableError) as caught:
        build_segmenter(backbone=backbone, bands=L2A_BANDS, img_size=32, pretrained=source)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert "pretrained='file' with weights_path=" in message
    assert "pretrained='none'" in message
    assert "https://" in message
    if source == "ssl4eo":
        url = SSL4EO_WEIGHTS["vit_small_patch16_224"].url
        assert url in message and str(_torch_hub_cache_path(url)) in message


def test_unreachable_host_fails_fast_without_offline_flag(offline, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    for proxy in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr("cloudseg.models.pretrained.socket.create_connection", refuse)
    with pytest.raises(PretrainedWeightsUnavailableError, match="huggingface.co cannot be reached"):
        build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, img_size=32, pretrained="imagenet")


def test_ssl4eo_needs_a_backbone_it_exists_for(offline):
    with pytest.raises(PretrainedWeightsUnavailableError, match="vit_s16"):
        build_segmenter(backbone="vit_tiny", bands=L2A_BANDS, img_size=32, pretrained="ssl4eo")


def test_ssl4eo_weights_from_the_torch_hub_cache_subset_to_l2a(offline, make_vit_state_dict):
    """The real torchgeo path (WeightsEnum.get_state_dict) reading a cached 13-band ViT-S/16."""
    checkpoint = make_vit_state_dict(in_chans=13, model_name="vit_small_patch16_224")
    cache_file = _torch_hub_cache_path(SSL4EO_WEIGHTS["vit_small_patch16_224"].url)
    assert str(cache_file).startswith(os.environ["TORCH_HOME"])
    cache_file.parent.mkdir(parents=True)
    torch.save(checkpoint, cache_file)

    model = build_segmenter(
        backbone="vit_s16", bands=L2A_BANDS, head="linear", img_size=32, pretrained="ssl4eo"
    )
    patch = model.backbone.patch_embed.proj.weight.detach()
    assert torch.equal(patch, checkpoint["patch_embed.proj.weight"][:, L2A_FROM_L1C])
    assert model.load_report.source.startswith(
        "ssl4eo: torchgeo ViTSmall16_Weights.SENTINEL2_ALL_MOCO"
    )
    assert model.load_report.missing == []


@pytest.mark.parametrize(
    "layout",
    [
        {"bands": ["B8A", "B11"]},
        {"cloudfree": {"bands": ["B8A", "B11"]}},
        {"hyper_parameters": {"segmenter": {"bands": ["B8A", "B11"]}}},
    ],
    ids=["top-level", "cloudfree-metadata", "hyper-parameters"],
)
def test_declared_bands_are_found_where_checkpoints_keep_them(layout):
    assert _declared_bands({"state_dict": {}, **layout}) == ("B8A", "B11")
