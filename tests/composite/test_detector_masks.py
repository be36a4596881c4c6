"""ukis-csmask as a composite's mask source and baseline, on the real STAC item."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from cloudseg.inference.producers import build_producer
from composite.evidence.baselines import plan_baselines
from composite.masking import MaskSettings
from composite.stack import StackSettings, build_stack

REPO = Path(__file__).resolve().parents[2]
REAL_ITEM = "l2a-29RKH-20200219/item.json"


def test_ukis_masks_a_real_stack_end_to_end(realdata, tmp_path):
    item = realdata / REAL_ITEM
    command = [
        sys.executable, "composite.py", f"stack.source={item}", "masks.source=ukis",
        "+masks.producer_options.ukis.resolution=300", "composite.bands=[B02,B03,B04,B08]",
        "composite.window_size=600", f"out_dir={tmp_path / 'out'}",
        f"paths.log_dir={tmp_path / 'outputs'}", f"hydra.run.dir={tmp_path / 'hydra'}",
        "progress=false", "evaluation.baselines=[none]",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["masks"]["source"] == "ukis" and record["masks"]["computed"] == 1
    (mask_path,) = record["masks"]["paths"].values()
    with rasterio.open(mask_path) as dataset:
        mask = dataset.read(1)
    with rasterio.open(tmp_path / "out" / "count.tif") as dataset:
        count = dataset.read(1)
    stack = build_stack(StackSettings(source=str(item)), progress=False)
    with stack.scenes[0].open() as scene:
        expected = build_producer("ukis", resolution=300).predict(scene)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(count, (mask == 0).astype(np.uint16))  # clear views only
    assert 0 < (mask != 0).mean() < 0.5


def test_baselines_accept_ukis_and_skip_ocm_without_weights(realdata):
    stack = build_stack(StackSettings(source=str(realdata / REAL_ITEM)), progress=False)
    masks = MaskSettings(source="scl")
    planned, skipped = plan_baselines(("ukis", "ocm", "none"), masks, stack)
    assert set(planned) == {"ukis", "none"} and planned["ukis"].producer.name == "ukis"
    assert "ocm mask producer needs weights" in skipped["ocm"]
    with_weights = MaskSettings(source="scl", producer_options={"ukis": {"resolution": 60.0}})
    planned, _ = plan_baselines(("ukis",), with_weights, stack)
    assert planned["ukis"].producer.resolution == 60.0


def test_ocm_weights_come_from_the_composite_config(tmp_path):
    """masks.source=ocm +masks.producer_options.ocm.weights=...: the producer gets its weights
    (checked to exist before any work); without them the config names the option."""
    import pytest
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from composite.run import settings_from_config

    weights = tmp_path / "ocm.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 1)), str(weights))

    def settings(*overrides):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(
                config_name="composite",
                overrides=["stack.source=x", f"paths.log_dir={tmp_path}", *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra
        return settings_from_config(cfg)

    masks = settings("masks.source=ocm", f"+masks.producer_options.ocm.weights={weights}").masks
    assert masks.producer.name == "ocm" and masks.producer.weights == str(weights)
    with pytest.raises(ValueError, match="masks.source=ocm: .*masks.producer_options.ocm.weights"):
        settings("masks.source=ocm")
    with pytest.raises(ValueError, match="weights /nowhere/ocm do not exist"):
        settings("masks.source=ocm", "+masks.producer_options.ocm.weights=/nowhere/ocm")
