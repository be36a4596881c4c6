"""Composing conf/composite.yaml in a test folder, and a tiny checkpoint written through the
real task/checkpoint code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cloudseg.checkpoint import load_checkpoint
from cloudseg.task import CloudSegTask

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"


REAL_ITEM = "l2a-29RKH-20200219/item.json"


MODEL_BANDS = ["B02", "B03", "B04", "B08", "B11"]


def compose_composite(overrides: list[str], tmp_path: Path, folders: bool = True) -> DictConfig:
    """conf/composite.yaml with ``overrides``, its folders inside ``tmp_path`` (``folders``)."""
    inside = [
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"out_dir={tmp_path / 'out'}",
        "progress=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="composite",
            overrides=(inside if folders else []) + overrides,
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def tiny_checkpoint(path: Path, bands: Sequence[str] = MODEL_BANDS) -> Path:
    """A randomly initialised tiny-ViT checkpoint on ``bands``, as training writes it
    (state_dict + inference metadata)."""
    torch.manual_seed(0)
    bands = list(bands)
    task = CloudSegTask(
        {
            "backbone": "vit_tiny",
            "bands": bands,
            "head": "linear",
            "img_size": 32,
            "pretrained": "none",
            "drop_path_rate": 0.0,
        }
    )
    task.inference_metadata = {
        "bands": bands,
        "normalization": {"bands": bands, "mean": [0.3] * len(bands), "std": [0.1] * len(bands)},
        "classes": ["clear", "thick_cloud", "thin_cloud", "cloud_shadow"],
        "model_config": dict(task.model.config),
        "patch_size": 32,
    }
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    load_checkpoint(path)  # the real loader accepts it
    return path
