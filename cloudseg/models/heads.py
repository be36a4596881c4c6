"""Segmentation heads on ViT features; each returns logits at full input resolution.

A plain ViT has all features at stride 16 (smp's UNet/UPerNet refuse such encoders), so the
multi-level head builds its own pyramid from intermediate blocks taken with timm's
``forward_intermediates``:

* :class:`LinearHead`: a per-patch linear classifier on the last block (BatchNorm + 1x1 conv, as
  in SSL4EO/DINOv2 linear probes), bilinearly upsampled x16.
* :class:`UPerNetHead`: four blocks -> a ViTDet/BEiT-style simple feature pyramid at strides
  4, 8, 16, 32 (:class:`ViTFeaturePyramid`) -> UPerNet (pyramid pooling on the coarsest level,
  top-down FPN, fusion of all levels at stride 4) -> 1x1 classifier, upsampled x4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

HEADS: tuple[str, ...] = ("linear", "upernet")


def feature_indices_for(head: str, depth: int) -> list[int]:
    """Which transformer blocks (0-based) feed ``head``: the last one, or four evenly spaced.

    For depth 12 the UPerNet head reads blocks ``[2, 5, 8, 11]``.
    """
    if head == "linear":
        return [depth - 1]
    if head == "upernet":
        if depth < 4:
            raise ValueError(f"The upernet head needs a backbone with >= 4 blocks, got {depth}.")
        return [round(depth * (level + 1) / 4) - 1 for level in range(4)]
    raise ValueError(f"Unknown head {head!r}: choose one of {list(HEADS)}.")


def build_head(head: str, embed_dim: int, num_classes: int, decoder_channels: int) -> nn.Module:
    """The head named ``head`` for features of width ``embed_dim``."""
    if head == "linear":
        return LinearHead(embed_dim, num_classes)
    if head == "upernet":
        return UPerNetHead(embed_dim, num_classes, channels=decoder_channels)
    raise ValueError(f"Unknown head {head!r}: choose one of {list(HEADS)}.")


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv -> GroupNorm -> ReLU. GroupNorm works for any batch size (also a pooled 1x1 map)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(math.gcd(32, out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    """Per-patch linear classifier on the last block's features, upsampled to the input size."""

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(embed_dim)
        self.classifier = nn.Conv2d(embed_dim, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], out_size: Sequence[int]) -> torch.Tensor:
        """``features``: one ``(B, D, H/16, W/16)`` map -> ``(B, num_classes, *out_size)``."""
        (last,) = features
        return _resize(self.classifier(self.norm(last)), out_size)


class ViTFeaturePyramid(nn.Module):
    """Four stride-16 ViT feature maps -> ``channels``-wide maps at strides 4, 8, 16 and 32.

    Each level is projected to ``channels`` (1x1 conv), then rescaled: two 2x transposed convs,
    one 2x transposed conv, identity, 2x max-pool (the ViTDet "simple feature pyramid").
    """

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.projections = nn.ModuleList(conv_norm_act(embed_dim, channels, 1) for _ in range(4))
        self.rescales = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                    nn.GroupNorm(math.gcd(32, channels), channels),
                    nn.GELU(),
                    nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                ),
                nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True),
            ]
        )

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != 4:
            raise ValueError(f"ViTFeaturePyramid needs 4 feature maps, got {len(features)}.")
        return [
            rescale(project(feature))
            for feature, project, rescale in zip(
                features, self.projections, self.rescales, strict=True
            )
        ]


class UPerNetHead(nn.Module):
    """UPerNet decoder on a :class:`ViTFeaturePyramid`, producing full-resolution logits."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.pyramid = ViTFeaturePyramid(embed_dim, channels)
        self.pool_branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), conv_norm_act(channels, channels, 1))
            for scale in pool_scales
        )
        self.pool_fuse = conv_norm_act(channels * (len(pool_scales) + 1), channels, 3)
        self.fpn_convs = nn.ModuleList(conv_norm_act(channels, channels, 3) for _ in range(3))
        self.fuse = conv_norm_act(4 * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def _pyramid_pooling(self, coarsest: torch.Tensor) -> torch.Tensor:
        size = coarsest.shape[-2:]
        pooled = [_resize(branch(coarsest), size) for branch in self.pool_branches]
        return self.pool_fuse(torch.cat([coarsest, *pooled], dim=1))

    def forward(self, features: Sequence[torch.Tensor], out_size: Sequence[int]) -> torch.Tensor:
        """``features``: four ``(B, D, H/16, W/16)`` maps -> ``(B, num_classes, *out_size)``."""
        levels = self.pyramid(features)
        laterals = [*levels[:3], self._pyramid_pooling(levels[3])]
        for index in range(2, -1, -1):  # top-down pathway
            laterals[index] = laterals[index] + _resize(
                laterals[index + 1], laterals[index].shape[-2:]
            )
        outputs = [
            conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals[:3], strict=True)
        ]
        outputs.append(laterals[3])
        finest = outputs[0].shape[-2:]
        fused = self.fuse(torch.cat([_resize(output, finest) for output in outputs], dim=1))
        return _resize(self.classifier(self.dropout(fused)), out_size)
