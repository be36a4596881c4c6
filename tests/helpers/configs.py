"""train.yaml composed with every interpolation resolved."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"


def compose_resolved(overrides: list[str]) -> DictConfig:
    """train.yaml with ``overrides``, every interpolation resolved (Hydra's runtime set)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
