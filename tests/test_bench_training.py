"""experiments/bench_training.py: its measuring function on the tiny dataset of test_train.py,
a slow dataset showing up as data wait, its argument checks, and the record it writes."""

from __future__ import annotations

import json
import time

import pytest

from cloudseg.data.dataset import RandomChipDataset
from helpers.training import TINY_SHRINK

WARMUP, STEPS, BATCH = 1, 3, 2
SMOKE_OVERRIDES = [*TINY_SHRINK, f"data.train_chips_per_epoch={(WARMUP + STEPS) * BATCH}"]


@pytest.fixture(scope="module")
def bench(load_experiment):
    return load_experiment("bench_training")


def test_measures_the_demo_steps_consistently(bench, tiny_dataset, tmp_path):
    cfg = bench.compose_experiment("demo", tiny_dataset, tmp_path, SMOKE_OVERRIDES)
    assert cfg.data.batch_size == BATCH and cfg.model.segmenter.backbone == "vit_tiny"
    result = bench.measure_training(cfg, WARMUP, STEPS, "demo", SMOKE_OVERRIDES)

    assert (result.experiment, result.measured_steps, result.batch_size) == ("demo", STEPS, BATCH)
    assert result.samples_per_s == pytest.approx(BATCH * STEPS / result.wall_s)
    assert result.step_ms == pytest.approx(1000 * result.wall_s / STEPS)
    assert result.compute_ms > 0 and result.data_wait_ms > 0
    assert 0 < result.data_wait_fraction < 1 and 0 < result.compute_fraction < 1
    # data wait and compute are disjoint parts of the measured wall time
    assert result.data_wait_fraction + result.compute_fraction <= 1
    assert len(result.load_average_before) == 3


def test_a_slow_dataset_shows_up_as_data_wait(bench, tiny_dataset, tmp_path, monkeypatch):
    delay_s = 0.1
    get_chip = RandomChipDataset.__getitem__

    def slow_get_chip(self, index):
        time.sleep(delay_s)
        return get_chip(self, index)

    monkeypatch.setattr(RandomChipDataset, "__getitem__", slow_get_chip)
    cfg = bench.compose_experiment("demo", tiny_dataset, tmp_path, SMOKE_OVERRIDES)
    result = bench.measure_training(cfg, WARMUP, STEPS)
    assert result.data_wait_ms >= 1000 * delay_s * BATCH  # every chip of a batch sleeps
    assert result.data_wait_fraction * result.wall_s >= delay_s * BATCH * STEPS


def test_refuses_runs_it_cannot_time(bench, tiny_dataset, tmp_path):
    cfg = bench.compose_experiment("demo", tiny_dataset, tmp_path, SMOKE_OVERRIDES)
    with pytest.raises(ValueError, match="must be >= 1"):
        bench.measure_training(cfg, 0, STEPS)
    with pytest.raises(ValueError, match="train_chips_per_epoch=8 gives fewer than the 5 steps"):
        bench.measure_training(cfg, WARMUP, STEPS + 1)


def test_record_holds_the_measured_numbers(bench, tmp_path):
    result = bench.ThroughputResult(
        experiment="demo",
        overrides=["data.batch_size=2"],
        backbone="vit_tiny",
        patch_size=64,
        batch_size=2,
        num_workers=0,
        precision="32-true",
        warmup_steps=1,
        measured_steps=4,
        wall_s=2.0,
        samples_per_s=4.0,
        step_ms=500.0,
        step_ms_median=480.0,
        data_wait_ms=50.0,
        compute_ms=430.0,
        data_wait_fraction=0.1,
        compute_fraction=0.86,
        load_average_before=[1.5, 1.0, 0.5],
        load_average_after=[2.0, 1.0, 0.5],
    )
    setup = {
        "command": "bench",
        "date": "today",
        "data": "tiny",
        "vit_b16_batch_size": 2,
        "machine": bench.machine_info(),
    }
    json_path, md_path = bench.write_record([result], setup, tmp_path / "record")
    assert json.loads(json_path.read_text())["results"][0]["samples_per_s"] == 4.0
    text = md_path.read_text()
    assert "| demo | 4.00 | 500 | 480 | 50.0 | 430 | 0.100 | 2 | 64 | 0 |" in text
    assert "1.50, 1.00, 0.50 before, 2.00, 1.00, 0.50 after" in text
