"""Lightning callbacks that show what the cloud mask does, through the W&B logger.

- ``PredictionOverlays``: the first validation chips each epoch as ``wandb.Image`` with the true
  and predicted masks as W&B mask overlays (class labels from ``cloudseg.labels``).
- ``ConfusionMatrixLogger``: pixel confusion matrix of the validation and test sets, logged as a
  W&B confusion-matrix chart and kept in ``.counts`` for the metrics JSON.

Both read the ``{"loss", "prediction"}`` dict that ``CloudSegTask.validation_step`` /
``test_step`` return. Without a ``WandbLogger`` nothing is drawn (the confusion matrix is still
counted).

- ``EMAWeights``: Lightning's exponential moving average of the weights (``callbacks=ema``),
  which validation, the checkpoints and the test of the best checkpoint use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import wandb
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from cloudseg.metrics import confusion_matrix_metric
from cloudseg.sentinel2.bands import RGB_BANDS

#: W&B mask labels: class code -> class name, plus the ignore value.
MASK_CLASS_LABELS: dict[int, str] = {
    **dict(enumerate(CLASS_NAMES)),
    IGNORE_INDEX: "ignore",
}


def find_wandb_logger(trainer: Trainer) -> WandbLogger | None:
    """The trainer's WandbLogger, or None when it logs elsewhere (CSV) or nowhere."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger
    return None


def chip_to_display(
    image: np.ndarray,
    bands: Sequence[str] | None,
    normalization: Mapping[str, Sequence[float]] | None,
    max_reflectance: float = 0.3,
) -> np.ndarray:
    """A normalised chip ``(C, H, W)`` as uint8 ``(H, W, 3)`` for display.

    True colour (B04, B03, B02) when those bands are in the chip, else the first band in grey.
    With the normalisation known, the chip is turned back into reflectance and
    ``0..max_reflectance`` is spread over 0-255 (one scale for all three bands, so clouds stay
    white); without it, the chip's own 2-98 percentiles are.
    """
    band_list = list(bands) if bands is not None else []
    if all(band in band_list for band in RGB_BANDS):
        channels = [band_list.index(band) for band in RGB_BANDS]
    else:
        channels = [0, 0, 0]
    selected = image[channels].astype(np.float32)
    if normalization is not None and band_list:
        norm_bands = list(normalization["bands"])
        mean = np.array([normalization["mean"][norm_bands.index(band_list[c])] for c in channels])
        std = np.array([normalization["std"][norm_bands.index(band_list[c])] for c in channels])
        selected = selected * std[:, None, None] + mean[:, None, None]
        low, high = 0.0, max_reflectance
    else:
        low, high = np.nanpercentile(selected, [2, 98])
    scaled = np.clip((selected - low) / max(high - low, 1e-6), 0.0, 1.0)
    return (np.nan_to_num(scaled).transpose(1, 2, 0) * 255).round().astype(np.uint8)


class PredictionOverlays(Callback):
    """Log the first ``num_chips`` validation chips with true and predicted class masks.

    The validation chips are fixed, so the same chips are shown every epoch and the panel shows
    the prediction improving. Skipped during Lightning's sanity check.
    """

    def __init__(
        self,
        num_chips: int = 8,
        key: str = "val/predictions",
        every_n_epochs: int = 1,
        max_reflectance: float = 0.3,
    ) -> None:
        super().__init__()
        if num_chips < 1 or every_n_epochs < 1:
            raise ValueError(
                f"num_chips ({num_chips}) and every_n_epochs ({every_n_epochs}) must be >= 1."
            )
        self.num_chips = num_chips
        self.key = key
        self.every_n_epochs = every_n_epochs
        self.max_reflectance = max_reflectance
        self._chips: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _active(self, trainer: Trainer) -> bool:
        return (
            not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
            and find_wandb_logger(trainer) is not None
        )

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._chips = []

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Mapping[str, Tensor],
        batch: Mapping[str, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        wanted = self.num_chips - len(self._chips)
        if wanted <= 0 or not self._active(trainer):
            return
        images = batch["image"][:wanted].detach().float().cpu().numpy()
        masks = batch["mask"][:wanted].detach().cpu().numpy()
        predictions = outputs["prediction"][:wanted].detach().cpu().numpy()
        self._chips.extend(zip(images, masks, predictions, strict=True))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = find_wandb_logger(trainer)
        if not self._chips or logger is None or not self._active(trainer):
            return
        metadata = getattr(pl_module, "inference_metadata", None) or {}
        bands, normalization = metadata.get("bands"), metadata.get("normalization")
        pictures, overlays, captions = [], [], []
        for index, (image, mask, prediction) in enumerate(self._chips):
            pictures.append(chip_to_display(image, bands, normalization, self.max_reflectance))
            overlays.append(
                {
                    "ground_truth": {
                        "mask_data": mask.astype(np.uint8),
                        "class_labels": MASK_CLASS_LABELS,
                    },
                    "prediction": {
                        "mask_data": prediction.astype(np.uint8),
                        "class_labels": MASK_CLASS_LABELS,
                    },
                }
            )
            captions.append(f"chip {index}, epoch {trainer.current_epoch}")
        logger.log_image(
            key=self.key,
            images=pictures,
            step=trainer.global_step,
            masks=overlays,
            caption=captions,
        )
        self._chips = []


class ConfusionMatrixLogger(Callback):
    """Count (true class, predicted class) pixels over each validation and test epoch.

    ``counts[stage]`` holds the last epoch's matrix as nested lists (rows = true class, columns
    = predicted, order of ``CLASS_NAMES``); with a WandbLogger it is logged as
    ``<stage>/confusion_matrix``, W&B's confusion-matrix chart.
    """

    def __init__(self, stages: Sequence[str] = ("val", "test")) -> None:
        super().__init__()
        unknown = [stage for stage in stages if stage not in ("val", "test")]
        if unknown:
            raise ValueError(f"ConfusionMatrixLogger stages {unknown} unknown; use val and test.")
        self.stages = tuple(stages)
        self.counts: dict[str, list[list[int]]] = {}
        self._metrics = {stage: confusion_matrix_metric() for stage in self.stages}

    def _update(self, trainer: Trainer, stage: str, outputs: Any, batch: Any) -> None:
        if stage not in self._metrics or trainer.sanity_checking:
            return
        metric, prediction = self._metrics[stage], outputs["prediction"]
        if metric.device != prediction.device:  # follow the model onto its device
            metric.to(prediction.device)
        metric.update(prediction, batch["mask"])

    def _finish(self, trainer: Trainer, stage: str) -> None:
        if stage not in self._metrics or trainer.sanity_checking:
            return
        metric = self._metrics[stage]
        if not metric.update_called:
            return
        matrix = metric.compute().cpu().long().tolist()
        metric.reset()
        self.counts[stage] = matrix
        logger = find_wandb_logger(trainer)
        if logger is not None:
            chart = confusion_matrix_chart(matrix, f"{stage} pixels (rows: true class)")
            logger.log_metrics({f"{stage}/confusion_matrix": chart}, step=trainer.global_step)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._update(trainer, "val", outputs, batch)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._update(trainer, "test", outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._finish(trainer, "test")


def confusion_matrix_chart(
    matrix: Sequence[Sequence[int]], title: str, class_names: Sequence[str] = CLASS_NAMES
) -> Any:
    """W&B's confusion-matrix chart from counts (``wandb.plot.confusion_matrix`` wants every
    pixel's label, millions per epoch, so the same chart is built from the counts here)."""
    rows = [
        [class_names[true], class_names[predicted], int(matrix[true][predicted])]
        for true in range(len(class_names))
        for predicted in range(len(class_names))
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    return wandb.plot_table(
        "wandb/confusion_matrix/v1",
        table,
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title},
    )


class EMAWeights(EMAWeightAveraging):
    """An exponential moving average of the weights, updated after every optimizer step.

    Lightning's callback validates with the averaged weights and writes them as a checkpoint's
    ``state_dict`` (the raw weights go under ``current_model_state``, to resume from). When a
    checkpoint is loaded outside a fit, as ``train.py`` does to test the best one, the parent
    would put the raw weights back into the model; here the averaged ones stay, so the test
    scores the same weights that validation chose and that ``composite.py`` loads.
    """

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
