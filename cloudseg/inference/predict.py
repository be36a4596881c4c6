"""Predict a whole scene: a class raster and a probability raster, as COGs on the scene's grid.

Outputs (both on ``scene.grid()``, the scene's own grid, same CRS, transform and shape):

- ``<name>_classes.tif``: uint8, one band, codes of :mod:`cloudseg.labels` (0 clear,
  1 thick_cloud, 2 thin_cloud, 3 cloud_shadow), nodata 255 where the input has no data
  (every model band stored at the output pixel size is nodata, see :func:`footprint_bands`).
- ``<name>_probabilities.tif``: uint8, one band per class (band descriptions are the class names),
  value ``round(p * 254)``, so 0-254 is probability 0-1; nodata 255. The band scale is set to
  1/254, so ``rasterio``/GDAL readers that apply scales get 0-1 (see :func:`decode_probabilities`).

Classes follow the probabilities by the predictor's :class:`~cloudseg.inference.spec.MaskRule`
(``predictor.spec.rule``; argmax unless it sets thresholds), recorded in the tags of both rasters.

Memory stays bounded for a full 10980 x 10980 tile: windows are read lazily, blended in strips
(:meth:`WindowedPredictor.probability_strips`) and written strip by strip into tiled temporary
GeoTIFFs, converted to COGs at the end and renamed into place atomically. With ``resolution``
(e.g. 60 m) the model runs on ``scene.grid(resolution)``; the blended probabilities go to a
temporary float32 GeoTIFF on that grid and are upsampled bilinearly onto the output grid block by
block (:func:`upsample_bilinear`), while the nodata mask is read at the output resolution, so no
nodata pixel is ever written as a class.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.windows
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window
from scipy.ndimage import distance_transform_edt
from tqdm.auto import tqdm

from cloudseg.inference.predictor import WindowedPredictor
from cloudseg.inference.spec import CLASS_NODATA, MaskRule
from cloudseg.labels import CLASS_NAMES
from cloudseg.sentinel2.cog import TILE_SIZE, CogWriter, publish
from cloudseg.sentinel2.errors import SceneError
from cloudseg.sentinel2.grid import Grid, tile_windows

#: Probabilities are stored as ``round(p * PROBABILITY_SCALE)`` in uint8.
PROBABILITY_SCALE = 254
PROBABILITY_NODATA = 255
#: Output blocks (pixels) when upsampling from a coarser inference grid; a multiple of the tiles.
OUTPUT_BLOCK = 1024
#: DEFLATE level of the output COGs: 1 is ~4x faster than the default 6 for ~25% larger files
#: (masks are written for every scene; composites, written once per run, keep the default).
COMPRESSION_LEVEL = 1


class Scene(Protocol):
    """What prediction needs from :func:`cloudseg.sentinel2.reader.open_scene`'s scenes."""

    bands: tuple[str, ...]
    source: str
    metadata: Mapping[str, Any]

    def grid(self, resolution: float | None = None) -> Grid: ...

    def layer_grid(self, band: str) -> Grid: ...

    def read(self, bands, grid: Grid | None = None, window: Window | None = None) -> np.ndarray: ...

    def read_reflectance(
        self, bands, grid: Grid | None = None, window: Window | None = None
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class ScenePrediction:
    """Where a scene's predictions were written, and on which grids."""

    classes: Path
    probabilities: Path
    grid: Grid
    inference_grid: Grid


def output_paths(out_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """``(<out_dir>/<name>_classes.tif, <out_dir>/<name>_probabilities.tif)``."""
    out_dir = Path(out_dir)
    return out_dir / f"{name}_classes.tif", out_dir / f"{name}_probabilities.tif"


def encode_probabilities(probabilities: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Float probabilities -> uint8 ``round(p * 254)``, ``PROBABILITY_NODATA`` where not valid."""
    encoded = np.rint(np.clip(np.nan_to_num(probabilities), 0.0, 1.0) * PROBABILITY_SCALE)
    encoded = encoded.astype(np.uint8)
    encoded[:, ~valid] = PROBABILITY_NODATA
    return encoded


def decode_probabilities(encoded: np.ndarray) -> np.ndarray:
    """uint8 probability raster values -> float32 in 0-1, NaN for nodata."""
    probabilities = encoded.astype(np.float32) / PROBABILITY_SCALE
    probabilities[encoded == PROBABILITY_NODATA] = np.nan
    return probabilities


class PredictionWriter:
    """Class and probability rasters written window by window, then published together as COGs.

    Classes follow the writer's ``rule``. Both rasters go through
    :class:`~cloudseg.sentinel2.cog.CogWriter` (tiled GeoTIFFs in ``workdir``, then COGs renamed
    into place only when both are complete), so an interrupted run leaves no output behind.
    """

    def __init__(
        self,
        grid: Grid,
        classes_path: Path,
        probabilities_path: Path,
        workdir: Path,
        tags: Mapping[str, Any],
        rule: MaskRule,
    ) -> None:
        self.rule = rule
        classes = " ".join(f"{code}={name}" for code, name in enumerate(CLASS_NAMES))
        self.classes = CogWriter(
            classes_path, grid, count=1, dtype="uint8", nodata=CLASS_NODATA, categorical=True,
            band_names=["class"], tags={**tags, "CLASSES": classes},
            level=COMPRESSION_LEVEL, workdir=workdir,
        )  # fmt: skip
        self.probabilities = CogWriter(
            probabilities_path, grid, count=len(CLASS_NAMES), dtype="uint8",
            nodata=PROBABILITY_NODATA, band_names=CLASS_NAMES,
            tags={**tags, "PROBABILITY_SCALE": PROBABILITY_SCALE},
            level=COMPRESSION_LEVEL, workdir=workdir,
        )  # fmt: skip
        self.probabilities.dataset.scales = [1.0 / PROBABILITY_SCALE] * len(CLASS_NAMES)

    def write(self, window: Window, probabilities: np.ndarray, valid: np.ndarray) -> None:
        """Write one window: ``probabilities`` ``(classes, h, w)``, ``valid`` ``(h, w)``."""
        classes = self.rule.classes(probabilities)
        classes[~valid] = CLASS_NODATA
        self.classes.write(classes, window=window)
        self.probabilities.write(encode_probabilities(probabilities, valid), window=window)

    def close(self) -> None:
        self.classes.close()
        self.probabilities.close()

    def publish(self) -> None:
        """Both COGs at their paths, renamed into place only when both succeeded."""
        publish(self.classes, self.probabilities)


def predict_scene(
    predictor: WindowedPredictor,
    scene: Scene,
    classes_path: str | os.PathLike,
    probabilities_path: str | os.PathLike,
    *,
    tags: Mapping[str, Any] | None = None,
) -> ScenePrediction:
    """Predict ``scene`` with ``predictor`` and write both rasters on ``scene.grid()``.

    ``predictor.spec.resolution`` (metres) runs the model on ``scene.grid(resolution)`` and
    upsamples the probabilities bilinearly; ``None`` runs it on the output grid itself.
    ``predictor.spec.rule`` turns probabilities into classes; it is recorded in the tags of both
    rasters.
    """
    resolution, rule = predictor.spec.resolution, predictor.spec.rule
    missing = [band for band in predictor.bands if band not in scene.bands]
    if missing:
        raise SceneError(
            f"{scene.source} lacks bands {missing} that the checkpoint needs "
            f"({list(predictor.bands)}); it has {list(scene.bands)}. Use a checkpoint trained on "
            "these bands (e.g. an L2A checkpoint for L2A scenes)."
        )
    classes_path, probabilities_path = Path(classes_path), Path(probabilities_path)
    grid = scene.grid()
    inference_grid = grid if resolution is None else scene.grid(resolution)
    all_tags = {
        "SOURCE": scene.source,
        "CHECKPOINT": predictor.meta.get("checkpoint", ""),
        "MODEL_BANDS": " ".join(predictor.bands),
        "INFERENCE_RESOLUTION": f"{inference_grid.resolution:g}",
        "WINDOW_SIZE": predictor.window_size,
        "WINDOW_OVERLAP": predictor.overlap,
        "FLIPS": predictor.spec.flips,
        **rule.tags(),
        **(tags or {}),
    }
    classes_path.parent.mkdir(parents=True, exist_ok=True)
    name = classes_path.name.removesuffix(".tif")
    with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=classes_path.parent) as workdir:
        writer = PredictionWriter(
            grid,
            classes_path,
            probabilities_path,
            Path(workdir),
            all_tags,
            rule,
        )
        try:
            if inference_grid == grid:
                _predict_on_output_grid(predictor, scene, grid, writer)
            else:
                _predict_resampled(predictor, scene, grid, inference_grid, writer, Path(workdir))
            writer.publish()
        finally:
            writer.close()
    return ScenePrediction(classes_path, probabilities_path, grid, inference_grid)


def footprint_bands(scene: Scene, bands: Sequence[str], grid: Grid) -> tuple[str, ...]:
    """The bands that decide where the output has data: those of ``bands`` stored at ``grid``'s
    pixel size (read without resampling: exact and cheap), or all ``bands`` if none is.

    Classes and probabilities are written only where one of them has data, a subset of where
    any model band has data (the two differ at most by a coarse pixel at swath edges), so no
    nodata pixel is ever written as a class.
    """
    native = tuple(
        band
        for band in bands
        if math.isclose(scene.layer_grid(band).resolution, grid.resolution, rel_tol=1e-6)
    )
    return native or tuple(bands)


def _window_reader(predictor: WindowedPredictor, scene: Scene, grid: Grid):
    def read_window(window: Window) -> np.ndarray:
        return scene.read_reflectance(predictor.bands, grid=grid, window=window)

    return read_window


def _predict_on_output_grid(
    predictor: WindowedPredictor,
    scene: Scene,
    grid: Grid,
    writer: PredictionWriter,
) -> None:
    """Model on the output grid: each finished strip goes straight to the writer."""
    footprint = footprint_bands(scene, predictor.bands, grid)
    strips = predictor.probability_strips(
        _window_reader(predictor, scene, grid),
        grid.height,
        grid.width,
        valid_bands=[predictor.bands.index(band) for band in footprint],
        desc=_desc(scene),
    )
    for strip in strips:
        window = Window(0, strip.row_start, grid.width, strip.rows)
        writer.write(window, strip.probabilities, strip.valid)


def _predict_resampled(
    predictor: WindowedPredictor,
    scene: Scene,
    grid: Grid,
    inference_grid: Grid,
    writer: PredictionWriter,
    workdir: Path,
) -> None:
    """Model on a coarser grid, probabilities kept there, then upsampled block by block."""
    coarse_path = workdir / "coarse_probabilities.tif"
    coarse_profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": predictor.num_classes,
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": TILE_SIZE,
        "blockysize": TILE_SIZE,
        "BIGTIFF": "IF_SAFER",
        **inference_grid.to_profile(),
    }
    with rasterio.open(coarse_path, "w", **coarse_profile) as coarse:
        strips = predictor.probability_strips(
            _window_reader(predictor, scene, inference_grid),
            inference_grid.height,
            inference_grid.width,
            desc=f"{_desc(scene)} @ {inference_grid.resolution:g} m",
        )
        for strip in strips:
            probabilities = np.where(strip.valid, strip.probabilities, np.nan)
            coarse.write(
                probabilities.astype(np.float32),
                window=Window(0, strip.row_start, inference_grid.width, strip.rows),
            )
    footprint = footprint_bands(scene, predictor.bands, grid)
    blocks = tile_windows(grid.height, grid.width, OUTPUT_BLOCK)
    progress = tqdm(
        blocks,
        desc=f"{_desc(scene)} upsample",
        unit="block",
        disable=not predictor.progress,
    )
    with rasterio.open(coarse_path) as coarse, progress:
        for window in progress:
            block_grid = grid.window_grid(window)
            probabilities = upsample_bilinear(coarse, inference_grid, block_grid)
            has_data = (scene.read(footprint, grid=grid, window=window) != 0).any(axis=0)
            valid = has_data & np.isfinite(probabilities).all(axis=0)
            writer.write(window, probabilities, valid)


def fill_nearest(data: np.ndarray) -> np.ndarray:
    """Replace NaN pixels of ``(bands, y, x)`` by their nearest pixel without NaN (all-NaN: kept)."""
    missing = np.isnan(data).any(axis=0)
    if not missing.any() or missing.all():
        return data
    rows, cols = distance_transform_edt(missing, return_distances=False, return_indices=True)
    return data[:, rows, cols]


def upsample_bilinear(
    coarse: rasterio.io.DatasetReader, coarse_grid: Grid, target: Grid, margin: int = 2
) -> np.ndarray:
    """Bilinear values of the ``coarse`` raster on the (finer) ``target`` grid, float32.

    Reads the coarse pixels under ``target`` plus a ``margin``, extends valid values into NaN
    pixels (and past the raster's edge) by nearest neighbour, and resamples with GDAL. The
    extension keeps output pixels next to nodata or near the scene edge defined by their valid
    neighbours instead of turning them into nodata; the caller masks nodata at the target
    resolution.
    """
    left, bottom, right, top = target.bounds
    inverse = ~coarse_grid.transform
    col_start, row_start = (math.floor(v) - margin for v in inverse @ (left, top))
    col_stop, row_stop = (math.ceil(v) + margin for v in inverse @ (right, bottom))
    window = Window(col_start, row_start, col_stop - col_start, row_stop - row_start)
    source = coarse.read(window=window, boundless=True, fill_value=np.nan, masked=False)
    source = fill_nearest(source.astype(np.float32))
    destination = np.full((source.shape[0], *target.shape), np.nan, dtype=np.float32)
    if np.isnan(source).any():  # nothing valid near the target: leave it nodata
        return destination
    reproject(  # no nodata left in the source: GDAL's fast path
        source,
        destination,
        src_transform=rasterio.windows.transform(window, coarse_grid.transform),
        src_crs=coarse_grid.crs,
        dst_transform=target.transform,
        dst_crs=target.crs,
        resampling=Resampling.bilinear,
    )
    return destination


def _desc(scene: Scene) -> str:
    return Path(str(scene.source)).name or str(scene.source)
