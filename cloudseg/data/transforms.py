"""Augmentation for multispectral reflectance chips (albumentations), mask-aware.

Geometric transforms (flips, 90-degree rotations, scale/crop) move image and mask together, the
mask with nearest-neighbour. Radiometric jitter works in reflectance units on any number of
bands and keeps NaN (nodata): albumentations' own pixel transforms clip float images to [0, 1],
which would cut bright cloud, so per-band gain/offset and noise are two small transforms here.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np


class BandGainOffset(A.ImageOnlyTransform):
    """Per-band ``reflectance * gain + offset``, one gain and offset per band per sample.

    Mimics calibration differences between sensors, dates and processing baselines.
    """

    def __init__(
        self,
        gain_range: tuple[float, float] = (0.95, 1.05),
        offset_range: tuple[float, float] = (-0.01, 0.01),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.gain_range = tuple(gain_range)
        self.offset_range = tuple(offset_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        bands = data["image"].shape[-1]
        return {
            "gain": self.random_generator.uniform(*self.gain_range, size=bands).astype(np.float32),
            "offset": self.random_generator.uniform(*self.offset_range, size=bands).astype(
                np.float32
            ),
        }

    def apply(self, img: np.ndarray, gain: np.ndarray, offset: np.ndarray, **params) -> np.ndarray:
        return (img * gain + offset).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain_range", "offset_range")


class ReflectanceNoise(A.ImageOnlyTransform):
    """Additive Gaussian noise per pixel and band, ``std`` drawn from ``std_range`` (reflectance)."""

    def __init__(self, std_range: tuple[float, float] = (0.0, 0.005), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.std_range = tuple(std_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        std = self.random_generator.uniform(*self.std_range)
        noise = self.random_generator.normal(0.0, std, size=data["image"].shape)
        return {"noise": noise.astype(np.float32)}

    def apply(self, img: np.ndarray, noise: np.ndarray, **params) -> np.ndarray:
        return (img + noise).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std_range",)


def build_train_transform(
    patch_size: int,
    *,
    flips: bool = True,
    rotate90: bool = True,
    scale_range: tuple[float, float] | None = (0.6, 1.0),
    gain_range: tuple[float, float] = (0.95, 1.05),
    offset_range: tuple[float, float] = (-0.01, 0.01),
    noise_std_range: tuple[float, float] = (0.0, 0.005),
    radiometric_p: float = 0.5,
    seed: int | None = None,
) -> A.Compose:
    """The training augmentation for ``(y, x, bands)`` float32 reflectance and a uint8 mask.

    ``scale_range`` is the area fraction of the chip kept by the random resized crop (zoom in);
    ``None`` turns scaling off.
    """
    steps: list[A.BasicTransform] = []
    if flips:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rotate90:
        steps.append(A.RandomRotate90(p=0.5))
    if scale_range is not None:
        steps.append(
            A.RandomResizedCrop(
                size=(patch_size, patch_size), scale=tuple(scale_range), ratio=(0.8, 1.25), p=0.5
            )
        )
    steps += [
        BandGainOffset(gain_range, offset_range, p=radiometric_p),
        ReflectanceNoise(noise_std_range, p=radiometric_p),
    ]
    return A.Compose(steps, seed=seed)
