"""Fixtures for model tests: tiny timm ViT checkpoints written by the tests themselves."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import timm
import torch


def vit_state_dict(
    in_chans: int, model_name: str = "vit_tiny_patch16_224", seed: int = 0, **model_kwargs
) -> dict[str, torch.Tensor]:
    """A deterministic random timm ViT state dict at 224 px (14x14 grid), without classifier.

    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``embed_dim`` for another architecture).
    """
    torch.manual_seed(seed)
    model = timm.create_model(
        model_name, pretrained=False, in_chans=in_chans, num_classes=0, **model_kwargs
    )
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture
def make_vit_state_dict() -> Callable[..., dict[str, torch.Tensor]]:
    return vit_state_dict
