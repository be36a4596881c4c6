"""Load a trained cloud-mask checkpoint for inference: the model and what it needs to be fed.

A checkpoint written by ``CloudSegTask`` holds the Lightning ``state_dict`` (the segmenter under
``model.``) and a ``"cloudfree"`` entry: ``bands`` (input order), ``normalization``
(``{"bands", "mean", "std"}`` in reflectance units), ``classes``, ``model_config`` (the
``build_segmenter`` arguments) and ``patch_size``. ``load_checkpoint`` needs nothing else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cloudseg.models import build_segmenter
from cloudseg.task import CHECKPOINT_FIELDS, CHECKPOINT_KEY

#: Prefix of the segmenter's weights in the task's state_dict (``CloudSegTask.model``).
MODEL_PREFIX = "model."


#: Where training writes checkpoints and which to pass where, for messages.
TRAINING_CHECKPOINTS = (
    "outputs/train/runs/<time>/checkpoints/: its last.ckpt resumes training, its best "
    "checkpoint makes masks"
)
#: File signatures of things often passed by mistake, for messages.
_SIGNATURES = (
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "a TIFF raster (a scene or mask?)"),
    ((b"\x00\x00\x00\x0cjP",), "a JPEG 2000 raster (a band file?)"),
    ((b"{", b"["), "a JSON file"),
    (
        (b"PK\x03\x04",),
        "a damaged or truncated checkpoint archive (copied or written only in part?)",
    ),
)


def require_checkpoint_file(path: str | os.PathLike, key: str = "ckpt") -> Path:
    """``path`` as a Path if it is a file; else an error naming ``key=path`` and what to pass.

    A folder gets IsADirectoryError listing the ``.ckpt`` files in it; a missing path
    FileNotFoundError.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.ckpt"))[:5]
        inside = (
            f"It holds {found}: pass one of them, e.g. {key}={path / found[0]} "
            f"({TRAINING_CHECKPOINTS})."
            if found
            else f"It holds no .ckpt file; training writes them to {TRAINING_CHECKPOINTS}."
        )
        raise IsADirectoryError(f"{key}={path} is a folder, not a checkpoint file. {inside}")
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={path} does not exist. Pass a .ckpt a training run wrote "
            f"({TRAINING_CHECKPOINTS}), or its W&B artifact."
        )
    return path


def load_torch_checkpoint(
    path: str | os.PathLike, key: str = "ckpt", map_location: Any = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """``torch.load`` of a checkpoint file (tensors and plain values only, as Lightning loads
    it); any failure becomes a ValueError naming ``key=path``, what the file looks like and the
    fix. ``mmap`` maps tensors instead of reading them (a cheap check of a large file)."""
    path = require_checkpoint_file(path, key)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated, foreign format, random bytes, pickled objects
        raise ValueError(
            f"{key}={path} is not a readable PyTorch checkpoint: it looks like "
            f"{_looks_like(path, err)}. Pass a .ckpt a training run wrote ({TRAINING_CHECKPOINTS}); "
            "if this is one, copy it again whole."
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{key}={path} holds a {type(checkpoint).__name__}, not a checkpoint dict. Pass a "
            f".ckpt a training run wrote ({TRAINING_CHECKPOINTS})."
        )
    return checkpoint


def _looks_like(path: Path, err: Exception) -> str:
    """What a file that torch cannot load seems to be (never torch's weights_only advice)."""
    with open(path, "rb") as file:
        head = file.read(16)
    if not head:
        return "an empty file"
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if refused:
        return (
            f"a pickle of Python objects ({refused.group(1)}), which a cloudseg checkpoint never "
            "holds"
        )
    for signatures, kind in _SIGNATURES:
        if head.startswith(signatures):
            return kind
    if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in head):
        return "a text file"
    return f"something else ({type(err).__name__})"


def read_checkpoint_metadata(
    path: str | os.PathLike, map_location: Any = "cpu", key: str = "ckpt"
) -> tuple:
    """``(checkpoint dict, inference metadata)`` of a cloudseg checkpoint, validated.

    Raises FileNotFoundError for a missing file, IsADirectoryError for a folder and ValueError
    naming ``key=path`` for a file that is not a PyTorch checkpoint, or not one written by
    ``CloudSegTask``, or lacks a field.
    """
    checkpoint = load_torch_checkpoint(path, key, map_location)
    if "state_dict" not in checkpoint:
        raise ValueError(
            f"{key}={path} is not a Lightning checkpoint: no 'state_dict' (found "
            f"{sorted(checkpoint)}). Pass a .ckpt written by `python train.py`."
        )
    metadata = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{key}={path} has no {CHECKPOINT_KEY!r} entry (keys: {sorted(checkpoint)}): it was not "
            "written by cloudseg's CloudSegTask, so its bands, normalisation and model config are "
            "unknown. Use a checkpoint from `python train.py`."
        )
    missing = [name for name in CHECKPOINT_FIELDS if name not in metadata]
    if missing:
        raise ValueError(
            f"{key}={path}: the {CHECKPOINT_KEY!r} entry lacks {missing} (has {sorted(metadata)}); "
            "the checkpoint is incomplete. Retrain, or add the fields with torch.load/torch.save."
        )
    return checkpoint, metadata


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", key: str = "ckpt"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode with the trained weights, metadata)`` from a cloudseg checkpoint.

    The model maps normalised images ``(B, len(meta["bands"]), H, W)`` to logits
    ``(B, len(meta["classes"]), H, W)``. It is rebuilt from ``meta["model_config"]`` without
    fetching pretrained weights (the checkpoint has all of them), and every tensor must load.
    """
    checkpoint, metadata = read_checkpoint_metadata(path, map_location, key)
    # The checkpoint holds every weight: never fetch pretrained ones for the rebuild.
    config = {**metadata["model_config"], "pretrained": "none", "weights_path": None}
    model = build_segmenter(**config)
    state_dict = {
        key[len(MODEL_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(MODEL_PREFIX)
    }
    try:
        result = model.load_state_dict(state_dict, strict=False)
        problem = (
            f"missing {list(result.missing_keys)[:10]}, unexpected "
            f"{list(result.unexpected_keys)[:10]}"
            if result.missing_keys or result.unexpected_keys or not state_dict
            else ""
        )
    except RuntimeError as err:  # shape mismatches
        problem = str(err).strip()
    if problem:
        raise ValueError(
            f"{key}={path}: the weights do not fit the model rebuilt from its model_config "
            f"({len(state_dict)} tensors under {MODEL_PREFIX!r}; {problem}). The checkpoint and "
            "the installed cloudseg.models disagree; use the code version that trained it."
        )
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    return model.eval(), metadata
