"""Fixtures for inference tests: a tiny stand-in segmenter and small synthetic GeoTIFF scenes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from scipy.ndimage import gaussian_filter
from torch import nn

from cloudseg.data.manifest import DatasetWriter
from cloudseg.inference.predictor import WindowedPredictor
from cloudseg.inference.spec import InferenceSpec
from cloudseg.labels import (
    CLASS_NAMES,
    CLEAR,
    CLOUD_SHADOW,
    IGNORE_INDEX,
    THICK_CLOUD,
    THIN_CLOUD,
)
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid

SCENE_BANDS = ("B02", "B03", "B04", "B8A", "B11")
MODEL_BANDS = ("B02", "B04", "B8A", "B11")


class TinySegmenter(nn.Module):
    """Stand-in for a checkpoint's model: (B, bands, H, W) normalised -> (B, 4, H, W) logits.

    Two convolutions with fixed seeded weights; ``kernel_size=1`` makes it per-pixel (no spatial
    context), 3 gives a 5x5 receptive field, so window borders matter a little.
    """

    def __init__(self, num_bands: int, kernel_size: int = 3, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        padding = kernel_size // 2
        self.features = nn.Conv2d(num_bands, 8, kernel_size, padding=padding)
        self.head = nn.Conv2d(8, len(CLASS_NAMES), kernel_size, padding=padding)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise AssertionError(f"input {tuple(x.shape)} is not a multiple of 16")
        return self.head(torch.tanh(self.features(x)))


def checkpoint_meta(bands: Sequence[str], patch_size: int = 64) -> dict:
    """Checkpoint metadata as ``cloudseg.checkpoint.load_checkpoint`` returns it."""
    return {
        "bands": list(bands),
        "normalization": {
            "bands": list(bands),
            "mean": [0.1 + 0.02 * i for i in range(len(bands))],
            "std": [0.06] * len(bands),
        },
        "classes": list(CLASS_NAMES),
        "model_config": {},
        "patch_size": patch_size,
    }


def make_predictor(
    bands: Sequence[str] = MODEL_BANDS, kernel_size: int = 3, model=None, meta=None, **spec
) -> WindowedPredictor:
    """A CPU predictor around :class:`TinySegmenter` (or ``model``), without progress bars;
    ``spec``: :class:`InferenceSpec` fields."""
    spec.setdefault("device", "cpu")
    model = model if model is not None else TinySegmenter(len(bands), kernel_size)
    meta = meta if meta is not None else checkpoint_meta(bands)
    return WindowedPredictor(model, meta, InferenceSpec(**spec), progress=False)


@pytest.fixture(name="make_predictor")
def make_predictor_fixture() -> Callable[..., WindowedPredictor]:
    """``make_predictor(bands=MODEL_BANDS, kernel_size=3, model=None, meta=None, **spec)``."""
    return make_predictor


@pytest.fixture(name="checkpoint_meta")
def checkpoint_meta_fixture() -> Callable[..., dict]:
    return checkpoint_meta


def smooth_reflectance(bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Spatially smooth float32 reflectance ``(bands, height, width)`` in about 0.02-0.6."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(bands, height, width)), sigma=(0, 4, 4))
    field /= field.std(axis=(1, 2), keepdims=True)
    return np.clip(0.15 + 0.1 * field, 0.02, 0.6).astype(np.float32)


def utm_grid(height: int, width: int, resolution: float = 10.0) -> Grid:
    """A UTM 31N grid at ``resolution`` metres with a round origin."""
    transform = Affine(resolution, 0, 399960.0, 0, -resolution, 4800000.0)
    return Grid("EPSG:32631", transform, height, width)


@pytest.fixture(name="smooth_reflectance")
def smooth_reflectance_fixture() -> Callable[..., np.ndarray]:
    return smooth_reflectance


@pytest.fixture(name="utm_grid")
def utm_grid_fixture() -> Callable[..., Grid]:
    return utm_grid


@pytest.fixture
def write_scene(tmp_path: Path) -> Callable[..., Path]:
    """``write_scene(name, reflectance, bands=SCENE_BANDS, grid=None)`` -> a GeoTIFF like the
    dataset writer's (uint16 DN, band names as descriptions, nodata 0, scene tags)."""

    def write(
        name: str,
        reflectance: np.ndarray,
        bands: Sequence[str] = SCENE_BANDS,
        grid: Grid | None = None,
    ) -> Path:
        grid = grid or utm_grid(*reflectance.shape[1:])
        dn = np.where(np.isnan(reflectance), 0, np.clip(np.rint(reflectance * 10000), 1, 65535))
        path = tmp_path / f"{name}.tif"
        write_cog(
            path,
            dn.astype(np.uint16),
            grid,
            nodata=0,
            band_names=list(bands),
            tags={"SENSING_TIME": "2021-06-01T10:30:00Z", "PROCESSING_BASELINE": "03.01"},
        )
        return path

    return write


#: 13-band L1C TOA reflectance per class (SENTINEL2.md's table, vegetation as the surface).
VEGETATION = np.array(
    [0.12, 0.07, 0.07, 0.04, 0.10, 0.22, 0.27, 0.30, 0.31, 0.10, 0.005, 0.17, 0.08], np.float32
)
SPECTRA = {
    CLEAR: VEGETATION,
    THICK_CLOUD: np.array(
        [0.65, 0.70, 0.70, 0.70, 0.68, 0.67, 0.66, 0.65, 0.65, 0.35, 0.03, 0.50, 0.40], np.float32
    ),
    THIN_CLOUD: VEGETATION + np.array([0.06] * 10 + [0.05, 0.02, 0.01], np.float32),
    CLOUD_SHADOW: VEGETATION * np.array([0.6] * 4 + [0.35] * 9, np.float32),
}


@pytest.fixture(name="labeled_scene")
def labeled_scene_fixture() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``labeled_scene(seed, size=48)`` -> ``(dn (13, size, size), mask)``."""
    return labeled_scene


def labeled_scene(seed: int, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A mask of class blocks (a few ignore pixels) and the DN image its spectra make."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 4, size=(4, 4))
    mask = np.kron(blocks, np.ones((size // 4, size // 4), dtype=np.int64)).astype(np.uint8)
    mask[:2, :2] = IGNORE_INDEX
    reflectance = np.stack(
        [SPECTRA[int(c)] if c != IGNORE_INDEX else VEGETATION for c in mask.ravel()]
    )
    reflectance = reflectance.T.reshape(13, size, size)
    reflectance *= 1 + 0.03 * rng.standard_normal(reflectance.shape).astype(np.float32)
    return np.rint(reflectance * 10000).astype(np.uint16), mask


@pytest.fixture
def labeled_dataset(tmp_path):
    """A dataset folder: scene0 in train, scene1-3 in test, 13 L1C bands, 48 x 48 px."""
    root = tmp_path / "dataset"
    with DatasetWriter(root) as writer:
        for index, split in enumerate(["train", "test", "test", "test"]):
            dn, mask = labeled_scene(index)
            grid = Grid(
                "EPSG:32632", Affine(10, 0, 300000 + 1000 * index, 0, -10, 5000000), *mask.shape
            )
            writer.add(
                f"scene{index}",
                dn,
                mask,
                grid,
                L1C_BANDS,
                site=f"site{index}",
                date="2021-06-01",
                label_source="simulated",
                split=split,
            )
    return root
