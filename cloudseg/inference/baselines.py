"""Cloud-mask producers to compare: the checkpoint, s2cloudless, the L2A SCL and a threshold rule.

Every producer maps a scene (:func:`cloudseg.sentinel2.reader.open_scene`) to a class raster on
``scene.grid()`` with the codes of :mod:`cloudseg.labels`, and 255 where it makes no prediction
(no input data, or SCL's no-data/defective classes). ``missing(scene)`` lists what a scene lacks
for the producer (s2cloudless needs the 10 L1C bands it was trained on, SCL needs an L2A SCL
layer); evaluation skips a producer on such scenes and says so.

``emits`` names the classes a producer can output: s2cloudless gives one cloud class (written as
``thick_cloud``), SCL and the threshold rule give all four.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import rasterio
from s2cloudless import S2PixelCloudDetector

from cloudseg.data.importers.scl import scl_to_mask
from cloudseg.inference.predict import CLASS_NODATA, Scene, output_paths, predict_scene
from cloudseg.inference.predictor import WindowedPredictor
from cloudseg.labels import CLASS_NAMES, CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import S2CLOUDLESS_BANDS
from cloudseg.sentinel2.grid import Grid, reproject_nearest


class MaskProducer(ABC):
    """Something that turns a scene into a class raster on ``scene.grid()``."""

    #: Short name used in tables, figures and the CLI.
    name: str = ""
    #: The classes this producer can output.
    emits: tuple[str, ...] = CLASS_NAMES
    #: Bands or layers the scene must have.
    required: tuple[str, ...] = ()

    def missing(self, scene: Scene) -> list[str]:
        """Bands/layers this producer needs that ``scene`` lacks (empty: it applies)."""
        return [band for band in self.required if band not in scene.bands]

    @abstractmethod
    def predict(self, scene: Scene) -> np.ndarray:
        """uint8 class codes on ``scene.grid()``, ``CLASS_NODATA`` where there is no prediction."""


def no_data(scene: Scene, bands: tuple[str, ...]) -> np.ndarray:
    """True where every one of ``bands`` is nodata on ``scene.grid()`` (read one band at a time)."""
    missing = np.ones(scene.grid().shape, dtype=bool)
    for band in bands:
        missing &= scene.read([band])[0] == 0
    return missing


class CheckpointProducer(MaskProducer):
    """The trained model, run exactly as ``cloudfree-predict`` runs it (COGs, then read back)."""

    def __init__(
        self,
        predictor: WindowedPredictor,
        *,
        resolution: float | None = None,
        cloud_threshold: float | None = None,
        clear_threshold: float | None = None,
        name: str = "checkpoint",
    ) -> None:
        self.predictor = predictor
        self.resolution = resolution
        self.cloud_threshold = cloud_threshold
        self.clear_threshold = clear_threshold
        self.name = name
        self.required = predictor.bands

    def predict(self, scene: Scene) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="cloudfree-evaluate-") as folder:
            classes_path, probabilities_path = output_paths(folder, "scene")
            predict_scene(
                self.predictor,
                scene,
                classes_path,
                probabilities_path,
                resolution=self.resolution,
                cloud_threshold=self.cloud_threshold,
                clear_threshold=self.clear_threshold,
            )
            with rasterio.open(classes_path) as dataset:
                return dataset.read(1)


class S2CloudlessProducer(MaskProducer):
    """Sentinel Hub's s2cloudless (LightGBM on 10 L1C bands, TOA reflectance 0-1), binary.

    Run the way Sentinel Hub runs it in production: bands read at ``resolution`` (160 m), cloud
    probability thresholded at ``threshold`` (0.4) after averaging over a disk of
    ``average_over`` pixels (4) and dilated by ``dilation_size`` pixels (2) (the
    ``S2PixelCloudDetector`` parameters, in pixels of ``resolution``). The mask is brought onto
    the scene grid by nearest neighbour (:func:`~cloudseg.sentinel2.grid.reproject_nearest`);
    cloud is written as ``thick_cloud``. Scenes with a pixel size coarser than ``resolution``
    are processed at their own.
    """

    emits = ("clear", "thick_cloud")
    required = S2CLOUDLESS_BANDS

    def __init__(
        self,
        *,
        resolution: float = 160.0,
        threshold: float = 0.4,
        average_over: int = 4,
        dilation_size: int = 2,
        name: str = "s2cloudless",
    ) -> None:
        self.resolution = resolution
        self.name = name
        self.detector = S2PixelCloudDetector(
            threshold=threshold,
            average_over=average_over,
            dilation_size=dilation_size,
            all_bands=False,
        )

    def processing_grid(self, scene: Scene) -> Grid:
        grid = scene.grid()
        return grid if grid.resolution >= self.resolution else scene.grid(self.resolution)

    def cloud_mask(self, scene: Scene, grid: Grid) -> np.ndarray:
        """Binary cloud mask (uint8) on ``grid``; pixels without data are 0 (checked later)."""
        reflectance = scene.read_reflectance(S2CLOUDLESS_BANDS, grid=grid)
        bands_last = np.nan_to_num(np.moveaxis(reflectance, 0, -1), nan=0.0)
        probability = self.detector.get_cloud_probability_maps(bands_last[np.newaxis])
        return self.detector.get_mask_from_prob(probability)[0].astype(np.uint8)

    def predict(self, scene: Scene) -> np.ndarray:
        grid = scene.grid()
        processing_grid = self.processing_grid(scene)
        cloud = self.cloud_mask(scene, processing_grid)
        classes = np.where(cloud > 0, THICK_CLOUD, CLEAR).astype(np.uint8)
        if processing_grid != grid:
            classes = reproject_nearest(classes, processing_grid, grid, nodata=CLASS_NODATA)
        classes[no_data(scene, S2CLOUDLESS_BANDS)] = CLASS_NODATA
        return classes


class SCLProducer(MaskProducer):
    """The L2A scene classification, mapped as the SCL importer maps it.

    3 -> cloud_shadow, 8/9 -> thick_cloud, 10 -> thin_cloud, 0/1 -> no prediction, the rest
    clear (the mapping lives in :mod:`cloudseg.data.importers.scl`).
    """

    required = ("SCL",)

    def __init__(self, name: str = "scl") -> None:
        self.name = name

    def predict(self, scene: Scene) -> np.ndarray:
        scl = scene.read(["SCL"])[0]
        return scl_to_mask(scl, f"SCL of {scene.source}")


class SpectralThresholdProducer(MaskProducer):
    """A simple per-pixel spectral rule on TOA/BOA reflectance, in this order of precedence:

    - ``thick_cloud``: bright in blue (B02 > ``blue``) and in SWIR (B11 > ``swir``, which
      snow is not: it is dark at 1.6 um) and not snow-like (NDSI (B03 - B11) / (B03 + B11) <
      ``ndsi``);
    - ``thin_cloud``: cirrus band B10 > ``cirrus`` and not snow-like (only where B10 exists,
      i.e. L1C; high snow fields reflect at 1.375 um too);
    - ``cloud_shadow``: dark in NIR and SWIR (B8A < ``dark_nir``, B11 < ``dark_swir``) but with
      NIR above blue, which excludes water (darker in NIR than in blue);
    - ``clear`` otherwise.

    Thresholds are the usual textbook values for Sentinel-2 reflectance; no spatial context and no
    cloud-shadow geometry are used, which is what makes it a baseline.
    """

    required = ("B02", "B03", "B8A", "B11")

    def __init__(
        self,
        *,
        blue: float = 0.22,
        swir: float = 0.15,
        ndsi: float = 0.4,
        cirrus: float = 0.012,
        dark_nir: float = 0.15,
        dark_swir: float = 0.1,
        name: str = "threshold",
    ) -> None:
        self.blue, self.swir, self.ndsi, self.cirrus = blue, swir, ndsi, cirrus
        self.dark_nir, self.dark_swir = dark_nir, dark_swir
        self.name = name

    def classify(self, reflectance: dict[str, np.ndarray]) -> np.ndarray:
        """Class codes from reflectance arrays by band name (``B10`` optional)."""
        blue, green, nir, swir = (reflectance[b] for b in ("B02", "B03", "B8A", "B11"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ndsi = (green - swir) / (green + swir)
        classes = np.full(blue.shape, CLEAR, dtype=np.uint8)
        shadow = (nir < self.dark_nir) & (swir < self.dark_swir) & (nir > blue)
        classes[shadow] = CLOUD_SHADOW
        not_snow = ndsi < self.ndsi
        if "B10" in reflectance:
            classes[(reflectance["B10"] > self.cirrus) & not_snow] = THIN_CLOUD
        thick = (blue > self.blue) & (swir > self.swir) & not_snow
        classes[thick] = THICK_CLOUD
        return classes

    def predict(self, scene: Scene) -> np.ndarray:
        bands = self.required + (("B10",) if "B10" in scene.bands else ())
        stack = scene.read_reflectance(bands)
        classes = self.classify(dict(zip(bands, stack, strict=True)))
        classes[np.isnan(stack).all(axis=0)] = CLASS_NODATA
        return classes


def producer_names() -> tuple[str, ...]:
    """Names accepted by :func:`build_producers` (and the evaluation CLI)."""
    return ("checkpoint", "s2cloudless", "scl", "threshold")


def build_producers(
    names: list[str] | tuple[str, ...],
    *,
    checkpoint: str | Path | None = None,
    predictor: WindowedPredictor | None = None,
    resolution: float | None = None,
    cloud_threshold: float | None = None,
    clear_threshold: float | None = None,
    s2cloudless_resolution: float = 160.0,
) -> list[MaskProducer]:
    """Producers by name, in the order given; ``checkpoint`` needs a checkpoint or a predictor.

    ``resolution``, ``cloud_threshold`` and ``clear_threshold`` apply to the checkpoint,
    ``s2cloudless_resolution`` to s2cloudless.
    """
    unknown = [name for name in names if name not in producer_names()]
    if unknown:
        raise ValueError(f"Unknown mask producers {unknown}; choose from {list(producer_names())}.")
    producers: list[MaskProducer] = []
    for name in names:
        if name == "checkpoint":
            if predictor is None:
                if checkpoint is None:
                    raise ValueError(
                        "The 'checkpoint' producer needs a checkpoint: pass --checkpoint PATH "
                        "(or leave 'checkpoint' out of --producers)."
                    )
                predictor = WindowedPredictor.from_checkpoint(checkpoint)
            producers.append(
                CheckpointProducer(
                    predictor,
                    resolution=resolution,
                    cloud_threshold=cloud_threshold,
                    clear_threshold=clear_threshold,
                )
            )
        elif name == "s2cloudless":
            producers.append(S2CloudlessProducer(resolution=s2cloudless_resolution))
        elif name == "scl":
            producers.append(SCLProducer())
        else:
            producers.append(SpectralThresholdProducer())
    return producers
