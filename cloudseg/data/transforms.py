"""Augmentation for multispectral reflectance chips (albumentations), mask-aware.

Geometric transforms (flips, 90-degree rotations, scale/crop) move image and mask together, the
mask with nearest-neighbour. Radiometric jitter works in reflectance units on any number of
bands and keeps NaN (nodata): albumentations' own pixel transforms clip float images to [0, 1],
which would cut bright cloud, so per-band gain/offset and noise are two small transforms here.
Haze is the simulator's aerosol haze laid over a whole chip: labelled clear, it teaches that a
brighter blue with little change in the SWIR is not cloud. Brightness scales every band of a chip
by one gain, for reflectance above what the simulator makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from cloudseg.data.simulate.atmosphere import HAZE_SPECTRUM
from cloudseg.sentinel2.bands import L1C_BANDS, band_indices


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


class Brightness(A.ImageOnlyTransform):
    """``reflectance * gain``, one gain for every band of the chip: the spectrum's shape is kept.

    Teaches brightness the simulator does not reach, e.g. real cloud tops above 1 in the visible
    (simulated thick cloud stops at about 0.9).
    """

    def __init__(self, gain_range: tuple[float, float] = (1.0, 1.3), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.gain_range = tuple(gain_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        return {"gain": np.float32(self.random_generator.uniform(*self.gain_range))}

    def apply(self, img: np.ndarray, gain: np.float32, **params) -> np.ndarray:
        return (img * gain).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gain_range",)


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


class Haze(A.ImageOnlyTransform):
    """Aerosol haze over the chip as the simulator renders it, the mask unchanged (haze is clear).

    ``reflectance * (1 - path) + path`` with ``path = spectrum * amount``: ``spectrum`` is the haze's
    path reflectance relative to the blue for each band of the chip (:func:`haze_spectrum`), and
    ``amount`` a smooth field from 30 % to 100 % of a strength (additive blue reflectance) drawn
    from ``strength_range``, as the simulator's haze layer varies.
    """

    def __init__(
        self,
        spectrum: Sequence[float],
        strength_range: tuple[float, float] = (0.02, 0.12),
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        self.spectrum = np.asarray(spectrum, dtype=np.float32)
        self.strength_range = tuple(strength_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict:
        height, width, bands = data["image"].shape
        if bands != len(self.spectrum):
            raise ValueError(f"Haze has a spectrum for {len(self.spectrum)} bands, the chip {bands}.")
        strength = self.random_generator.uniform(*self.strength_range)
        coarse = self.random_generator.uniform(size=(3, 3)).astype(np.float32)
        field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
        amount = strength * (0.3 + 0.7 * field)
        return {"path": amount[..., np.newaxis] * self.spectrum}

    def apply(self, img: np.ndarray, path: np.ndarray, **params) -> np.ndarray:
        return (img * (1.0 - path) + path).astype(np.float32)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("spectrum", "strength_range")


def haze_spectrum(bands: Sequence[str]) -> np.ndarray:
    """The simulator's haze spectrum (relative to the blue) for ``bands``, in their order."""
    return HAZE_SPECTRUM[band_indices(bands, L1C_BANDS)]


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
    haze_p: float = 0.0,
    haze_range: tuple[float, float] = (0.02, 0.12),
    brightness_p: float = 0.0,
    brightness_range: tuple[float, float] = (1.0, 1.3),
    bands: Sequence[str] | None = None,
    seed: int | None = None,
) -> A.Compose:
    """The training augmentation for ``(y, x, bands)`` float32 reflectance and a uint8 mask.

    ``scale_range`` is the area fraction of the chip kept by the random resized crop (zoom in);
    ``None`` turns scaling off. ``haze_p`` is the share of chips given :class:`Haze` of a strength
    in ``haze_range``; it needs the chips' ``bands``. ``brightness_p`` is the share scaled by
    one :class:`Brightness` gain from ``brightness_range``.
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
    if haze_p > 0:
        if bands is None:
            raise ValueError("haze_p > 0 needs the chips' bands (build_train_transform(bands=...)).")
        steps.append(Haze(haze_spectrum(bands), haze_range, p=haze_p))
    if brightness_p > 0:
        steps.append(Brightness(brightness_range, p=brightness_p))
    steps += [
        BandGainOffset(gain_range, offset_range, p=radiometric_p),
        ReflectanceNoise(noise_std_range, p=radiometric_p),
    ]
    return A.Compose(steps, seed=seed)
