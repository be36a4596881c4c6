"""The training commands the README and conf/README.md show: GPU/DDP trainer options, resuming
a run from its last checkpoint and W&B id, the sweep, the monitored metric."""

from __future__ import annotations

import inspect
import json
import struct
from pathlib import Path

import pytest
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch import Trainer
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2 as pb

from cloudseg.training import train
from helpers.configs import compose_resolved
from helpers.training import (
    TINY_SHRINK,
    compose_train,
    parse_wandb_log,
    read_wandb_records,
    wandb_history,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer=gpu"], {"accelerator": "gpu", "devices": 1, "precision": "16-mixed"}),
        (
            ["trainer=ddp", "trainer.devices=4"],
            {"strategy": "ddp", "accelerator": "gpu", "devices": 4, "sync_batchnorm": True},
        ),
    ],
)
def test_gpu_and_ddp_trainers_compose_to_lightning_arguments(overrides, expected):
    """No GPU here: the options compose to Trainer arguments Lightning knows, and the same
    arguments on CPU (4 processes for DDP) build a Trainer with the expected strategy."""
    cfg = compose_resolved(["experiment=vit_b16", *overrides, "paths.output_dir=/runs/one"])
    arguments = OmegaConf.to_container(cfg.trainer)
    del arguments["_target_"]
    assert {key: arguments[key] for key in expected} == expected
    assert set(arguments) <= set(inspect.signature(Trainer.__init__).parameters)
    on_cpu = {**arguments, "accelerator": "cpu", "precision": "32-true", "logger": False}
    trainer = Trainer(**on_cpu, enable_checkpointing=False, enable_progress_bar=False)
    assert type(trainer.strategy).__name__ == (
        "DDPStrategy" if "strategy" in expected else "SingleDeviceStrategy"
    )
    assert trainer.num_devices == expected["devices"]


#: `experiment=demo debug=limit` (2 epochs) shrunk to the tiny set.
TWO_EPOCHS = ["experiment=demo", "debug=limit", *TINY_SHRINK]


@pytest.fixture(scope="module")
def two_epoch_run(tiny_dataset, tmp_path_factory) -> dict:
    """metrics.json of a 2-epoch run on the tiny set, logged to an offline W&B run."""
    folder = tmp_path_factory.mktemp("two_epochs")
    train(compose_train([*TWO_EPOCHS, f"data.root={tiny_dataset}"], folder))
    return json.loads((folder / "metrics.json").read_text())


def test_resume_a_run_from_its_last_checkpoint_and_wandb_id(
    two_epoch_run,
    tiny_dataset,
    tmp_path,
):
    """`ckpt_path=<last.ckpt> logger.wandb.id=<run id>` with a third epoch: training goes on
    from the checkpoint's epoch (not from scratch) and logs to the same W&B run."""
    run_id = Path(two_epoch_run["wandb"]["run_dir"]).name.rpartition("-")[2]
    last = two_epoch_run["last_checkpoint"]
    resume = [f"ckpt_path={last}", f"logger.wandb.id={run_id}", "trainer.max_epochs=3"]
    train(compose_train([*TWO_EPOCHS, f"data.root={tiny_dataset}", *resume], tmp_path))
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    run_dir = Path(resumed["wandb"]["run_dir"])
    assert run_dir.name.endswith(f"-{run_id}")
    history = wandb_history(read_wandb_records(run_dir))
    saved_epoch = torch.load(last, weights_only=False)["epoch"]
    assert len(history["train/loss_epoch"]) == 3 - (saved_epoch + 1)  # the epochs after it


def test_last_checkpoint_holds_the_last_epoch(two_epoch_run):
    checkpoint = torch.load(two_epoch_run["last_checkpoint"], weights_only=False)
    assert checkpoint["epoch"] == 1  # the second of two epochs, what a resume continues from


def test_readme_sweep_expands_to_six_composable_jobs():
    readme = (REPO / "conf" / "README.md").read_text()
    (command,) = [c for c in readme.splitlines() if c.startswith("python train.py -m ")]
    overrides = OverridesParser.create().parse_overrides(command.split()[3:])
    (jobs,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    values = set()
    for job in jobs:
        cfg = compose_resolved(job)
        assert cfg.task_name == "vit_s16_ssl4eo"
        values.add((cfg.model.lr, cfg.model.layer_decay))
    assert values == {(lr, decay) for lr in (5e-5, 1e-4, 2e-4) for decay in (0.65, 0.75)}


def test_monitor_metric_override_moves_the_checkpoint_monitor():
    cfg = compose_resolved(["monitor.metric=val/miou"])
    assert cfg.callbacks.model_checkpoint.monitor == "val/miou"
    assert cfg.callbacks.model_checkpoint.mode == "max"


def test_a_wandb_log_read_mid_write_yields_its_whole_records():
    """The offline log is read while wandb-core may still append to it: a record cut off at the
    end of the file is left for the next read instead of failing to parse."""

    def chunk(record: pb.Record) -> bytes:
        payload = record.SerializeToString()
        return struct.pack("<IHB", 0, len(payload), 1) + payload

    first, second = pb.Record(), pb.Record()
    first.history.item.add(key="epoch", value_json="1")
    second.history.item.add(key="epoch", value_json="2")
    log = struct.pack("<4sHB", b":W&B", 0xBEE1, 0) + chunk(first) + chunk(second)
    assert len(parse_wandb_log(log)) == 2
    (whole,) = parse_wandb_log(log[:-3])
    assert whole.history.item[0].value_json == "1"
