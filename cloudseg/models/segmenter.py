"""The full segmentation model (ViT backbone + head) and its factory :func:`build_segmenter`."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from cloudseg.labels import NUM_CLASSES
from cloudseg.models.backbones import create_vit_backbone, patch_size_of, resolve_backbone_name
from cloudseg.models.heads import HEADS, build_head, feature_indices_for
from cloudseg.models.loading import LoadReport
from cloudseg.models.pretrained import PRETRAINED_SOURCES, load_pretrained
from cloudseg.sentinel2.bands import resolve_bands

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmenterConfig:
    """Everything :func:`build_segmenter` takes; validated and normalised on creation.

    Attributes:
        backbone: ``vit_tiny``, ``vit_s16``, ``vit_b16`` or a timm ViT name.
        bands: input bands in channel order (names, or ``"L1C"``/``"L2A"``/``"RGB"``).
        num_classes: number of output classes.
        head: ``linear`` (per-patch probe) or ``upernet`` (multi-level).
        img_size: training image size; position embeddings are built for it. Inputs of other
            sizes work as long as height and width are multiples of the patch size.
        pretrained: ``none`` (random init, explicitly), ``imagenet``, ``ssl4eo`` or ``file``.
        weights_path: checkpoint file for ``pretrained="file"``.
        freeze_backbone: freeze the whole backbone (and keep it in eval mode): a linear probe.
        frozen_blocks: freeze patch/position embeddings and the first ``frozen_blocks`` blocks.
        drop_path_rate: stochastic depth rate of the backbone.
        decoder_channels: width of the UPerNet decoder (unused by the linear head).
        detail_channels: width of the UPerNet head's full-resolution branch on the input bands
            (0: none; the linear head takes none). See :mod:`cloudseg.models.heads`.
    """

    backbone: str
    bands: tuple[str, ...]
    num_classes: int = NUM_CLASSES
    head: str = "upernet"
    img_size: int = 256
    pretrained: str = "none"
    weights_path: str | None = None
    freeze_backbone: bool = False
    frozen_blocks: int = 0
    drop_path_rate: float = 0.1
    decoder_channels: int = 256
    detail_channels: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", resolve_bands(self.bands))
        if self.weights_path is not None:
            object.__setattr__(self, "weights_path", os.fspath(self.weights_path))
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r} is not one of {list(HEADS)}.")
        if self.pretrained not in PRETRAINED_SOURCES:
            raise ValueError(
                f"pretrained={self.pretrained!r} is not one of {list(PRETRAINED_SOURCES)} "
                "(use 'none' to train from random init)."
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}.")
        if self.frozen_blocks < 0:
            raise ValueError(f"frozen_blocks must be >= 0, got {self.frozen_blocks}.")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}.")

    def architecture_dict(self) -> dict:
        """JSON-serialisable kwargs that rebuild this architecture without loading any weights."""
        config = asdict(replace(self, pretrained="none", weights_path=None))
        config["bands"] = list(self.bands)
        return config


class Segmenter(nn.Module):
    """ViT backbone + segmentation head: ``(B, C, H, W)`` -> logits ``(B, num_classes, H, W)``.

    Attributes:
        config: kwargs for :func:`build_segmenter` that rebuild the architecture (no weights).
        load_report: what pretrained loading did (``None`` for ``pretrained="none"``).
        pretrained_source: the ``pretrained`` option the weights came from.
        num_layers: number of layer ids for layer-wise LR decay: ``0`` patch/position
            embeddings, ``1..depth`` the blocks, ``depth + 1`` final norm and head/neck.
        feature_indices: the blocks (0-based) whose outputs feed the head.
    """

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.bands: tuple[str, ...] = config.bands
        self.timm_name = resolve_backbone_name(config.backbone)
        self.backbone = create_vit_backbone(
            config.backbone, len(config.bands), config.img_size, config.drop_path_rate
        )
        self.patch_size = patch_size_of(self.backbone)
        depth = len(self.backbone.blocks)
        if config.frozen_blocks > depth:
            raise ValueError(
                f"frozen_blocks={config.frozen_blocks} exceeds the {depth} blocks of "
                f"{self.timm_name}; use freeze_backbone=True to freeze all of it."
            )
        self.feature_indices = feature_indices_for(config.head, depth)
        self.head = build_head(
            config.head,
            self.backbone.embed_dim,
            config.num_classes,
            config.decoder_channels,
            in_chans=len(config.bands),
            detail_channels=config.detail_channels,
        )
        self.num_layers = depth + 2
        self.load_report: LoadReport | None = load_pretrained(
            self.backbone, self.timm_name, config.pretrained, config.bands, config.weights_path
        )
        self.pretrained_source = config.pretrained
        if self.load_report is not None:
            log.info("%s", self.load_report.summary)
        self._parameter_names = frozenset(name for name, _ in self.named_parameters())
        self.freeze_backbone = config.freeze_backbone
        self._freeze(config.freeze_backbone, config.frozen_blocks)
        self.config: dict = config.architecture_dict()

    def _freeze(self, freeze_backbone: bool, frozen_blocks: int) -> None:
        if not (freeze_backbone or frozen_blocks):
            return
        if self.load_report is None:
            log.warning("Freezing parts of a randomly initialised backbone (pretrained='none').")
        last_frozen_layer = self.num_layers - 1 if freeze_backbone else frozen_blocks
        for name, parameter in self.backbone.named_parameters(prefix="backbone"):
            if self.layer_id(name) <= last_frozen_layer:
                parameter.requires_grad_(False)
        if freeze_backbone:
            self.backbone.eval()

    def train(self, mode: bool = True) -> Segmenter:
        """Like ``nn.Module.train``, but a frozen backbone stays in eval mode (no drop path)."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for normalised bands ``x`` of shape ``(B, C, H, W)``."""
        self._check_input(x)
        features = self.backbone.forward_intermediates(
            x, indices=self.feature_indices, norm=True, output_fmt="NCHW", intermediates_only=True
        )
        return self.head(features, x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise ValueError(
                f"Expected input (B, {len(self.bands)}, H, W) for bands {list(self.bands)}, "
                f"got shape {tuple(x.shape)}."
            )
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Input size {height}x{width} is not a multiple of the patch size "
                f"{self.patch_size}: crop or pad the chips (e.g. to 256x256)."
            )

    def layer_id(self, param_name: str) -> int:
        """Layer id of a parameter named as in ``self.named_parameters()``.

        ``0``: patch embedding, class/register tokens, position embedding; ``i + 1``: block ``i``;
        ``num_layers - 1``: everything after the blocks (final norm, neck, head).
        """
        if param_name not in self._parameter_names:
            raise KeyError(
                f"{param_name!r} is not a parameter of this Segmenter; pass names as given by "
                "model.named_parameters() (e.g. 'backbone.blocks.0.attn.qkv.weight')."
            )
        name = param_name.removeprefix("backbone.")
        if name == param_name:  # not a backbone parameter: neck/head
            return self.num_layers - 1
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        if name in {"cls_token", "reg_token", "pos_embed"} or name.startswith(
            ("patch_embed.", "norm_pre.")
        ):
            return 0
        return self.num_layers - 1


def build_segmenter(
    backbone: str,
    bands: Sequence[str] | str,
    num_classes: int = NUM_CLASSES,
    head: str = "upernet",
    img_size: int = 256,
    pretrained: str = "none",
    weights_path: str | os.PathLike | None = None,
    freeze_backbone: bool = False,
    frozen_blocks: int = 0,
    drop_path_rate: float = 0.1,
    decoder_channels: int = 256,
    detail_channels: int = 0,
) -> Segmenter:
    """Build a :class:`Segmenter`; ``build_segmenter(**model.config)`` rebuilds its architecture.

    See :class:`SegmenterConfig` for the arguments. Pretrained weights are loaded and reported in
    ``model.load_report``; unavailable weights raise an error naming the file/option to provide.
    """
    config = SegmenterConfig(
        backbone=backbone,
        bands=bands,
        num_classes=num_classes,
        head=head,
        img_size=img_size,
        pretrained=pretrained,
        weights_path=weights_path,
        freeze_backbone=freeze_backbone,
        frozen_blocks=frozen_blocks,
        drop_path_rate=drop_path_rate,
        decoder_channels=decoder_channels,
        detail_channels=detail_channels,
    )
    return Segmenter(config)
