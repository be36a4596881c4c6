"""W&B logging of a composite's evidence: the comparison table, headline scalars and quicklooks.

The composite uses the training's ``logger`` config group (``conf/logger/``): ``logger=wandb``
gives a Lightning ``WandbLogger`` entry, which is instantiated here with the run's folder under
the composite's ``out_dir`` (``<out_dir>/wandb/``) and ``job_type=composite``. Like training, it
runs offline when :func:`cloudseg.training.wandb_offline` says so (no W&B key found, or
``WANDB_MODE=offline``); the ``wandb sync`` command to upload an offline run is logged and
returned. ``logger=null`` (the default) logs nothing.

What one run records: the resolved config; ``metrics`` (a ``wandb.Table``, one row per composite:
the main one, each baseline, the reference); the headline scalars as ``<composite>/<metric>``;
the quicklook PNGs as ``quicklooks/<name>`` images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # lightning and wandb load only when a logger is configured
    from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)

TABLE_KEY = "metrics"
IMAGE_PREFIX = "quicklooks"


def wandb_logger(
    logger_config: Mapping[str, Any] | None, out_dir: str | Path
) -> WandbLogger | None:
    """The configured ``WandbLogger`` (``None`` for ``logger=null``), offline when no key is found.

    Any other logger (e.g. ``logger=csv``) is a configuration error: the composite's evidence is
    a table and pictures, which only W&B takes; ``metrics.json``/``metrics.md`` hold it anyway.
    """
    entries = {name: entry for name, entry in (logger_config or {}).items() if entry}
    if not entries:
        return None
    from hydra.utils import instantiate

    from cloudseg.training import WANDB_LOGGER_TARGETS, wandb_offline

    others = [
        name for name, entry in entries.items() if entry.get("_target_") not in WANDB_LOGGER_TARGETS
    ]
    if others or len(entries) > 1:
        raise ValueError(
            f"The composite logs its evidence to W&B only, but the logger config holds "
            f"{sorted(entries)}; use logger=wandb or logger=null."
        )
    (entry,) = entries.values()
    offline = wandb_offline() or bool(entry.get("offline"))
    if offline:
        log.info("No W&B key found (or WANDB_MODE=offline): the composite's W&B run is offline.")
    return instantiate(
        dict(entry),
        save_dir=str(out_dir),
        job_type="composite",
        offline=offline,
        log_model=False,
    )


def metric_columns(table: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every metric name of ``table``, in first-seen order."""
    columns: dict[str, None] = {}
    for row in table.values():
        columns.update(dict.fromkeys(row))
    return list(columns)


def log_evidence(
    logger_config: Mapping[str, Any] | None,
    out_dir: str | Path,
    *,
    table: Mapping[str, Mapping[str, Any]],
    headline: Mapping[str, float],
    images: Mapping[str, str | Path],
    config: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Log the evidence to W&B (see the module docstring); returns the run's mode, folder, URL
    and (offline) its ``wandb sync`` command, or ``None`` when no logger is configured."""
    logger = wandb_logger(logger_config, out_dir)
    if logger is None:
        return None
    import wandb

    exit_code = 1
    try:
        logger.log_hyperparams(dict(config))
        columns = metric_columns(table)
        rows = [[name, *(row.get(column) for column in columns)] for name, row in table.items()]
        logger.log_table(TABLE_KEY, columns=["composite", *columns], data=rows)
        logger.log_metrics(dict(headline))
        for name, path in images.items():
            logger.log_image(f"{IMAGE_PREFIX}/{name}", images=[str(path)], caption=[name])
        run = logger.experiment
        run_dir = Path(run.dir).parent
        offline = bool(run.offline)
        info = {
            "mode": "offline" if offline else "online",
            "run_dir": str(run_dir),
            "url": None if offline else run.url,
            "sync_command": f"wandb sync {run_dir}" if offline else None,
        }
        exit_code = 0
    finally:
        wandb.finish(exit_code=exit_code)
    if info["sync_command"]:
        log.info("W&B run saved offline in %s. Upload it with: %s", run_dir, info["sync_command"])
    return info
