"""What ``train.py`` runs: fit, test the best checkpoint, write the metrics JSON, return the score.

``train(cfg)`` takes the composed Hydra config of ``conf/train.yaml`` (groups ``data``, ``model``,
``trainer``, ``logger``, ``callbacks``, ``paths``, ``debug``, ``experiment``) and returns the
best value of ``cfg.monitor.metric`` on validation (what Hydra sweepers and W&B sweeps optimise).

W&B: a ``WandbLogger`` runs offline when no API key is found (``WANDB_API_KEY``, an identity
token file, or a ``~/.netrc`` entry for the W&B host) or when ``WANDB_MODE`` says so; then it
does not upload checkpoints, and the ``wandb sync`` command to upload the run later is printed
and written to the metrics JSON. ``wandb.finish()`` runs whatever happens.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lightning.pytorch as pl
import wandb
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from cloudseg.callbacks import ConfusionMatrixLogger
from cloudseg.checkpoint import load_torch_checkpoint
from cloudseg.labels import CLASS_NAMES
from cloudseg.sentinel2.cog import atomic_path

log = logging.getLogger(__name__)

WANDB_LOGGER_TARGETS = (
    "lightning.pytorch.loggers.WandbLogger",
    "lightning.pytorch.loggers.wandb.WandbLogger",
)
METRICS_FILENAME = "metrics.json"
#: What a Lightning checkpoint needs to resume a fit (``ckpt_path``), besides the weights.
RESUME_KEYS: tuple[str, ...] = ("state_dict", "optimizer_states", "loops", "epoch")


def wandb_credentials_found() -> bool:
    """Whether wandb would find a key: env ``WANDB_API_KEY`` / ``WANDB_IDENTITY_TOKEN_FILE`` or a
    netrc entry (``$NETRC`` or ``~/.netrc``) for the host of ``WANDB_BASE_URL``."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    netrc_path = Path(os.environ.get("NETRC", "~/.netrc")).expanduser()
    if not netrc_path.is_file():
        return False
    try:
        return netrc.netrc(netrc_path).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError) as err:
        log.warning("Cannot read %s (%s); W&B runs offline.", netrc_path, err)
        return False


def wandb_offline() -> bool:
    """Offline when ``WANDB_MODE`` is offline/dryrun/disabled, or unset and no key is found."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    return not wandb_credentials_found()


def instantiate_callbacks(callbacks_cfg: DictConfig | None) -> list[Callback]:
    """Every ``_target_`` entry of the ``callbacks`` group (a mapping name -> config)."""
    if not callbacks_cfg:
        return []
    return [instantiate(entry) for entry in callbacks_cfg.values() if entry]


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Logger]:
    """Every logger of the ``logger`` group; a WandbLogger goes offline as ``wandb_offline()``."""
    if not logger_cfg:
        return []
    loggers: list[Logger] = []
    for name, entry in logger_cfg.items():
        if not entry:
            continue
        if entry.get("_target_") in WANDB_LOGGER_TARGETS and wandb_offline():
            log.info("No W&B key found (or WANDB_MODE=offline): logger %r runs offline.", name)
            loggers.append(instantiate(entry, offline=True, log_model=False))
        else:
            loggers.append(instantiate(entry))
    return loggers


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, write ``<paths.output_dir>/metrics.json``; return the best
    validation value of ``cfg.monitor.metric`` (None when it was never computed)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("ckpt_path"):
        check_resume_checkpoint(cfg.ckpt_path)

    datamodule = instantiate(cfg.data)
    task = instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    failed = True
    try:
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        fit_metrics = scalar_metrics(trainer.callback_metrics)
        # Read before testing: trainer.test(ckpt_path=...) restores the callback's state as it
        # was when that checkpoint was written.
        checkpoint = find_model_checkpoint(trainer)
        best_path = checkpoint.best_model_path if checkpoint is not None else ""
        last_path = find_last_checkpoint_path(trainer)
        score = optimized_score(cfg.monitor.metric, checkpoint, fit_metrics)
        if not best_path:
            log.warning("No best checkpoint was saved (fast_dev_run?); testing the final weights.")
        trainer.test(task, datamodule=datamodule, ckpt_path=best_path or None)
        test_metrics = scalar_metrics(trainer.callback_metrics)
        report = {
            "monitor": cfg.monitor.metric,
            "mode": cfg.monitor.mode,
            "best_score": score,
            "best_checkpoint": best_path or None,
            "last_checkpoint": last_path or None,
            "tested_checkpoint": best_path or "final weights",
            "fit": fit_metrics,
            "test": {k: v for k, v in test_metrics.items() if k.startswith("test/")},
            "test_confusion_matrix": test_confusion_matrix(trainer),
            "wandb": wandb_run_info(trainer),
        }
        path = write_metrics_json(report, output_dir / METRICS_FILENAME)
        log.info("Metrics written to %s; best %s = %s", path, cfg.monitor.metric, score)
        failed = False
        return score
    finally:
        finish_wandb(trainer, exit_code=1 if failed else 0)


def check_resume_checkpoint(path: str) -> None:
    """Raise, naming ``ckpt_path``, unless ``path`` is a whole Lightning checkpoint that can
    resume a fit (read with tensors memory-mapped, before any data or model is built)."""
    checkpoint = load_torch_checkpoint(path, "ckpt_path", mmap=True)
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(
            f"ckpt_path={path} cannot resume training: it lacks {missing} (it holds "
            f"{sorted(checkpoint)}), so it is not a checkpoint Lightning wrote during a fit. "
            "Resume from the run's checkpoints/last.ckpt, or drop ckpt_path to train from scratch."
        )


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Logged metrics as plain floats (tensors and numbers; others are dropped), sorted."""
    values = {}
    for name, value in metrics.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            continue
    return dict(sorted(values.items()))


def find_model_checkpoint(trainer: Trainer) -> ModelCheckpoint | None:
    """The first ModelCheckpoint that monitors a metric (the best-model keeper), or None."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is not None:
            return callback
    return None


def find_last_checkpoint_path(trainer: Trainer) -> str:
    """The latest checkpoint written by a ModelCheckpoint that monitors nothing (``last.ckpt``),
    else a ``save_last`` copy of the best-model keeper, else ``""``."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None:
            return callback.best_model_path
    checkpoint = find_model_checkpoint(trainer)
    return checkpoint.last_model_path if checkpoint is not None else ""


def optimized_score(
    metric: str, checkpoint: ModelCheckpoint | None, fit_metrics: Mapping[str, float]
) -> float | None:
    """The best value the checkpoint callback saw for ``metric``, else its last logged value."""
    if (
        checkpoint is not None
        and checkpoint.monitor == metric
        and checkpoint.best_model_score is not None
    ):
        return float(checkpoint.best_model_score)
    value = fit_metrics.get(metric)
    if value is None:
        log.warning(
            "The optimised metric %r was never logged; logged metrics: %s.",
            metric,
            sorted(fit_metrics),
        )
    return value


def test_confusion_matrix(trainer: Trainer) -> dict[str, Any] | None:
    """The test pixel confusion matrix counted by ConfusionMatrixLogger, if it ran."""
    for callback in trainer.callbacks:
        if isinstance(callback, ConfusionMatrixLogger) and "test" in callback.counts:
            return {
                "classes": list(CLASS_NAMES),
                "rows": "true class",
                "columns": "predicted class",
                "counts": callback.counts["test"],
            }
    return None


def wandb_run_info(trainer: Trainer) -> dict[str, Any] | None:
    """Mode, run directory and (offline) the ``wandb sync`` command of the W&B run, if any."""
    if wandb.run is None or not any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        return None
    run_dir = Path(wandb.run.dir).parent
    offline = bool(wandb.run.offline)
    return {
        "mode": "offline" if offline else "online",
        "run_dir": str(run_dir),
        "url": None if offline else wandb.run.url,
        "sync_command": f"wandb sync {run_dir}" if offline else None,
    }


def finish_wandb(trainer: Trainer, exit_code: int = 0) -> None:
    """Close the W&B run (if one started; marked failed for a non-zero ``exit_code``) and print
    how to upload it when it ran offline."""
    info = wandb_run_info(trainer)
    wandb.finish(exit_code=exit_code)
    if info and info["sync_command"]:
        print(
            f"W&B run saved offline in {info['run_dir']}. Upload it with:\n  {info['sync_command']}"
        )


def write_metrics_json(report: Mapping[str, Any], path: Path) -> Path:
    """Write ``report`` as indented JSON, atomically; NaN/inf become null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [clean(item) for item in value]
        return value

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(clean(report), indent=2) + "\n")
    return path
