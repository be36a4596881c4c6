"""Load a trained cloud-mask checkpoint for inference: the model and what it needs to be fed.

A checkpoint written by ``CloudSegTask`` holds the Lightning ``state_dict`` (the segmenter under
``model.``) and a ``"cloudfree"`` entry: ``bands`` (input order), ``normalization``
(``{"bands", "mean", "std"}`` in reflectance units), ``classes``, ``model_config`` (the
``build_segmenter`` arguments) and ``patch_size``. ``load_checkpoint`` needs nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cloudseg.models import build_segmenter
from cloudseg.task import CHECKPOINT_FIELDS, CHECKPOINT_KEY

#: Prefix of the segmenter's weights in the task's state_dict (``CloudSegTask.model``).
MODEL_PREFIX = "model."


def read_checkpoint_metadata(path: str | os.PathLike, map_location: Any = "cpu") -> tuple:
    """``(checkpoint dict, inference metadata)`` of a cloudseg checkpoint, validated.

    Raises FileNotFoundError for a missing file and ValueError naming the file for one that is
    not a PyTorch checkpoint, or not one written by ``CloudSegTask``, or lacks a field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {path} does not exist. Pass the .ckpt a training run wrote "
            "(outputs/<task>/runs/<time>/checkpoints/best.ckpt, or its W&B artifact)."
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any unpickling failure: truncated, foreign format, random bytes
        raise ValueError(
            f"Checkpoint {path} could not be read as a PyTorch checkpoint ({type(err).__name__}: "
            f"{err}). The file is truncated, corrupt or not a checkpoint; copy it again or "
            "retrain."
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"{path} is not a Lightning checkpoint: no 'state_dict' (found {found}). Pass a "
            ".ckpt written by `python train.py`."
        )
    metadata = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(metadata, dict):
        raise ValueError(
            f"{path} has no {CHECKPOINT_KEY!r} entry (keys: {sorted(checkpoint)}): it was not "
            "written by cloudseg's CloudSegTask, so its bands, normalisation and model config are "
            "unknown. Use a checkpoint from `python train.py`."
        )
    missing = [name for name in CHECKPOINT_FIELDS if name not in metadata]
    if missing:
        raise ValueError(
            f"{path}: the {CHECKPOINT_KEY!r} entry lacks {missing} (has {sorted(metadata)}); "
            "the checkpoint is incomplete. Retrain, or add the fields with torch.load/torch.save."
        )
    return checkpoint, metadata


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """``(model in eval mode with the trained weights, metadata)`` from a cloudseg checkpoint.

    The model maps normalised images ``(B, len(meta["bands"]), H, W)`` to logits
    ``(B, len(meta["classes"]), H, W)``. It is rebuilt from ``meta["model_config"]`` without
    fetching pretrained weights (the checkpoint has all of them), and every tensor must load.
    """
    checkpoint, metadata = read_checkpoint_metadata(path, map_location)
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
            f"{path}: the weights do not fit the model rebuilt from its model_config "
            f"({len(state_dict)} tensors under {MODEL_PREFIX!r}; {problem}). The checkpoint and "
            "the installed cloudseg.models disagree; use the code version that trained it."
        )
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    return model.eval(), metadata
