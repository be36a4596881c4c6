"""Segmentation heads on ViT features; each returns logits at full input resolution.

A plain ViT has all features at stride 16 (smp's UNet/UPerNet refuse such encoders), so the
multi-level head builds its own pyramid from intermediate blocks taken with timm's
``forward_intermediates``:

* :class:`LinearHead`: a per-patch linear classifier on the last block (BatchNorm + 1x1 conv, as
  in SSL4EO/DINOv2 linear probes), bilinearly upsampled x16.
* :class:`UPerNetHead`: four blocks -> a ViTDet/BEiT-style simple feature pyramid at strides
  4, 8, 16, 32 (:class:`ViTFeaturePyramid`) -> UPerNet (pyramid pooling on the coarsest level,
  top-down FPN, fusion of all levels at stride 4) -> 1x1 classifier, upsampled x4.

  With ``detail_channels > 0`` the head also reads the input bands at full resolution
  (:class:`DetailBranch`: two 3x3 convs) and fuses them with the upsampled decoder features
  before the classifier. The ViT sees 16x16-pixel patches, so on its own it blurs what is decided
  per pixel: thin-cloud and shadow edges, small clouds, the exact spectrum of one pixel. The branch
  gives that back for about a third more compute per pixel with the tiny ViT (less with larger
  ones).
"""

from __future__ import annotations

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


def build_head(
    head: str,
    embed_dim: int,
    num_classes: int,
    decoder_channels: int,
    in_chans: int,
    detail_channels: int = 0,
) -> nn.Module:
    """The head named ``head`` for features of width ``embed_dim`` of an ``in_chans``-band input.

    ``detail_channels``: width of the UPerNet head's full-resolution branch (0: none). The linear
    head is a probe of the backbone's features and takes none.
    """
    if detail_channels < 0:
        raise ValueError(f"detail_channels must be >= 0, got {detail_channels}.")
    if head == "linear":
        if detail_channels:
            raise ValueError(
                "The linear head probes the backbone's features alone: set detail_channels=0 "
                "(model.segmenter.detail_channels=0) or use head=upernet."
            )
        return LinearHead(embed_dim, num_classes)
    if head == "upernet":
        return UPerNetHead(
            embed_dim,
            num_classes,
            channels=decoder_channels,
            in_chans=in_chans,
            detail_channels=detail_channels,
        )
    raise ValueError(f"Unknown head {head!r}: choose one of {list(HEADS)}.")


def conv_norm_act(
    in_channels: int, out_channels: int, kernel_size: int, norm: bool = True
) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU (``norm=False``: conv with bias -> ReLU).

    BatchNorm, not GroupNorm: in eval mode it normalises with fixed statistics, so a pixel's
    prediction does not depend on what else is in the window (no seams between inference windows)
    and an all-cloud chip keeps its absolute brightness, which per-image normalisation removes
    (the full-resolution branch trained no better than chance with GroupNorm on the demo).
    """
    padding = kernel_size // 2
    if not norm:
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
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

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """``features``: one ``(B, D, H/16, W/16)`` map of ``image`` ``(B, C, H, W)`` ->
        ``(B, num_classes, H, W)``."""
        (last,) = features
        return _resize(self.classifier(self.norm(last)), image.shape[-2:])


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
                    nn.BatchNorm2d(channels),
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


class DetailBranch(nn.Module):
    """The input bands at full resolution -> ``channels`` features (two 3x3 conv-norm-ReLU)."""

    def __init__(self, in_chans: int, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            conv_norm_act(in_chans, channels, 3), conv_norm_act(channels, channels, 3)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.layers(image)


class UPerNetHead(nn.Module):
    """UPerNet decoder on a :class:`ViTFeaturePyramid`, producing full-resolution logits;
    optionally fused with a full-resolution :class:`DetailBranch` of the input."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        in_chans: int = 0,
        detail_channels: int = 0,
    ) -> None:
        super().__init__()
        if detail_channels and in_chans < 1:
            raise ValueError("A detail branch needs the number of input bands (in_chans >= 1).")
        self.pyramid = ViTFeaturePyramid(embed_dim, channels)
        # No norm on pooled maps: a 1x1 map of a batch of one has no statistics to train on.
        self.pool_branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(scale), conv_norm_act(channels, channels, 1, norm=False)
            )
            for scale in pool_scales
        )
        self.pool_fuse = conv_norm_act(channels * (len(pool_scales) + 1), channels, 3)
        self.fpn_convs = nn.ModuleList(conv_norm_act(channels, channels, 3) for _ in range(3))
        self.fuse = conv_norm_act(4 * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.detail: DetailBranch | None = None
        if detail_channels:
            # The decoder is narrowed to the branch's width at stride 4, before upsampling, so the
            # full-resolution part stays a few thousand multiply-adds per pixel.
            self.detail = DetailBranch(in_chans, detail_channels)
            self.detail_project = conv_norm_act(channels, detail_channels, 1)
            self.detail_fuse = conv_norm_act(2 * detail_channels, detail_channels, 3)
        self.classifier = nn.Conv2d(detail_channels or channels, num_classes, kernel_size=1)

    def _pyramid_pooling(self, coarsest: torch.Tensor) -> torch.Tensor:
        size = coarsest.shape[-2:]
        pooled = [_resize(branch(coarsest), size) for branch in self.pool_branches]
        return self.pool_fuse(torch.cat([coarsest, *pooled], dim=1))

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """``features``: four ``(B, D, H/16, W/16)`` maps of ``image`` ``(B, C, H, W)`` ->
        ``(B, num_classes, H, W)``."""
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
        fused = self.dropout(fused)
        if self.detail is None:
            return _resize(self.classifier(fused), image.shape[-2:])
        context = _resize(self.detail_project(fused), image.shape[-2:])
        return self.classifier(self.detail_fuse(torch.cat([context, self.detail(image)], dim=1)))
