"""Put a pretrained state dict into a ViT backbone, adapting it, and say exactly what happened.

Three adaptations are made, each recorded in a :class:`LoadReport`:

* **key prefixes**: Lightning/DDP/wrapper prefixes (``model.``, ``backbone.``, ``encoder.``,
  ``module.``) are stripped until a key names a backbone tensor (torchgeo's DPT+ViT weights once
  failed on exactly such a ``model.`` prefix);
* **input bands** of the patch embedding, by Sentinel-2 band name and centre wavelength
  (:func:`map_bands_by_wavelength`);
* **position embeddings**, resampled to the backbone's patch grid with timm's
  ``resample_abs_pos_embed``.

Nothing is loaded with a silent ``strict=False``: loading fails if no backbone tensor matched
(the torchgeo #4036 pitfall, where every tensor was dropped without a word) or if an essential
tensor (patch embedding, transformer blocks) is missing or has the wrong shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from cloudseg.sentinel2.bands import BAND_BY_NAME, resolve_bands
from cloudseg.sentinel2.errors import CloudfreeError

#: Wrapper prefixes stripped from checkpoint keys (Lightning module, DDP, encoder wrappers).
KNOWN_PREFIXES: tuple[str, ...] = ("model.", "backbone.", "encoder.", "module.")
PATCH_EMBED_WEIGHT = "patch_embed.proj.weight"
POS_EMBED = "pos_embed"


class PretrainedLoadError(CloudfreeError, RuntimeError):
    """A checkpoint did not fit the backbone (nothing matched, or essential tensors missing)."""


@dataclass
class LoadReport:
    """What loading a pretrained checkpoint into a backbone did.

    Attributes:
        source: where the weights came from (e.g. ``"imagenet: timm/vit_small_patch16_224..."``).
        loaded: backbone tensors copied unchanged from the checkpoint.
        adapted: backbone tensors loaded after a change (bands mapped, position grid resampled).
        skipped: checkpoint tensors that were not used (classifier heads, shape mismatches, ...).
        missing: backbone tensors the checkpoint did not provide (left at random init).
        notes: for adapted and skipped tensors, what was done and why.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """A few human-readable lines: counts, then every adaptation, skip and missing tensor."""
        lines = [
            f"Pretrained weights from {self.source}: {len(self.loaded)} tensors loaded, "
            f"{len(self.adapted)} adapted, {len(self.skipped)} skipped, "
            f"{len(self.missing)} missing."
        ]
        lines += [f"  adapted {name}: {self.notes.get(name, '')}" for name in self.adapted]
        lines += [f"  skipped {name}: {self.notes.get(name, '')}" for name in self.skipped]
        lines += [f"  missing {name} (random init)" for name in self.missing]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy (for logging to W&B or writing next to a checkpoint)."""
        return asdict(self)

    def __str__(self) -> str:
        return self.summary


def extract_state_dict(checkpoint: Mapping, origin: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a raw state dict, a Lightning checkpoint or a ``{"model": ...}`` file.

    Args:
        checkpoint: the object returned by ``torch.load``.
        origin: the file or source name, used in error messages.
    """
    for container in ("state_dict", "model", "teacher", "student"):
        inner = checkpoint.get(container) if isinstance(checkpoint, Mapping) else None
        if isinstance(inner, Mapping) and any(torch.is_tensor(v) for v in inner.values()):
            checkpoint = inner
            break
    if not isinstance(checkpoint, Mapping):
        raise PretrainedLoadError(
            f"{origin} holds a {type(checkpoint).__name__}, not a state dict or a checkpoint dict."
        )
    tensors = {key: value for key, value in checkpoint.items() if torch.is_tensor(value)}
    if not tensors:
        raise PretrainedLoadError(
            f"{origin} contains no tensors (top-level keys: {sorted(checkpoint)[:10]}); expected a "
            "timm/torchgeo state dict or a Lightning checkpoint with a 'state_dict' entry."
        )
    return tensors


def match_backbone_keys(
    checkpoint_keys: Sequence[str], backbone_keys: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """Match checkpoint keys to backbone keys, stripping :data:`KNOWN_PREFIXES` as needed.

    Returns:
        ``(matches, unmatched)``: backbone key -> checkpoint key, and the checkpoint keys that
        name no backbone tensor. When two checkpoint keys reach the same backbone key, the first
        wins and the second is reported as unmatched.
    """
    wanted = set(backbone_keys)
    matches: dict[str, str] = {}
    unmatched: list[str] = []
    for key in checkpoint_keys:
        candidate = key
        while candidate not in wanted:
            prefix = next((p for p in KNOWN_PREFIXES if candidate.startswith(p)), None)
            if prefix is None:
                break
            candidate = candidate[len(prefix) :]
        if candidate in wanted and candidate not in matches:
            matches[candidate] = key
        else:
            unmatched.append(key)
    return matches, unmatched


def map_bands_by_wavelength(
    weight: torch.Tensor, source_bands: Sequence[str], target_bands: Sequence[str]
) -> tuple[torch.Tensor, str]:
    """Map patch-embedding input channels from ``source_bands`` onto ``target_bands``.

    The rule, per target band:

    * a band the source has is **copied** (its learnt filter, exactly);
    * a band between two source bands in centre wavelength gets the **linear interpolation** of
      their filters, weighted by wavelength distance;
    * a band below the shortest or above the longest source wavelength gets the filter of the
      **nearest** source band (e.g. from ImageNet RGB = B04/B03/B02: B01 gets blue, B05-B12 red).

    If every target band is in the source (a subset or reordering, e.g. 13 L1C -> 12 L2A) the
    copied filters are returned unscaled. If any band had to be synthesised, all filters are
    scaled by ``len(source_bands) / len(target_bands)`` so the expected activation magnitude is
    preserved for inputs of similar value in every band (as timm's ``adapt_input_conv`` does with
    ``3 / C`` for RGB).

    Args:
        weight: ``(embed_dim, len(source_bands), patch, patch)`` convolution weight.
        source_bands, target_bands: Sentinel-2 band names (any spelling ``resolve_bands`` takes).

    Returns:
        ``(new_weight, note)`` with ``new_weight`` of shape ``(embed_dim, len(target_bands), p, p)``
        and a one-line description of what was done.
    """
    source_bands = resolve_bands(source_bands)
    target_bands = resolve_bands(target_bands)
    if weight.shape[1] != len(source_bands):
        raise ValueError(
            f"Patch embedding has {weight.shape[1]} input channels but {len(source_bands)} source "
            f"bands were given: {list(source_bands)}."
        )
    source = weight.float()
    wavelengths = {name: BAND_BY_NAME[name].center_nm for name in source_bands}
    by_wavelength = sorted(source_bands, key=wavelengths.get)
    channels: list[torch.Tensor] = []
    recipes: list[str] = []
    for band in target_bands:
        if band in source_bands:
            channels.append(source[:, source_bands.index(band)])
            recipes.append(band)
            continue
        target_nm = BAND_BY_NAME[band].center_nm
        lower = [b for b in by_wavelength if wavelengths[b] < target_nm]
        upper = [b for b in by_wavelength if wavelengths[b] > target_nm]
        if lower and upper:
            below, above = lower[-1], upper[0]
            frac = (target_nm - wavelengths[below]) / (wavelengths[above] - wavelengths[below])
            channels.append(
                (1 - frac) * source[:, source_bands.index(below)]
                + frac * source[:, source_bands.index(above)]
            )
            recipes.append(f"{band}<-{1 - frac:.2f}*{below}+{frac:.2f}*{above}")
        else:
            nearest = lower[-1] if lower else upper[0]
            channels.append(source[:, source_bands.index(nearest)])
            recipes.append(f"{band}<-{nearest}")
    mapped = torch.stack(channels, dim=1)
    if all(band in source_bands for band in target_bands):
        note = f"selected bands {list(target_bands)} from {list(source_bands)}"
        return mapped, note
    scale = len(source_bands) / len(target_bands)
    note = (
        f"mapped {len(source_bands)} bands {list(source_bands)} to {len(target_bands)} by "
        f"wavelength [{', '.join(recipes)}], scaled by {len(source_bands)}/{len(target_bands)}"
    )
    return mapped * scale, note


def resample_pos_embed(
    pos_embed: torch.Tensor, backbone: VisionTransformer
) -> tuple[torch.Tensor, str | None]:
    """Resample a checkpoint's absolute position embedding to the backbone's patch grid.

    Returns ``(pos_embed, note)``; ``note`` is ``None`` when no resampling was needed.

    Raises:
        ValueError: the embedding width differs or the token count is not prefix + square grid.
    """
    target_shape = backbone.pos_embed.shape
    if pos_embed.shape == target_shape:
        return pos_embed, None
    num_prefix = 0 if backbone.no_embed_class else backbone.num_prefix_tokens
    num_patches = pos_embed.shape[1] - num_prefix
    side = int(round(num_patches**0.5))
    if pos_embed.ndim != 3 or pos_embed.shape[2] != target_shape[2] or side * side != num_patches:
        raise ValueError(
            f"cannot resample pos_embed of shape {tuple(pos_embed.shape)} to "
            f"{tuple(target_shape)} ({num_prefix} prefix tokens, square patch grid expected): "
            "the checkpoint is for a different ViT architecture."
        )
    grid = list(backbone.patch_embed.grid_size)
    resampled = resample_abs_pos_embed(
        pos_embed.float(), new_size=grid, old_size=[side, side], num_prefix_tokens=num_prefix
    )
    return resampled, f"resampled position grid {side}x{side} -> {grid[0]}x{grid[1]}"


def is_essential(key: str) -> bool:
    """Tensors without which a "pretrained" backbone is not pretrained: patch embed and blocks."""
    return key.startswith(("patch_embed.", "blocks."))


def _adapt(
    key: str,
    tensor: torch.Tensor,
    backbone: VisionTransformer,
    source_bands: Sequence[str],
    target_bands: Sequence[str],
) -> tuple[torch.Tensor, str | None]:
    """Adapt the patch embedding's bands and the position grid; other tensors pass unchanged."""
    if key == PATCH_EMBED_WEIGHT and resolve_bands(source_bands) != resolve_bands(target_bands):
        return map_bands_by_wavelength(tensor, source_bands, target_bands)
    if key == POS_EMBED:
        return resample_pos_embed(tensor, backbone)
    return tensor, None


def load_backbone_state(
    backbone: VisionTransformer,
    state_dict: Mapping[str, torch.Tensor],
    source_bands: Sequence[str],
    target_bands: Sequence[str],
    source: str,
) -> LoadReport:
    """Load ``state_dict`` into ``backbone``, adapting bands and position grid; report it all.

    Args:
        backbone: a timm ViT built for ``target_bands``.
        state_dict: checkpoint tensors (prefixes are stripped here).
        source_bands: the band of each patch-embedding input channel of the checkpoint.
        target_bands: the band of each input channel of ``backbone``.
        source: description of where the weights came from, for the report.

    Raises:
        PretrainedLoadError: no backbone tensor matched, or an essential tensor is missing or has
            a shape that does not fit (the checkpoint is for another architecture).
    """
    own_state = backbone.state_dict()
    matches, unmatched = match_backbone_keys(list(state_dict), list(own_state))
    report = LoadReport(source=source)
    for key in unmatched:
        report.skipped.append(key)
        report.notes[key] = "no backbone tensor of that name"
    new_state: dict[str, torch.Tensor] = {}
    for key, checkpoint_key in matches.items():
        tensor = state_dict[checkpoint_key]
        note = f"from {checkpoint_key}" if checkpoint_key != key else None
        try:
            tensor, adaptation = _adapt(key, tensor, backbone, source_bands, target_bands)
        except ValueError as error:
            report.skipped.append(checkpoint_key)
            report.notes[checkpoint_key] = f"shape does not fit backbone {key}: {error}"
            continue
        if adaptation is not None:
            note = adaptation if note is None else f"{note}; {adaptation}"
        if tensor.shape != own_state[key].shape:
            report.skipped.append(checkpoint_key)
            report.notes[checkpoint_key] = (
                f"shape {tuple(tensor.shape)} does not fit backbone {key} "
                f"{tuple(own_state[key].shape)}"
            )
            continue
        new_state[key] = tensor
        if note is None:
            report.loaded.append(key)
        else:
            report.adapted.append(key)
            report.notes[key] = note
    report.missing = [key for key in own_state if key not in new_state]

    if not matches:
        raise PretrainedLoadError(
            f"No tensor from {source} matched the backbone (the torchgeo #4036 pitfall: nothing "
            f"would have loaded). Checkpoint keys start with {sorted(state_dict)[:5]}; backbone "
            f"keys look like {list(own_state)[:5]}. Is this a timm ViT checkpoint?"
        )
    essential_missing = [key for key in report.missing if is_essential(key)]
    if essential_missing:
        shown = ", ".join(essential_missing[:8])
        more = f" and {len(essential_missing) - 8} more" if len(essential_missing) > 8 else ""
        mismatched = [k for k in report.skipped if report.notes[k].startswith("shape")][:2]
        hint = "; ".join(f"{k}: {report.notes[k]}" for k in mismatched)
        raise PretrainedLoadError(
            f"Checkpoint {source} lacks essential backbone tensors {shown}{more}"
            + (f" (shape mismatches: {hint})" if hint else "")
            + ". It is probably for a different ViT (depth, width or patch size): pick the "
            "matching backbone, or use pretrained='none' to train from scratch."
        )
    result = backbone.load_state_dict(new_state, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != set(report.missing):
        raise PretrainedLoadError(
            f"Internal check failed loading {source}: unexpected {result.unexpected_keys}, "
            f"missing {result.missing_keys} vs reported {report.missing}."
        )
    return report
