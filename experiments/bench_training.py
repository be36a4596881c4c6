"""Benchmark: training throughput (samples/s) of the ``demo`` and ``vit_b16`` experiments on CPU.

Composes the real ``conf/train.yaml`` with ``experiment=<name>`` (as ``python train.py`` does),
builds its datamodule on a small simulated labeled set written here
(:func:`cloudseg.data.simulate.write_labeled_set`, or ``--data-root``), its ``CloudSegTask`` and a
Lightning ``Trainer`` from its trainer config (validation, checkpoints and loggers off), and
runs ``--warmup + --steps`` training steps. Lightning's ``SimpleProfiler`` times, per step,

- ``train_dataloader_next``: waiting for the next batch from the DataLoader (data wait), and
- ``run_training_batch``: forward, loss, backward, gradient clipping and the optimizer step;

a callback stamps the end of every step, so the step time is the whole wall time between two
step ends (data wait + compute + Lightning's hooks and logging). The first ``--warmup`` steps
(DataLoader start, first allocations) are left out of every number.

``vit_b16`` runs with ``trainer=cpu`` (its experiment asks for a GPU with mixed precision),
``model.segmenter.pretrained=none`` (no weights can be downloaded here; speed does not depend on
the weights) and a smaller batch (``--vit-b16-batch-size``) so that it fits the time budget.
Writes ``experiments/training_benchmark.{md,json}`` (``--out``) from the measured numbers::

    .venv/bin/python experiments/bench_training.py
    .venv/bin/python experiments/bench_training.py --steps 5 --out /tmp/bench   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.profilers import SimpleProfiler
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
#: SimpleProfiler actions: waiting for a batch, and forward/backward/optimizer of one batch.
DATA_WAIT_ACTION = "[_TrainingEpochLoop].train_dataloader_next"
COMPUTE_ACTION = "run_training_batch"
#: Overrides that make each experiment run on this CPU-only machine without downloaded weights.
CPU_OVERRIDES: dict[str, list[str]] = {
    "demo": [],
    "vit_b16": ["trainer=cpu", "model.segmenter.pretrained=none"],
}
SIMULATED_SCENES = 12
SIMULATED_SIZE = 256


@dataclass
class ThroughputResult:
    """What one benchmarked experiment measured (times in seconds unless the name says ms)."""

    experiment: str
    overrides: list[str]
    backbone: str
    patch_size: int
    batch_size: int
    num_workers: int
    precision: str
    warmup_steps: int
    measured_steps: int
    wall_s: float
    samples_per_s: float
    step_ms: float
    step_ms_median: float
    data_wait_ms: float
    compute_ms: float
    data_wait_fraction: float
    compute_fraction: float
    load_average_before: list[float]
    load_average_after: list[float]


class StepEndTimer(Callback):
    """Stamps ``time.perf_counter()`` at the end of every training step and shows progress."""

    def __init__(self, total_steps: int, description: str) -> None:
        self.step_ends: list[float] = []
        self.progress = tqdm(total=total_steps, desc=description, unit="step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step_ends.append(time.perf_counter())
        self.progress.update()

    def on_train_end(self, trainer, pl_module) -> None:
        self.progress.close()


def compose_experiment(
    experiment: str, data_root: Path, output_dir: Path, overrides: Sequence[str] = ()
) -> DictConfig:
    """``conf/train.yaml`` with ``experiment=<experiment>``, data from ``data_root``, logger off,
    run folders under ``output_dir``, then ``overrides``; resolved (no Hydra runtime needed)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"experiment={experiment}",
                "logger=none",
                f"data.root={data_root}",
                f"paths.root_dir={REPO}",
                f"paths.log_dir={output_dir}",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
        )
    OmegaConf.resolve(cfg)
    return cfg


def measure_training(
    cfg: DictConfig, warmup_steps: int, measured_steps: int, name: str = "", overrides=()
) -> ThroughputResult:
    """Run ``warmup_steps + measured_steps`` training steps of the composed config ``cfg`` and
    time the measured ones (see the module docstring)."""
    if warmup_steps < 1 or measured_steps < 1:
        raise ValueError(
            f"warmup_steps ({warmup_steps}) and measured_steps ({measured_steps}) must be >= 1: "
            "the first step starts the DataLoader and is never measured."
        )
    total_steps = warmup_steps + measured_steps
    if cfg.data.train_chips_per_epoch < total_steps * cfg.data.batch_size:
        raise ValueError(
            f"data.train_chips_per_epoch={cfg.data.train_chips_per_epoch} gives fewer than the "
            f"{total_steps} steps of {cfg.data.batch_size} chips to time; raise it."
        )
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    task = instantiate(cfg.model)
    timer = StepEndTimer(total_steps, f"{name or cfg.task_name} training steps")
    # With a filename the profiler writes its report there instead of printing it.
    profiler = SimpleProfiler(dirpath=cfg.paths.output_dir, filename="profile")
    trainer: Trainer = instantiate(
        cfg.trainer,
        max_steps=total_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        profiler=profiler,
    )
    load_before = list(os.getloadavg())
    trainer.fit(task, datamodule=datamodule)
    load_after = list(os.getloadavg())

    waits = profiler.recorded_durations[DATA_WAIT_ACTION][warmup_steps:total_steps]
    computes = profiler.recorded_durations[COMPUTE_ACTION][warmup_steps:total_steps]
    ends = timer.step_ends
    if len(ends) != total_steps or len(waits) != measured_steps or len(computes) != measured_steps:
        raise RuntimeError(
            f"Expected {total_steps} steps but timed {len(ends)} step ends, "
            f"{len(waits) + warmup_steps} batch fetches and {len(computes) + warmup_steps} "
            "batches: did training stop early (too few chips per epoch)?"
        )
    step_durations = [
        later - earlier
        for earlier, later in zip(ends[warmup_steps - 1 : -1], ends[warmup_steps:], strict=True)
    ]
    wall = ends[-1] - ends[warmup_steps - 1]
    batch_size = int(cfg.data.batch_size)
    return ThroughputResult(
        experiment=name or str(cfg.task_name),
        overrides=list(overrides),
        backbone=str(cfg.model.segmenter.backbone),
        patch_size=int(cfg.data.patch_size),
        batch_size=batch_size,
        num_workers=int(cfg.data.num_workers),
        precision=str(cfg.trainer.precision),
        warmup_steps=warmup_steps,
        measured_steps=measured_steps,
        wall_s=wall,
        samples_per_s=batch_size * measured_steps / wall,
        step_ms=1000 * wall / measured_steps,
        step_ms_median=1000 * statistics.median(step_durations),
        data_wait_ms=1000 * sum(waits) / measured_steps,
        compute_ms=1000 * sum(computes) / measured_steps,
        data_wait_fraction=sum(waits) / wall,
        compute_fraction=sum(computes) / wall,
        load_average_before=load_before,
        load_average_after=load_after,
    )


def benchmark_experiment(
    experiment: str,
    data_root: Path,
    work_dir: Path,
    warmup_steps: int,
    measured_steps: int,
    extra_overrides: Sequence[str] = (),
) -> ThroughputResult:
    """Compose ``experiment`` with its CPU overrides and ``extra_overrides`` and measure it."""
    overrides = [*CPU_OVERRIDES.get(experiment, []), *extra_overrides]
    probe = compose_experiment(experiment, data_root, work_dir / experiment, overrides)
    chips = int(probe.data.batch_size) * (warmup_steps + measured_steps)
    overrides.append(f"data.train_chips_per_epoch={max(chips, probe.data.batch_size)}")
    cfg = compose_experiment(experiment, data_root, work_dir / experiment, overrides)
    return measure_training(cfg, warmup_steps, measured_steps, experiment, overrides)


# -- the record ----------------------------------------------------------------------------------

TABLE_COLUMNS = (
    ("experiment", "experiment", "{}"),
    ("samples/s", "samples_per_s", "{:.2f}"),
    ("step ms (mean)", "step_ms", "{:.0f}"),
    ("step ms (median)", "step_ms_median", "{:.0f}"),
    ("data wait ms", "data_wait_ms", "{:.1f}"),
    ("compute ms", "compute_ms", "{:.0f}"),
    ("data-wait fraction", "data_wait_fraction", "{:.3f}"),
    ("batch", "batch_size", "{}"),
    ("patch px", "patch_size", "{}"),
    ("workers", "num_workers", "{}"),
)


def results_table(results: Sequence[ThroughputResult]) -> str:
    """A markdown table of the headline numbers, one row per experiment."""
    header = "| " + " | ".join(title for title, _, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    rows = [
        "| " + " | ".join(fmt.format(getattr(r, key)) for _, key, fmt in TABLE_COLUMNS) + " |"
        for r in results
    ]
    return "\n".join([header, rule, *rows])


def machine_info() -> dict[str, Any]:
    """CPU, threads and library versions of this run."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
    }


def write_record(
    results: Sequence[ThroughputResult], setup: dict[str, Any], out: Path
) -> tuple[Path, Path]:
    """Write ``<out>.json`` (every number) and ``<out>.md`` (table + how it was measured)."""
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    json_path.write_text(
        json.dumps({"setup": setup, "results": [asdict(r) for r in results]}, indent=2) + "\n"
    )
    machine = setup["machine"]
    loads = "\n".join(
        f"  - `{r.experiment}`: {', '.join(f'{v:.2f}' for v in r.load_average_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in r.load_average_after)} after"
        for r in results
    )
    overrides = "\n".join(
        f"  - `{r.experiment}`: `{' '.join(r.overrides) or '(none)'}` ({r.backbone}, "
        f"{r.precision}, {r.warmup_steps} warm-up + {r.measured_steps} measured steps)"
        for r in results
    )
    md_path.write_text(
        f"""# Training throughput on CPU

Written by `{setup["command"]}` on {setup["date"]}; every number below comes from
`{json_path.name}`.

{results_table(results)}

- **samples/s**: batch size x measured steps / wall time from the end of the last warm-up step
  to the end of the last step. **step ms**: that wall time per step (mean; median of the steps).
- **data wait**: Lightning's `SimpleProfiler` time in `train_dataloader_next` (waiting for the
  next batch from the DataLoader: reading chips, normalisation, augmentation, collation when
  `workers` is 0); **data-wait fraction** = total data wait / wall time.
- **compute**: `SimpleProfiler` time in `run_training_batch` (forward, loss, backward, gradient
  clipping, AdamW step, LR schedule). The rest of a step is Lightning's hooks and logging.
- With `workers` > 0 the chips are prepared in DataLoader worker processes while the model
  computes: the data wait then only shows what they could not prepare in time, and their CPU
  use shows up as slower compute when they share the same cores.

## Setup

- Configs: `conf/train.yaml` with `experiment=<name> logger=none`, composed with Hydra; trainer
  from the experiment's trainer config with validation, checkpoints and loggers turned off.
  Extra overrides per experiment:
{overrides}
- `vit_b16` runs **without pretrained weights** (`model.segmenter.pretrained=none`): none can be
  downloaded here, and step time does not depend on the weights. It runs on the CPU trainer in
  float32 (the experiment itself targets one GPU with `16-mixed`) with a batch of
  {setup["vit_b16_batch_size"]} instead of 8 to fit the time budget.
- Data: {setup["data"]}.
- Machine: {machine["cpu_count"]} CPUs visible, torch {machine["torch"]} with
  {machine["torch_threads"]} threads, Lightning {machine["lightning"]}, Python
  {machine["python"]}, {machine["platform"]}. The CPUs are shared with other jobs; load average
  (1, 5, 15 min) around each run:
{loads}
"""
    )
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["demo", "vit_b16"])
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured first steps")
    parser.add_argument("--steps", type=int, default=30, help="measured steps (demo)")
    parser.add_argument("--vit-b16-steps", type=int, default=6, help="measured steps (vit_b16)")
    parser.add_argument("--vit-b16-batch-size", type=int, default=2)
    parser.add_argument(
        "--data-root", type=Path, help="a labeled dataset folder (default: simulate one)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "experiments" / "training_benchmark",
        help="record path without suffix: writes .md and .json",
    )  # fmt: skip
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        work_dir = Path(tmp)
        if args.data_root is None:
            from cloudseg.data.simulate import write_labeled_set

            data_root = work_dir / "labeled"
            write_labeled_set(data_root, n_scenes=SIMULATED_SCENES, size=SIMULATED_SIZE, seed=0)
            data_description = (
                f"{SIMULATED_SCENES} simulated labeled scenes of {SIMULATED_SIZE} px "
                "(`write_labeled_set(seed=0)`, splits assigned by site), written to a temporary "
                "folder"
            )
        else:
            data_root = args.data_root
            data_description = f"the labeled dataset at `{data_root}`"
        results = []
        for experiment in args.experiments:
            is_vit_b16 = experiment == "vit_b16"
            results.append(
                benchmark_experiment(
                    experiment,
                    data_root,
                    work_dir,
                    args.warmup,
                    args.vit_b16_steps if is_vit_b16 else args.steps,
                    [f"data.batch_size={args.vit_b16_batch_size}"] if is_vit_b16 else [],
                )
            )
    print(results_table(results))
    setup = {
        "command": " ".join([".venv/bin/python", "experiments/bench_training.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": data_description,
        "vit_b16_batch_size": args.vit_b16_batch_size,
        "machine": machine_info(),
    }
    json_path, md_path = write_record(results, setup, args.out)
    print(f"Wrote {md_path} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
