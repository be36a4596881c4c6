"""A tiny labeled dataset written here, train.yaml composed into a test folder, and reading back
what an offline W&B run recorded."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
from affine import Affine
from google.protobuf.message import DecodeError
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from wandb.proto import wandb_internal_pb2 as pb

from cloudseg.data.manifest import DatasetWriter
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"


#: Rough TOA reflectance per class for the 13 L1C bands (B01..B12), after ../shared/SENTINEL2.md.
CLASS_SPECTRA = np.array(
    [
        [0.08, 0.07, 0.07, 0.04, 0.10, 0.22, 0.28, 0.30, 0.31, 0.10, 0.005, 0.17, 0.08],  # clear
        [0.65, 0.70, 0.70, 0.70, 0.68, 0.66, 0.65, 0.65, 0.64, 0.30, 0.15, 0.50, 0.38],  # thick
        [0.20, 0.17, 0.16, 0.13, 0.18, 0.28, 0.33, 0.35, 0.36, 0.13, 0.07, 0.22, 0.12],  # thin
        [0.05, 0.04, 0.03, 0.02, 0.03, 0.06, 0.08, 0.09, 0.09, 0.03, 0.002, 0.05, 0.02],  # shadow
    ],
    dtype=np.float32,
)


SCENE_SIZE = 64


WANDB_BLOCK = 32768


TINY_SHRINK = [
    "data.patch_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.train_chips_per_epoch=4",
    "data.val_chips_per_scene=2",
    "model.segmenter.pretrained=none",
    "model.segmenter.decoder_channels=32",
]


def tiny_scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """13-band DN and mask: 16x16 blocks of one class each, noise, an ignored border row."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(CLASS_NAMES), (SCENE_SIZE // 16, SCENE_SIZE // 16))
    mask = np.kron(blocks, np.ones((16, 16), dtype=np.int64)).astype(np.uint8)
    reflectance = CLASS_SPECTRA[mask].transpose(2, 0, 1)
    reflectance = reflectance + rng.normal(0, 0.01, reflectance.shape).astype(np.float32)
    dn = np.clip(reflectance * 10000, 1, 65535).astype(np.uint16)
    mask[0] = IGNORE_INDEX
    return dn, mask


def write_tiny_dataset(root: Path) -> Path:
    """Write into ``root`` four scenes on four sites: two train, one val, one test."""
    splits = {"site-a": "train", "site-b": "train", "site-c": "val", "site-d": "test"}
    with DatasetWriter(root) as writer:
        for index, (site, split) in enumerate(splits.items()):
            dn, mask = tiny_scene(index)
            grid = Grid("EPSG:32631", Affine(10, 0, 399960 + 1000 * index, 0, -10, 5000040), 64, 64)
            writer.add(
                f"{site}_20200101",
                dn,
                mask,
                grid,
                L1C_BANDS,
                site=site,
                date="2020-01-01",
                label_source="simulated",
                processing_baseline="02.14",
                split=split,
            )
    return root


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """The real train.yaml composed with ``overrides``, run folders moved to ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *overrides,
                f"paths.root_dir={REPO}",
                f"paths.log_dir={output_dir}",
                f"paths.output_dir={output_dir}",
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def read_wandb_records(run_dir: Path, timeout_s: float = 30.0) -> list[pb.Record]:
    """The records of an offline run's ``run-<id>.wandb`` file, once wandb has finished it.

    ``wandb.finish()`` can return while wandb-core still writes the file, so this waits until
    the file holds the run's exit record and stops changing.
    """
    (path,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + timeout_s
    previous = None
    while True:
        data = path.read_bytes()
        try:
            records = parse_wandb_log(data)
        except DecodeError:  # read mid-write: a record not yet whole
            if time.monotonic() > deadline:
                raise
            records = []
        finished = any(record.WhichOneof("record_type") == "exit" for record in records)
        if (finished and data == previous) or time.monotonic() > deadline:
            return records
        previous = data
        time.sleep(0.5)


def parse_wandb_log(data: bytes) -> list[pb.Record]:
    """Records of a W&B transaction log (wandb's LevelDB-style format).

    A 7-byte header (``:W&B``, magic 0xBEE1, version), then 32 KiB blocks of chunks, each
    ``crc32 (4) | length (2) | type (1) | data``; type 1 is a whole record, 2/3/4 the
    first/middle/last piece of one; a block tail under 7 bytes is padding. Each record is a
    serialised ``wandb_internal_pb2.Record``.
    """
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), "not a W&B transaction log"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        room = WANDB_BLOCK - position % WANDB_BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if room < 7 or (length == 0 and kind == 0):
            position += room
            continue
        if position + 7 + length > len(data):
            break  # the file ends inside this chunk: wandb is still writing it
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records: list[pb.Record]) -> dict[str, list]:
    """Every value logged per history key (nested keys joined with "/"), in order."""
    history: dict[str, list] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.setdefault(key, []).append(json.loads(item.value_json))
    return history
