"""W&B goes offline by itself without a key, and uploads checkpoints only when online."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from cloudseg.training import instantiate_loggers, wandb_credentials_found, wandb_offline

WANDB_LOGGER = {
    "wandb": {
        "_target_": "lightning.pytorch.loggers.WandbLogger",
        "project": "cloudfree-test",
        "offline": False,
        "log_model": True,
    }
}


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No key in the environment and an empty home: nothing for wandb to find."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path


def test_offline_without_any_key(no_credentials):
    assert not wandb_credentials_found()
    assert wandb_offline()
    (logger,) = instantiate_loggers(OmegaConf.create(WANDB_LOGGER))
    assert logger._offline is True and logger._log_model is False


def test_online_with_a_key_in_the_environment(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_credentials_found() and not wandb_offline()
    (logger,) = instantiate_loggers(OmegaConf.create(WANDB_LOGGER))
    assert logger._offline is False and logger._log_model is True


def test_online_with_a_netrc_entry_for_the_wandb_host(no_credentials, monkeypatch):
    netrc = no_credentials / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_credentials_found()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not wandb_credentials_found()  # the key is for another host


@pytest.mark.parametrize(
    ("mode", "offline"), [("offline", True), ("disabled", True), ("online", False)]
)
def test_wandb_mode_decides_when_set(no_credentials, monkeypatch, mode, offline):
    monkeypatch.setenv("WANDB_MODE", mode)
    assert wandb_offline() is offline


def test_other_loggers_are_left_alone(no_credentials, tmp_path):
    cfg = OmegaConf.create(
        {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": str(tmp_path)}}
    )
    (logger,) = instantiate_loggers(cfg)
    assert type(logger).__name__ == "CSVLogger"
    assert instantiate_loggers(OmegaConf.create({})) == []
