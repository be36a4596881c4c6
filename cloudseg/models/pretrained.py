"""Where pretrained backbone weights come from: ImageNet (timm), SSL4EO-S12 (torchgeo), a file.

Each source returns :class:`PretrainedWeights` (a state dict plus the Sentinel-2 band of each
patch-embedding input channel); :func:`load_pretrained` then adapts and loads them with
:func:`cloudseg.models.loading.load_backbone_state`, which reports what it did.

Online, the weights come exactly the way a user of the libraries gets them: timm
``create_model(..., pretrained=True)`` (Hugging Face Hub) and torchgeo
``WeightsEnum.get_state_dict(progress=True)`` (torch hub cache). The local caches are checked
first; when the weights are not cached and the host cannot be reached (or ``HF_HUB_OFFLINE=1``),
a :class:`PretrainedWeightsUnavailableError` says at once which file to download and which option
to set, instead of retrying for a minute or silently training from random init.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import getproxies

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from safetensors.torch import load_file as load_safetensors
from timm.models.vision_transformer import VisionTransformer
from torchgeo.models import ViTBase16_Weights, ViTSmall16_Weights
from torchvision.models._api import WeightsEnum

from cloudseg.models.loading import (
    PATCH_EMBED_WEIGHT,
    LoadReport,
    PretrainedLoadError,
    extract_state_dict,
    load_backbone_state,
    match_backbone_keys,
)
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS, resolve_bands
from cloudseg.sentinel2.errors import CloudfreeError

PRETRAINED_SOURCES: tuple[str, ...] = ("none", "imagenet", "ssl4eo", "file")
#: ImageNet models take R, G, B: the Sentinel-2 bands closest to those are B04, B03, B02.
IMAGENET_BANDS: tuple[str, ...] = ("B04", "B03", "B02")
#: torchgeo 0.8.1 SSL4EO-S12 weights (13 L1C bands) per timm backbone. ViT-B/16 has no MoCo
#: weights in torchgeo 0.8.1, so it uses the MAE encoder.
SSL4EO_WEIGHTS: dict[str, WeightsEnum] = {
    "vit_small_patch16_224": ViTSmall16_Weights.SENTINEL2_ALL_MOCO,
    "vit_base_patch16_224": ViTBase16_Weights.SENTINEL2_ALL_MAE,
}
log = logging.getLogger(__name__)

HF_WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
CONNECT_TIMEOUT_S = 3.0


class PretrainedWeightsUnavailableError(CloudfreeError, RuntimeError):
    """Pretrained weights were asked for but are neither cached nor downloadable."""


@dataclass
class PretrainedWeights:
    """A checkpoint's tensors, the band of each patch-embed input channel, and their origin."""

    state_dict: dict[str, torch.Tensor]
    bands: tuple[str, ...]
    source: str


def load_pretrained(
    backbone: VisionTransformer,
    timm_name: str,
    source: str,
    bands: Sequence[str],
    weights_path: str | os.PathLike | None = None,
) -> LoadReport | None:
    """Load the chosen pretrained weights into ``backbone``; ``None`` for ``source="none"``.

    Args:
        backbone: a timm ViT built for ``bands``.
        timm_name: the timm model name of ``backbone`` (selects the ImageNet/SSL4EO weights).
        source: one of :data:`PRETRAINED_SOURCES`.
        bands: the band of each input channel of ``backbone``.
        weights_path: the checkpoint file for ``source="file"``.
    """
    if source not in PRETRAINED_SOURCES:
        raise ValueError(f"pretrained={source!r} is not one of {list(PRETRAINED_SOURCES)}.")
    if weights_path is not None and source != "file":
        raise ValueError(
            f"weights_path={str(weights_path)!r} is only used with pretrained='file' "
            f"(got pretrained={source!r}): set pretrained='file' or drop weights_path."
        )
    if source == "none":
        return None
    if source == "imagenet":
        weights = imagenet_weights(timm_name)
    elif source == "ssl4eo":
        weights = ssl4eo_weights(timm_name)
    else:
        if weights_path is None:
            raise ValueError(
                "pretrained='file' needs weights_path=<checkpoint file> (a timm/torchgeo state "
                "dict or a Lightning .ckpt)."
            )
        weights = file_weights(weights_path, bands)
    return load_backbone_state(backbone, weights.state_dict, weights.bands, bands, weights.source)


def imagenet_weights(timm_name: str) -> PretrainedWeights:
    """timm's default ImageNet weights for ``timm_name`` (3 channels R, G, B).

    Loaded with ``timm.create_model(timm_name, pretrained=True)``: from the Hugging Face cache
    when the file is there, otherwise downloaded (with progress) if the Hub can be reached.
    """
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise PretrainedWeightsUnavailableError(
            f"timm has no pretrained weights for {timm_name}: use pretrained='none', or "
            "pretrained='file' with weights_path=<checkpoint>."
        )
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        cached = _hf_cached_file(repo_id, filenames, revision or None)
        url = f"https://huggingface.co/{repo_id}/resolve/{revision or 'main'}/{filenames[0]}"
        cache_hint = (
            f"the Hugging Face cache {hf_constants.HF_HUB_CACHE} (e.g. `hf download {repo_id} "
            f"{filenames[0]}`, then copy the cache here)"
        )
    else:
        url = cfg.url
        cached = _torch_hub_cached_file(url)
        cache_hint = f"the torch hub cache {_torch_hub_cache_path(url)}"
    description = f"imagenet: timm {timm_name}.{cfg.tag} ({url})"
    if cached is not None:
        model = timm.create_model(
            timm_name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": cached}
        )
    else:
        _require_reachable(url, f"ImageNet weights for {timm_name}", cache_hint)
        try:
            model = timm.create_model(timm_name, pretrained=True, num_classes=0)
        except OSError as error:
            raise _unavailable(f"ImageNet weights for {timm_name}", url, cache_hint) from error
    return PretrainedWeights(model.state_dict(), IMAGENET_BANDS, description)


def ssl4eo_weights(timm_name: str) -> PretrainedWeights:
    """torchgeo's SSL4EO-S12 Sentinel-2 weights for ``timm_name`` (13 bands, L1C order).

    Loaded with ``WeightsEnum.get_state_dict(progress=True)``, which reads the torch hub cache
    when the file is there and downloads it otherwise.
    """
    if timm_name not in SSL4EO_WEIGHTS:
        available = ", ".join(SSL4EO_WEIGHTS)
        raise PretrainedWeightsUnavailableError(
            f"torchgeo has no SSL4EO-S12 Sentinel-2 weights for {timm_name}; they exist for "
            f"{available} (backbone='vit_s16' or 'vit_b16'). Or use pretrained='imagenet'/'none'."
        )
    weights = SSL4EO_WEIGHTS[timm_name]
    name = f"{type(weights).__name__}.{weights.name}"
    cache_path = _torch_hub_cache_path(weights.url)
    if _torch_hub_cached_file(weights.url) is None:
        _require_reachable(
            weights.url,
            f"SSL4EO-S12 weights {name}",
            f"the torch hub cache: put the file at {cache_path}, then pretrained='ssl4eo' works "
            "offline",
        )
    try:
        checkpoint = weights.get_state_dict(progress=True)
    except OSError as error:  # URLError is an OSError
        raise _unavailable(
            f"SSL4EO-S12 weights {name}", weights.url, f"the torch hub cache file {cache_path}"
        ) from error
    bands = resolve_bands(weights.meta["bands"])
    return PretrainedWeights(
        extract_state_dict(checkpoint, name), bands, f"ssl4eo: torchgeo {name} ({weights.url})"
    )


def file_weights(path: str | os.PathLike, target_bands: Sequence[str]) -> PretrainedWeights:
    """Weights from a local checkpoint: a timm/torchgeo state dict or a Lightning ``.ckpt``.

    The bands of the checkpoint's patch-embedding input channels are, in order of precedence:
    a ``bands`` entry in the checkpoint (top level, in a top-level dict such as
    ``checkpoint["cloudfree"]``, or in a Lightning hyperparameter dict such as
    ``hyper_parameters["segmenter"]``); 13 channels: the L1C order
    (SSL4EO-S12); 12: the L2A order; 3: ImageNet R, G, B = B04, B03, B02; otherwise, if the
    count equals ``len(target_bands)``, the target bands themselves.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights_path {str(path)!r} does not exist: give the path of a timm/torchgeo state "
            "dict or Lightning .ckpt, or use pretrained='none' for random init."
        )
    if path.suffix == ".safetensors":
        checkpoint: Mapping = load_safetensors(path, device="cpu")
    else:
        checkpoint = _torch_load_trusted(path)
    state_dict = extract_state_dict(checkpoint, str(path))
    bands = _checkpoint_bands(checkpoint, state_dict, target_bands, str(path))
    return PretrainedWeights(state_dict, bands, f"file: {path}")


def _torch_load_trusted(path: Path) -> Mapping:
    """``torch.load`` with ``weights_only=True``; Lightning checkpoints whose hyperparameters hold
    other objects (e.g. OmegaConf containers) fall back to a full unpickle, with a warning: only
    pass checkpoints you trust."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        log.warning("%s needs a full unpickle (weights_only=False); loading it as trusted.", path)
        return torch.load(path, map_location="cpu", weights_only=False)


def _checkpoint_bands(
    checkpoint: Mapping,
    state_dict: Mapping[str, torch.Tensor],
    target_bands: Sequence[str],
    origin: str,
) -> tuple[str, ...]:
    """The bands of the checkpoint's patch-embed input channels (rules in :func:`file_weights`)."""
    matches, _ = match_backbone_keys(list(state_dict), [PATCH_EMBED_WEIGHT])
    if PATCH_EMBED_WEIGHT not in matches:
        raise PretrainedLoadError(
            f"{origin} has no patch embedding ({PATCH_EMBED_WEIGHT}, possibly behind a "
            f"'model.'/'backbone.' prefix); keys start with {sorted(state_dict)[:5]}. "
            "Is it a timm ViT checkpoint?"
        )
    in_chans = state_dict[matches[PATCH_EMBED_WEIGHT]].shape[1]
    declared = _declared_bands(checkpoint)
    if declared is not None:
        if len(declared) != in_chans:
            raise PretrainedLoadError(
                f"{origin} declares bands {list(declared)} but its patch embedding has "
                f"{in_chans} input channels."
            )
        return declared
    by_count = {len(L1C_BANDS): L1C_BANDS, len(L2A_BANDS): L2A_BANDS, 3: IMAGENET_BANDS}
    if in_chans in by_count:
        return by_count[in_chans]
    if in_chans == len(target_bands):
        return resolve_bands(target_bands)
    raise PretrainedLoadError(
        f"{origin} has {in_chans} input channels and does not say which bands they are; "
        f"the model uses {len(target_bands)} bands {list(target_bands)}. Save the checkpoint "
        "with a 'bands' entry (e.g. torch.save({'state_dict': sd, 'bands': [...]}, path))."
    )


def _declared_bands(checkpoint: Mapping) -> tuple[str, ...] | None:
    """A ``bands`` list stored in a checkpoint, in one of its dict entries (e.g. the
    ``"cloudfree"`` metadata of ``cloudseg.task``) or in one of its Lightning hyperparameters
    (e.g. ``hyper_parameters["segmenter"]["bands"]``)."""
    hyper = checkpoint.get("hyper_parameters")
    holders = [checkpoint, *checkpoint.values()]
    if isinstance(hyper, Mapping):
        holders += list(hyper.values())
    for holder in holders:
        if isinstance(holder, Mapping) and holder.get("bands") is not None:
            return resolve_bands(list(holder["bands"]))
    return None


def _hf_cached_file(repo_id: str, filenames: Sequence[str], revision: str | None) -> str | None:
    """Path of the first of ``filenames`` already in the Hugging Face cache, else ``None``."""
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return found
    return None


def _torch_hub_cache_path(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _torch_hub_cached_file(url: str) -> str | None:
    path = _torch_hub_cache_path(url)
    return str(path) if path.is_file() else None


def _offline_requested() -> bool:
    """``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` set now or when huggingface_hub was imported."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return hf_constants.HF_HUB_OFFLINE or any(
        flag is not None and flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags
    )


def _require_reachable(url: str, what: str, cache_hint: str) -> None:
    """Fail fast (one TCP connect, 3 s at most) when ``url``'s host cannot be reached.

    Behind an HTTPS proxy a direct connect proves nothing, so the check is left to the download.
    """
    if _offline_requested():
        raise _unavailable(what, url, cache_hint, reason="offline mode (HF_HUB_OFFLINE) is set")
    proxies = getproxies()
    if "https" in proxies or "all" in proxies:
        return
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise _unavailable(what, url, cache_hint, reason=f"{host} cannot be reached") from error


def _unavailable(
    what: str, url: str, cache_hint: str, reason: str = "the download failed"
) -> PretrainedWeightsUnavailableError:
    return PretrainedWeightsUnavailableError(
        f"{what} are not cached and {reason}. Either download {url} on a machine with internet "
        f"and pass pretrained='file' with weights_path=<the downloaded file> (on the train.py "
        "command line: model.segmenter.pretrained=file model.segmenter.weights_path=<file>), "
        f"or fill {cache_hint}, or train from random init with pretrained='none'."
    )
