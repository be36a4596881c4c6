"""The LightningModule that trains the cloud-mask segmenter (torchgeo task style).

``CloudSegTask(segmenter={...}, loss=..., lr=...)`` builds the model with
``cloudseg.models.build_segmenter(**segmenter, num_classes=NUM_CLASSES)`` in ``configure_models()``,
the loss in ``configure_losses()`` and one metric collection, cloned with ``train/``, ``val/``
and ``test/`` prefixes, in ``configure_metrics()`` (torchgeo's ``BaseTask`` calls the three).
Optimisation: AdamW with layer-wise learning-rate decay over ``model.layer_id``, no weight decay on
biases, norms and position/class tokens, a linear warm-up then a cosine decay per step.

Every checkpoint it writes carries a ``"cloudfree"`` entry with what inference needs (bands,
normalisation, classes, model config, patch size), read from the datamodule at ``setup``;
``cloudseg.checkpoint.load_checkpoint`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from torchgeo.trainers import BaseTask

from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from cloudseg.losses import build_loss
from cloudseg.metrics import DEFAULT_MONITOR, DEFAULT_MONITOR_MODE, segmentation_metrics
from cloudseg.models import build_segmenter

#: The key of the inference metadata in a checkpoint, and the fields it holds.
CHECKPOINT_KEY = "cloudfree"
CHECKPOINT_FIELDS = ("bands", "normalization", "classes", "model_config", "patch_size")
#: Parameter-name endings that never get weight decay (besides every 0-/1-d tensor).
NO_WEIGHT_DECAY_SUFFIXES = ("pos_embed", "cls_token", "reg_token", "dist_token")


class CloudSegTask(BaseTask):
    """Train, validate and test a segmenter mapping (B, C, H, W) images to (B, 4, H, W) logits."""

    monitor = DEFAULT_MONITOR
    mode = DEFAULT_MONITOR_MODE

    def __init__(
        self,
        segmenter: dict[str, Any],
        loss: str = "ce_dice",
        dice_weight: float = 1.0,
        class_weights: Sequence[float] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        layer_decay: float = 0.75,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
    ) -> None:
        """
        Args:
            segmenter: keyword arguments of ``build_segmenter`` (backbone, bands, head, img_size,
                pretrained, weights_path, freeze_backbone, frozen_blocks, drop_path_rate,
                decoder_channels, detail_channels); ``num_classes`` comes from ``cloudseg.labels``.
            loss: ``"ce"``, ``"dice"`` or ``"ce_dice"`` (see ``cloudseg.losses``).
            dice_weight: weight of the Dice term in ``"ce_dice"``.
            class_weights: cross-entropy weight per class (order of ``CLASS_NAMES``), or None.
            lr: peak learning rate of the head; block ``i`` of a depth-``d`` ViT gets
                ``lr * layer_decay ** (d + 1 - i)``.
            weight_decay: AdamW weight decay (not applied to biases, norms, tokens, pos. embed.).
            layer_decay: layer-wise learning-rate decay factor in (0, 1]; 1 disables it.
            betas: AdamW betas.
            warmup_fraction: share of the total optimiser steps spent warming up linearly.
            min_lr_ratio: learning rate at the end of the cosine, as a fraction of the peak.
        """
        if "num_classes" in segmenter:
            raise ValueError(
                "segmenter.num_classes is fixed by cloudseg.labels "
                f"({NUM_CLASSES}: {list(CLASS_NAMES)}); remove it from the model config."
            )
        if not 0 < layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1]; got {layer_decay}.")
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1); got {warmup_fraction}.")
        if not 0 <= min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1]; got {min_lr_ratio}.")
        super().__init__()
        #: Inference metadata (CHECKPOINT_FIELDS), filled from the datamodule at setup.
        self.inference_metadata: dict[str, Any] | None = None

    def configure_models(self) -> None:
        self.model = build_segmenter(**self.hparams["segmenter"], num_classes=NUM_CLASSES)

    def configure_losses(self) -> None:
        self.criterion = build_loss(
            self.hparams["loss"],
            dice_weight=self.hparams["dice_weight"],
            class_weights=self.hparams["class_weights"],
            ignore_index=IGNORE_INDEX,
        )

    def configure_metrics(self) -> None:
        metrics = segmentation_metrics(CLASS_NAMES, IGNORE_INDEX)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image)

    # ----------------------------------------------------------------------------------- data
    def setup(self, stage: str) -> None:
        """Take bands, normalisation and patch size from the datamodule for the checkpoint.

        Fitting requires them; other stages (test, predict) keep what a checkpoint brought.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        missing = [
            name
            for name in ("bands", "normalization", "patch_size")
            if getattr(datamodule, name, None) is None
        ]
        if missing:
            if stage == "fit":
                raise ValueError(
                    f"{type(datamodule).__name__} lacks {missing} after setup('fit'); the "
                    "checkpoint needs them for inference. Use "
                    "cloudseg.data.datamodule.CloudMaskDataModule."
                )
            return
        self.inference_metadata = self._metadata_from(datamodule)

    def _metadata_from(self, datamodule: Any) -> dict[str, Any]:
        bands = [str(band) for band in datamodule.bands]
        model_bands = self.model.config.get("bands")
        if model_bands is not None and list(model_bands) != bands:
            raise ValueError(
                f"The model was built for bands {list(model_bands)} but the datamodule yields "
                f"{bands}; set model.segmenter.bands to the data bands (the configs use "
                "${data.bands})."
            )
        return {
            "bands": bands,
            "normalization": datamodule.normalization,
            "classes": list(CLASS_NAMES),
            "model_config": dict(self.model.config),
            "patch_size": int(datamodule.patch_size),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.inference_metadata is None:
            raise RuntimeError(
                "CloudSegTask cannot write a checkpoint without its inference metadata (bands, "
                "normalization, patch_size): fit it with a datamodule (trainer.fit(task, "
                "datamodule=...)), not bare dataloaders."
            )
        checkpoint[CHECKPOINT_KEY] = self.inference_metadata

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if CHECKPOINT_KEY in checkpoint:
            self.inference_metadata = checkpoint[CHECKPOINT_KEY]

    # ---------------------------------------------------------------------------------- steps
    def _step(self, batch: dict[str, Tensor], stage: str) -> tuple[Tensor, Tensor]:
        image, target = batch["image"], batch["mask"]
        logits = self(image)
        loss = self.criterion(logits, target)
        prediction = logits.argmax(dim=1)
        getattr(self, f"{stage}_metrics").update(prediction, target)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=image.shape[0],
        )
        return loss, prediction

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, "train")
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Returns the loss and the class prediction (callbacks draw and count them)."""
        loss, prediction = self._step(batch, "val")
        return {"loss": loss, "prediction": prediction}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        loss, prediction = self._step(batch, "test")
        return {"loss": loss, "prediction": prediction}

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities (B, 4, H, W)."""
        return self(batch["image"]).softmax(dim=1)

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        for name, value in metrics.compute().items():
            self.log(name, value, prog_bar=name == self.monitor)
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # ------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self) -> dict[str, Any]:
        hparams = self.hparams
        groups = layer_decay_param_groups(
            self.model, hparams["lr"], hparams["weight_decay"], hparams["layer_decay"]
        )
        # The fused kernel is several times faster than the default per-tensor loop on CPU.
        fused = self.device.type in ("cpu", "cuda")
        optimizer = AdamW(groups, lr=hparams["lr"], betas=tuple(hparams["betas"]), fused=fused)
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            raise ValueError(
                "The warm-up + cosine schedule needs a finite run: set trainer.max_epochs or "
                "trainer.max_steps."
            )
        schedule = warmup_cosine(
            total_steps=int(total_steps),
            warmup_steps=int(hparams["warmup_fraction"] * total_steps),
            min_lr_ratio=hparams["min_lr_ratio"],
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }


def layer_decay_param_groups(
    model: nn.Module, lr: float, weight_decay: float, layer_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise learning-rate decay (BEiT/MAE fine-tuning recipe).

    ``model.layer_id(name)`` numbers parameters from 0 (embeddings) through the blocks to the
    head, the highest id; a parameter at id ``i`` gets ``lr * layer_decay ** (top - i)``.
    Frozen parameters (``requires_grad=False``) are left out. Each group carries a ``name``
    (``layer03_decay``, ``layer13_no_decay``...) that Lightning's LearningRateMonitor reports.
    """
    named = list(model.named_parameters())
    layer_ids = {name: int(model.layer_id(name)) for name, _ in named}
    top = max(layer_ids.values())
    groups: dict[str, dict[str, Any]] = {}
    for name, param in named:
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(NO_WEIGHT_DECAY_SUFFIXES)
        layer = layer_ids[name]
        key = f"layer{layer:02d}_{'no_decay' if no_decay else 'decay'}"
        if key not in groups:
            groups[key] = {
                "name": key,
                "params": [],
                "lr": lr * layer_decay ** (top - layer),
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        groups[key]["params"].append(param)
    if not groups:
        raise ValueError(
            "The model has no trainable parameter (is everything frozen?); unfreeze the head or "
            "set model.segmenter.freeze_backbone=false."
        )
    return [groups[key] for key in sorted(groups)]


def warmup_cosine(total_steps: int, warmup_steps: int, min_lr_ratio: float):
    """LR multiplier per step: linear from ~0 to 1 over ``warmup_steps``, then a cosine down to
    ``min_lr_ratio`` at ``total_steps`` (held there if training runs longer)."""
    total_steps = max(total_steps, 1)
    warmup_steps = min(max(warmup_steps, 0), total_steps - 1)

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier
