"""CloudSegTask: optimiser groups, schedule, fitting, the checkpoint's inference entry and
loading it back, on a tiny in-memory datamodule and the real tiny ViT."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from affine import Affine
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from cloudseg.checkpoint import load_checkpoint
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.metrics import DEFAULT_MONITOR
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid
from cloudseg.task import CHECKPOINT_KEY, CloudSegTask, layer_decay_param_groups, warmup_cosine

BANDS = ("B02", "B03", "B04", "B08")
SEGMENTER = {
    "backbone": "vit_tiny",
    "bands": list(BANDS),
    "head": "linear",
    "img_size": 32,
    "pretrained": "none",
    "drop_path_rate": 0.0,
}
#: Mean reflectance of each class in the toy chips (B02, B03, B04, B08).
CLASS_MEANS = torch.tensor(
    [
        [0.05, 0.06, 0.04, 0.30],
        [0.60, 0.60, 0.60, 0.55],
        [0.25, 0.25, 0.25, 0.35],
        [0.02, 0.02, 0.02, 0.08],
    ]
)


def toy_chip(seed: int, size: int = 32) -> dict[str, torch.Tensor]:
    """A chip whose 16x16 blocks (one ViT patch each) hold one class, with that class's
    spectrum plus noise."""
    generator = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, len(CLASS_NAMES), (size // 16, size // 16), generator=generator)
    mask = blocks.repeat_interleave(16, 0).repeat_interleave(16, 1)
    reflectance = CLASS_MEANS[mask].permute(2, 0, 1)
    reflectance = reflectance + 0.02 * torch.randn(reflectance.shape, generator=generator)
    mask[:, :2] = IGNORE_INDEX
    image = (reflectance - 0.2) / 0.2
    return {"image": image.float(), "mask": mask.long()}


class ToyDataModule(pl.LightningDataModule):
    """Exposes what CloudMaskDataModule does: bands, normalization, patch_size."""

    def __init__(self, chips_per_split: int = 8, batch_size: int = 4, metadata: bool = True):
        super().__init__()
        self.batch_size = batch_size
        self.splits = {
            split: [toy_chip(offset + i) for i in range(chips_per_split)]
            for offset, split in ((0, "train"), (1000, "val"), (2000, "test"))
        }
        if metadata:
            self.bands = BANDS
            self.normalization = {"bands": list(BANDS), "mean": [0.2] * 4, "std": [0.2] * 4}
            self.patch_size = 32

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.batch_size)


def make_trainer(tmp_path, max_epochs: int = 2, **kwargs) -> pl.Trainer:
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", monitor=DEFAULT_MONITOR, mode="max", save_last=True
    )
    return pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        accelerator="cpu",
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[checkpoint],
        **kwargs,
    )


def test_layer_decay_groups_cover_every_trainable_parameter_once():
    task = CloudSegTask(SEGMENTER, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    model = task.model
    groups = layer_decay_param_groups(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert len(set(grouped)) == len(grouped)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    depth = len(model.backbone.blocks)
    assert lr_of[id(params["backbone.patch_embed.proj.weight"])] == pytest.approx(
        1e-3 * 0.5 ** (depth + 1)
    )
    assert lr_of[id(params["backbone.blocks.0.attn.qkv.weight"])] == pytest.approx(
        1e-3 * 0.5**depth
    )
    assert lr_of[id(params[f"backbone.blocks.{depth - 1}.mlp.fc1.weight"])] == pytest.approx(
        1e-3 * 0.5
    )
    head_weights = [name for name in params if name.startswith("head.") and name.endswith("weight")]
    assert head_weights and all(lr_of[id(params[n])] == pytest.approx(1e-3) for n in head_weights)
    assert decay_of[id(params["backbone.blocks.0.attn.qkv.weight"])] == 0.05
    for name in (
        "backbone.blocks.0.attn.qkv.bias",
        "backbone.blocks.0.norm1.weight",
        "backbone.pos_embed",
        "backbone.cls_token",
    ):
        assert decay_of[id(params[name])] == 0.0, name


def test_frozen_backbone_leaves_only_the_head_to_optimise():
    task = CloudSegTask({**SEGMENTER, "freeze_backbone": True}, layer_decay=1.0)
    groups = layer_decay_param_groups(task.model, lr=1e-3, weight_decay=0.0, layer_decay=1.0)
    names = {id(p): n for n, p in task.model.named_parameters()}
    optimised = [names[id(p)] for group in groups for p in group["params"]]
    assert optimised and all(name.startswith("head.") for name in optimised)


def test_frozen_first_blocks_are_left_out_of_the_optimiser():
    task = CloudSegTask({**SEGMENTER, "frozen_blocks": 2}, layer_decay=0.9)
    groups = layer_decay_param_groups(task.model, lr=1e-3, weight_decay=0.05, layer_decay=0.9)
    names = {id(p): n for n, p in task.model.named_parameters()}
    optimised = {names[id(p)] for group in groups for p in group["params"]}
    layers = {task.model.layer_id(name) for name in optimised}
    assert min(layers) == 3  # 0 embeddings, 1-2 the frozen blocks
    assert "backbone.blocks.2.attn.qkv.weight" in optimised
    assert "backbone.blocks.1.attn.qkv.weight" not in optimised


def test_warmup_then_cosine_schedule():
    multiplier = warmup_cosine(total_steps=100, warmup_steps=10, min_lr_ratio=0.01)
    values = [multiplier(step) for step in range(120)]
    assert values[0] == pytest.approx(1 / 11)
    assert all(a < b for a, b in zip(values[:10], values[1:11], strict=True))
    assert values[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:100], values[11:101], strict=True))
    assert values[55] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert values[100] == pytest.approx(0.01) and values[119] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segmenter": {**SEGMENTER, "num_classes": 2}}, "num_classes is fixed"),
        ({"layer_decay": 0.0}, "layer_decay"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
    ],
)
def test_bad_task_settings_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CloudSegTask(**{"segmenter": SEGMENTER, **kwargs})


def test_fit_writes_inference_metadata_and_the_checkpoint_reloads(tmp_path):
    pl.seed_everything(0, workers=True)
    datamodule = ToyDataModule()
    task = CloudSegTask(SEGMENTER, lr=2e-3, layer_decay=0.9, warmup_fraction=0.1)
    trainer = make_trainer(tmp_path, max_epochs=3)
    trainer.fit(task, datamodule=datamodule)

    checkpoint = trainer.checkpoint_callback
    assert checkpoint.best_model_path and checkpoint.last_model_path
    logged = trainer.logged_metrics
    assert logged["train/loss_epoch"] < logged["val/loss"] * 10  # both logged, finite
    for name in ("val/iou_thick_cloud", "val/iou_cloud_or_shadow_vs_clear", "train/miou"):
        assert name in logged

    model, meta = load_checkpoint(checkpoint.best_model_path)
    assert set(meta) == {"bands", "normalization", "classes", "model_config", "patch_size"}
    assert meta["bands"] == list(BANDS)
    assert meta["normalization"] == datamodule.normalization
    assert meta["classes"] == list(CLASS_NAMES)
    assert meta["patch_size"] == 32
    assert meta["model_config"]["backbone"] == "vit_tiny"
    assert not model.training

    best = CloudSegTask.load_from_checkpoint(checkpoint.best_model_path).eval()
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(model(batch["image"]), best(batch["image"]))


def test_training_learns_the_toy_classes(tmp_path):
    pl.seed_everything(0, workers=True)
    datamodule = ToyDataModule(chips_per_split=16)
    task = CloudSegTask(SEGMENTER, lr=3e-3, layer_decay=1.0, warmup_fraction=0.1)
    trainer = make_trainer(tmp_path, max_epochs=4)
    trainer.fit(task, datamodule=datamodule)
    # 4 classes with distinct spectra in patch-sized blocks: calling everything cloud gives an
    # IoU of cloud+shadow vs clear of ~0.75; learning must do clearly better.
    assert float(trainer.callback_metrics["val/iou_cloud_or_shadow_vs_clear"]) > 0.9


def test_resume_from_last_checkpoint_continues_the_run(tmp_path):
    datamodule = ToyDataModule(chips_per_split=4)
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(CloudSegTask(SEGMENTER), datamodule=datamodule)
    last = trainer.checkpoint_callback.last_model_path
    resumed = make_trainer(tmp_path / "resumed", max_epochs=2)
    resumed.fit(CloudSegTask(SEGMENTER), datamodule=datamodule, ckpt_path=last)
    assert resumed.current_epoch == 2
    assert resumed.global_step == 2 * trainer.global_step


def test_fit_needs_a_datamodule_with_inference_metadata(tmp_path):
    with pytest.raises(ValueError, match=r"lacks \['bands', 'normalization', 'patch_size'\]"):
        make_trainer(tmp_path).fit(
            CloudSegTask(SEGMENTER), datamodule=ToyDataModule(metadata=False)
        )


def test_model_bands_must_match_the_data_bands(tmp_path):
    task = CloudSegTask({**SEGMENTER, "bands": ["B02", "B03", "B04", "B11"]})
    with pytest.raises(ValueError, match="bands"):
        make_trainer(tmp_path).fit(task, datamodule=ToyDataModule())


def test_load_checkpoint_explains_missing_corrupt_and_foreign_files(tmp_path):
    missing = tmp_path / "nothing.ckpt"
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_checkpoint(missing)

    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt\.ckpt is not a readable PyTorch checkpoint"):
        load_checkpoint(corrupt)

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match=f"foreign.ckpt has no '{CHECKPOINT_KEY}' entry"):
        load_checkpoint(foreign)

    incomplete = tmp_path / "incomplete.ckpt"
    torch.save({"state_dict": {}, CHECKPOINT_KEY: {"bands": ["B02"]}}, incomplete)
    with pytest.raises(
        ValueError, match=r"lacks \['normalization', 'classes', 'model_config', 'patch_size'\]"
    ):
        load_checkpoint(incomplete)

    task = CloudSegTask(SEGMENTER)
    meta = {
        "bands": list(BANDS),
        "normalization": {"bands": list(BANDS), "mean": [0.0] * 4, "std": [1.0] * 4},
        "classes": list(CLASS_NAMES),
        "model_config": {**task.model.config, "head": "upernet"},
        "patch_size": 32,
    }
    mismatched = tmp_path / "mismatched.ckpt"
    torch.save({"state_dict": task.state_dict(), CHECKPOINT_KEY: meta}, mismatched)
    with pytest.raises(ValueError, match="do not fit the model"):
        load_checkpoint(mismatched)


def test_ckpt_that_is_a_folder_or_a_raster_names_the_key_and_the_fix(tmp_path):
    """Issue 19.7: `ckpt=<a folder>` is not "does not exist", and `ckpt=<a .tif>` does not repeat
    torch's advice to set weights_only=False."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "best-epoch003.ckpt").write_bytes(b"")
    (folder / "last.ckpt").write_bytes(b"")
    with pytest.raises(IsADirectoryError) as error:
        load_checkpoint(folder)
    assert str(error.value).startswith(
        f"ckpt={folder} is a folder, not a checkpoint file. It holds ['best-epoch003.ckpt', "
        f"'last.ckpt']: pass one of them, e.g. ckpt={folder / 'best-epoch003.ckpt'}"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IsADirectoryError, match="It holds no .ckpt file; training writes them"):
        load_checkpoint(empty)

    raster = tmp_path / "scene.tif"
    write_cog(
        raster, np.ones((1, 8, 8), np.uint16), Grid("EPSG:32631", Affine(10, 0, 0, 0, -10, 0), 8, 8)
    )
    with pytest.raises(ValueError) as error:
        load_checkpoint(raster)
    assert str(error.value).startswith(
        f"ckpt={raster} is not a readable PyTorch checkpoint: it looks like a TIFF raster"
    )
    assert "weights_only" not in str(error.value)

    pickled = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {}, "callback": Grid("EPSG:32631", Affine.identity(), 1, 1)}, pickled)
    with pytest.raises(
        ValueError, match=r"^checkpoint=\S+ .* a pickle of Python objects \(cloudseg"
    ):
        load_checkpoint(pickled, key="checkpoint")
