"""timm Vision Transformer backbones for any Sentinel-2 band count and any image size.

The backbone is a plain timm ``VisionTransformer`` built without a classifier head
(``num_classes=0, global_pool=""``) and with ``dynamic_img_size=True``, so it accepts any input
whose height and width are multiples of the patch size: its position embeddings are created for
``img_size`` and resampled by timm on the fly for other sizes.
"""

from __future__ import annotations

import timm
from timm.models.vision_transformer import VisionTransformer

#: Short names used in configs, mapped to timm model names.
BACKBONE_ALIASES: dict[str, str] = {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_s16": "vit_small_patch16_224",
    "vit_b16": "vit_base_patch16_224",
}


def resolve_backbone_name(name: str) -> str:
    """Return the timm model name for an alias (``vit_s16``) or a full timm name.

    Raises:
        ValueError: ``name`` is neither an alias nor a timm model name.
    """
    timm_name = BACKBONE_ALIASES.get(name, name)
    if not timm.is_model(timm_name):
        aliases = ", ".join(f"{alias} ({full})" for alias, full in BACKBONE_ALIASES.items())
        raise ValueError(
            f"Unknown backbone {name!r}: use one of the aliases {aliases} "
            "or a timm Vision Transformer name such as 'vit_small_patch16_384'."
        )
    return timm_name


def create_vit_backbone(
    name: str, in_chans: int, img_size: int, drop_path_rate: float = 0.0
) -> VisionTransformer:
    """Create a randomly initialised timm ViT backbone (weights are loaded separately).

    Args:
        name: alias from :data:`BACKBONE_ALIASES` or a timm Vision Transformer name.
        in_chans: number of input bands.
        img_size: training image size in pixels (square); must be a multiple of the patch size.
        drop_path_rate: stochastic depth rate of the transformer blocks.
    """
    timm_name = resolve_backbone_name(name)
    if in_chans < 1:
        raise ValueError(f"in_chans must be at least 1, got {in_chans}.")
    not_a_vit = (
        f"Backbone {name!r} ({timm_name}) is not a timm VisionTransformer; choose a plain ViT "
        "such as 'vit_s16' or 'vit_base_patch16_224'."
    )
    try:
        backbone = timm.create_model(
            timm_name,
            pretrained=False,
            in_chans=in_chans,
            img_size=img_size,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
        )
    except TypeError as error:  # other architectures reject ViT-only options such as img_size
        raise ValueError(f"{not_a_vit} ({error})") from error
    if not isinstance(backbone, VisionTransformer):
        raise ValueError(not_a_vit)
    patch = patch_size_of(backbone)
    if img_size % patch:
        raise ValueError(
            f"img_size={img_size} is not a multiple of the patch size {patch} of {timm_name}; "
            f"use e.g. {max(patch, img_size // patch * patch)}."
        )
    return backbone


def patch_size_of(backbone: VisionTransformer) -> int:
    """The (square) patch size of a timm ViT, in pixels."""
    height, width = backbone.patch_embed.patch_size
    if height != width:
        raise ValueError(f"Only square patches are supported, this backbone has {height}x{width}.")
    return int(height)
