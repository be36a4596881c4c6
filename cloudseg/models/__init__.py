"""Segmentation models: timm ViT backbones for any Sentinel-2 bands, heads, pretrained loading.

>>> import torch
>>> model = build_segmenter(backbone="vit_tiny", bands="L2A", head="linear", img_size=64)
>>> model(torch.zeros(1, 12, 64, 64)).shape
torch.Size([1, 4, 64, 64])
"""

from cloudseg.models.backbones import BACKBONE_ALIASES, create_vit_backbone, resolve_backbone_name
from cloudseg.models.heads import HEADS, LinearHead, UPerNetHead, ViTFeaturePyramid
from cloudseg.models.loading import LoadReport, PretrainedLoadError, map_bands_by_wavelength
from cloudseg.models.pretrained import (
    IMAGENET_BANDS,
    PRETRAINED_SOURCES,
    SSL4EO_WEIGHTS,
    PretrainedWeightsUnavailableError,
    load_pretrained,
)
from cloudseg.models.segmenter import Segmenter, SegmenterConfig, build_segmenter

__all__ = [
    "BACKBONE_ALIASES",
    "HEADS",
    "IMAGENET_BANDS",
    "PRETRAINED_SOURCES",
    "SSL4EO_WEIGHTS",
    "LinearHead",
    "LoadReport",
    "PretrainedLoadError",
    "PretrainedWeightsUnavailableError",
    "Segmenter",
    "SegmenterConfig",
    "UPerNetHead",
    "ViTFeaturePyramid",
    "build_segmenter",
    "create_vit_backbone",
    "load_pretrained",
    "map_bands_by_wavelength",
    "resolve_backbone_name",
]
