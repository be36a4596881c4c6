"""The LightningDataModule: random chips from a dataset folder's scenes, by spatial split.

    dm = CloudMaskDataModule("data/seed", bands=["B02", "B03", "B04", "B08"], patch_size=256)
    dm.setup("fit")
    dm.normalization   # {"bands": [...], "mean": [...], "std": [...]} from the training split
    batch = next(iter(dm.train_dataloader()))
    batch["image"]     # float32 (B, C, H, W), normalised
    batch["mask"]      # int64 (B, H, W): 0-3 classes, 255 ignore

Splits come from the manifest; scenes without one are assigned (whole sites, ``split_seed``) in
memory; store them with ``cloudfree-dataset-split``. The normalisation travels with checkpoints
(``state_dict``) and is what inference must use (:func:`cloudseg.data.normalization.normalize`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, get_worker_info

from cloudseg.data.dataset import (
    FixedChipDataset,
    RandomChipDataset,
    SceneReader,
    SceneRecord,
    scene_records,
)
from cloudseg.data.manifest import read_manifest
from cloudseg.data.normalization import cached_normalization, compute_normalization
from cloudseg.data.splits import (
    DEFAULT_FRACTIONS,
    SPLIT_NAMES,
    assign_splits,
    check_sites_not_shared,
)
from cloudseg.data.transforms import build_train_transform
from cloudseg.sentinel2.bands import resolve_bands
from cloudseg.sentinel2.radiometry import dn_to_reflectance

log = logging.getLogger(__name__)


class CloudMaskDataModule(LightningDataModule):
    """Chips of ``patch_size`` from the accepted scenes of the dataset at ``root``.

    Args:
        root: dataset folder (``manifest.csv``, ``images/``, ``masks/``).
        bands: band names to feed the model, in order (``["B02", "B03", "B04"]``, ``"L1C"``).
        patch_size: chip side in pixels; smaller scenes are padded with ignore.
        batch_size, num_workers: DataLoader settings.
        train_chips_per_epoch: random training chips per epoch.
        val_chips_per_scene: fixed chips per validation/test scene.
        augment: ``True`` for the default augmentation, ``False`` for none, or a mapping of
            :func:`~cloudseg.data.transforms.build_train_transform` options.
        split_seed, split_fractions: used only for scenes the manifest gives no split.
        min_labeled_fraction: training chips with fewer labeled pixels are redrawn.
        cache_scenes: keep each scene's selected bands in memory (per worker).
        skip_scenes_without_bands: leave out (and log) scenes that lack some of ``bands``, as in
            a mix of 4-, 12- and 13-band real scenes; ``False``: such a scene is an error.
        chip_shares: share of the training chips per manifest ``label_source`` (e.g.
            ``{"consensus": 0.2}``; the unnamed sources share the rest by area, a source no
            training scene has is skipped with a warning); ``None``: every scene in proportion
            to its area (:func:`~cloudseg.data.dataset.chip_weights`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        bands: Sequence[str] | str,
        patch_size: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        train_chips_per_epoch: int = 1024,
        val_chips_per_scene: int = 4,
        augment: bool | Mapping[str, Any] = True,
        split_seed: int = 0,
        split_fractions: Sequence[float] = DEFAULT_FRACTIONS,
        min_labeled_fraction: float = 0.01,
        cache_scenes: bool = True,
        pin_memory: bool = False,
        skip_scenes_without_bands: bool = False,
        chip_shares: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if (
            patch_size <= 0
            or batch_size <= 0
            or train_chips_per_epoch <= 0
            or val_chips_per_scene <= 0
        ):
            raise ValueError(
                "patch_size, batch_size, train_chips_per_epoch and val_chips_per_scene must be "
                f"positive; got {patch_size}, {batch_size}, {train_chips_per_epoch}, "
                f"{val_chips_per_scene}."
            )
        self.root = Path(root)
        self.bands: tuple[str, ...] = resolve_bands(bands)
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_chips_per_epoch = train_chips_per_epoch
        self.val_chips_per_scene = val_chips_per_scene
        self.augment = augment
        self.split_seed = split_seed
        self.split_fractions = tuple(split_fractions)
        self.min_labeled_fraction = min_labeled_fraction
        self.pin_memory = pin_memory
        self.skip_scenes_without_bands = skip_scenes_without_bands
        self.chip_shares = None if chip_shares is None else dict(chip_shares)
        self.reader = SceneReader(cache=cache_scenes)
        self.records: dict[str, list[SceneRecord]] = {}
        self.normalization: dict | None = None
        self.datasets: dict[str, torch.utils.data.Dataset] = {}

    # -- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest, resolve splits, compute (or load) normalisation, build datasets."""
        if not self.records:
            self.records = self._split_records()
        if self.normalization is None:
            self.normalization = self._train_normalization()
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage or "", SPLIT_NAMES
        )
        for split in needed:
            self._require(split)
        if "train" in needed and "train" not in self.datasets:
            self.datasets["train"] = RandomChipDataset(
                self.records["train"],
                self.patch_size,
                self.normalization,
                self.train_chips_per_epoch,
                transform=self._train_transform(),
                reader=self.reader,
                min_labeled_fraction=self.min_labeled_fraction,
                chip_shares=self.chip_shares,
            )
        for split in ("val", "test"):
            if split in needed and split not in self.datasets:
                self.datasets[split] = FixedChipDataset(
                    self.records[split],
                    self.patch_size,
                    self.normalization,
                    self.val_chips_per_scene,
                    reader=self.reader,
                    seed=self.split_seed,
                )

    def _split_records(self) -> dict[str, list[SceneRecord]]:
        frame = read_manifest(self.root)
        accepted = frame[frame["curation"] == "accepted"]
        if accepted.empty:
            raise ValueError(
                f"{self.root / 'manifest.csv'} has no accepted scenes ({len(frame)} rows, "
                f"curation {sorted(set(frame['curation']))}). Accept scenes with "
                f"`cloudfree-import curate`."
            )
        check_sites_not_shared(frame, str(self.root / "manifest.csv"))
        if (accepted["split"] == "").any():
            missing = int((accepted["split"] == "").sum())
            log.info(
                "%d accepted scenes have no split: assigning whole sites with seed %d (store "
                "them with `cloudfree-dataset-split %s`).", missing, self.split_seed, self.root,
            )  # fmt: skip
            frame = assign_splits(frame, seed=self.split_seed, fractions=self.split_fractions)
            accepted = frame[frame["curation"] == "accepted"]
        if self.skip_scenes_without_bands:
            has_bands = [set(self.bands) <= set(names.split()) for names in accepted["bands"]]
            if not all(has_bands):
                log.info("%d accepted scenes lack some of %s: left out.",
                         len(has_bands) - sum(has_bands), list(self.bands))  # fmt: skip
            accepted = accepted[has_bands]
        return {
            split: scene_records(self.root, accepted[accepted["split"] == split], self.bands)
            for split in SPLIT_NAMES
        }

    def _require(self, split: str) -> None:
        if not self.records.get(split):
            raise ValueError(
                f"The {split} split of {self.root / 'manifest.csv'} has no accepted scenes "
                f"(splits hold { ({s: len(r) for s, r in self.records.items()}) } scenes). Assign "
                f"sites to it with `cloudfree-dataset-split {self.root} --set SITE={split}` or "
                f"add scenes."
            )

    def _train_normalization(self) -> dict:
        self._require("train")
        train = self.records["train"]

        def compute() -> dict:
            arrays = (
                dn_to_reflectance(self.reader.full_scene(record)[0], record.offset)
                for record in train
            )
            return compute_normalization(arrays, self.bands, total=len(train))

        stats = cached_normalization(self.root, self.bands, [r.scene_id for r in train], compute)
        return {key: stats[key] for key in ("bands", "mean", "std")}

    def _train_transform(self):
        if self.augment is False or self.augment is None:
            return None
        options = {} if self.augment is True else dict(self.augment)
        # albumentations keeps its own generator: seed it from torch so seeded runs repeat
        options.setdefault("seed", torch.initial_seed() % 2**32)
        return build_train_transform(self.patch_size, bands=self.bands, **options)

    # -- loaders -------------------------------------------------------------------------------

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_seed_worker_transform,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=False)  # chips are already random

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the bands and normalisation the model was trained on."""
        return {"bands": list(self.bands), "normalization": self.normalization}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if list(state_dict["bands"]) != list(self.bands):
            raise ValueError(
                f"Checkpoint was trained on bands {state_dict['bands']}, this DataModule reads "
                f"{list(self.bands)}."
            )
        self.normalization = state_dict["normalization"]


def _seed_worker_transform(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream (albumentations has its own RNG)."""
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None:
        transform.set_random_seed(torch.initial_seed() % 2**32)
