"""The segmenter's shapes, config round trip, freezing and layer ids (tiny ViT, CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from cloudseg.models import SegmenterConfig, build_segmenter
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS

FOUR_BANDS = ("B02", "B03", "B04", "B08")


@pytest.mark.parametrize(
    ("head", "detail_channels"), [("linear", 0), ("upernet", 0), ("upernet", 8)]
)
@pytest.mark.parametrize("bands", [L1C_BANDS, L2A_BANDS, FOUR_BANDS], ids=["L1C", "L2A", "4"])
def test_full_resolution_logits_for_bands_and_sizes(head, detail_channels, bands):
    model = build_segmenter(
        backbone="vit_tiny", bands=bands, num_classes=4, head=head, img_size=32,
        decoder_channels=32, detail_channels=detail_channels,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for height, width in [(32, 32), (48, 80)]:
            logits = model(torch.randn(2, len(bands), height, width))
            assert logits.shape == (2, 4, height, width)
            assert torch.isfinite(logits).all()


def test_gradients_reach_backbone_and_head():
    model = build_segmenter(
        backbone="vit_tiny", bands=FOUR_BANDS, head="upernet", img_size=32, decoder_channels=32,
        detail_channels=8,
    )  # fmt: skip
    model(torch.randn(2, 4, 32, 32)).square().mean().backward()
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.head.detail.layers[0][0].weight.grad.abs().sum() > 0
    assert model.head.classifier.weight.grad.abs().sum() > 0


def test_detail_branch_sees_single_pixels_the_patches_blur():
    """With the full-resolution branch, changing one pixel changes the logits most near that
    pixel; without it the change is spread over the pixel's 16x16 patch and beyond."""
    torch.manual_seed(0)

    def response(detail_channels: int) -> torch.Tensor:
        model = build_segmenter(
            backbone="vit_tiny", bands=FOUR_BANDS, head="upernet", img_size=32,
            decoder_channels=32, detail_channels=detail_channels,
        ).eval()  # fmt: skip
        image = torch.randn(1, 4, 32, 32)
        poked = image.clone()
        poked[0, :, 9, 5] += 3.0
        with torch.no_grad():
            return (model(poked) - model(image)).abs().sum(dim=1)[0]

    with_detail = response(8)
    row, col = divmod(int(with_detail.argmax()), 32)
    assert abs(row - 9) <= 3 and abs(col - 5) <= 3  # the branch's 7x7 receptive field
    assert with_detail[9, 5] > 5 * with_detail[9, 12]  # same patch, 7 px away
    without = response(0)
    assert without[9, 5] < 2 * without[9, 12]


def test_linear_head_takes_no_detail_branch():
    with pytest.raises(ValueError, match="detail_channels=0"):
        build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="linear", img_size=32,
                        detail_channels=8)  # fmt: skip


def test_config_is_json_and_rebuilds_the_same_architecture():
    model = build_segmenter(
        backbone="vit_tiny", bands="L2A", num_classes=3, head="upernet", img_size=48,
        decoder_channels=32, drop_path_rate=0.0, detail_channels=8,
    )  # fmt: skip
    config = json.loads(json.dumps(model.config))
    assert config["bands"] == list(L2A_BANDS)
    assert config["pretrained"] == "none" and config["weights_path"] is None
    rebuilt = build_segmenter(**config)
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    assert {name: tensor.shape for name, tensor in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config == model.config


def test_freeze_backbone_freezes_every_backbone_parameter_and_keeps_it_in_eval():
    model = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="linear", img_size=32,
                            freeze_backbone=True)  # fmt: skip
    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert not model.backbone.training and model.head.training


def test_frozen_blocks_freezes_embeddings_and_first_blocks_only():
    model = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="linear", img_size=32,
                            frozen_blocks=3)  # fmt: skip
    for name, parameter in model.named_parameters():
        frozen = name.startswith(
            ("backbone.patch_embed.", "backbone.cls_token", "backbone.pos_embed")
        ) or name.startswith(tuple(f"backbone.blocks.{i}." for i in range(3)))
        assert parameter.requires_grad is not frozen, name
    assert model.training and model.backbone.training


def test_layer_id_covers_every_parameter():
    model = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="upernet", img_size=32,
                            decoder_channels=32)  # fmt: skip
    depth = len(model.backbone.blocks)
    assert model.num_layers == depth + 2
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(model.num_layers))
    assert ids["backbone.patch_embed.proj.weight"] == 0
    assert ids["backbone.pos_embed"] == 0 and ids["backbone.cls_token"] == 0
    assert ids["backbone.blocks.0.attn.qkv.weight"] == 1
    assert ids[f"backbone.blocks.{depth - 1}.mlp.fc2.bias"] == depth
    assert ids["backbone.norm.weight"] == depth + 1
    assert ids["head.classifier.weight"] == depth + 1
    with pytest.raises(KeyError, match="named_parameters"):
        model.layer_id("model.backbone.blocks.0.attn.qkv.weight")


def test_upernet_reads_four_evenly_spaced_blocks():
    model = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="upernet", img_size=32,
                            decoder_channels=32)  # fmt: skip
    assert model.feature_indices == [2, 5, 8, 11]


def test_backbone_aliases_and_full_timm_names_build_the_same_model():
    by_alias = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="linear", img_size=32)
    by_name = build_segmenter(
        backbone="vit_tiny_patch16_224", bands=FOUR_BANDS, head="linear", img_size=32
    )
    assert by_alias.timm_name == by_name.timm_name == "vit_tiny_patch16_224"
    assert by_alias.state_dict().keys() == by_name.state_dict().keys()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"backbone": "vit_giant_typo"}, ValueError, "Unknown backbone"),
        ({"backbone": "resnet18"}, ValueError, "not a timm VisionTransformer"),
        ({"img_size": 40}, ValueError, "multiple of the patch size"),
        ({"head": "fcn"}, ValueError, "head='fcn'"),
        ({"pretrained": "imagenet21k"}, ValueError, "pretrained='imagenet21k'"),
        ({"frozen_blocks": 13}, ValueError, "exceeds the 12 blocks"),
        ({"bands": ("B02", "B99")}, ValueError, "Unknown Sentinel-2 band"),
    ],
)
def test_bad_options_fail_with_a_clear_message(kwargs, error, message):
    options = {"backbone": "vit_tiny", "bands": FOUR_BANDS, "img_size": 32, **kwargs}
    with pytest.raises(error, match=message):
        build_segmenter(**options)


def test_bad_inputs_fail_with_a_clear_message():
    model = build_segmenter(backbone="vit_tiny", bands=FOUR_BANDS, head="linear", img_size=32)
    with pytest.raises(ValueError, match=r"Expected input \(B, 4, H, W\)"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        model(torch.zeros(1, 4, 40, 32))


def test_config_dataclass_normalises_bands():
    config = SegmenterConfig(backbone="vit_tiny", bands=["b2", "B3", "b8a"])
    assert config.bands == ("B02", "B03", "B8A")
