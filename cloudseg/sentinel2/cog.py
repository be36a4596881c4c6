"""Write rasters as cloud-optimized GeoTIFFs, atomically: the one COG writer of the code base.

:class:`CogWriter` takes a raster window by window (or whole) into a tiled GeoTIFF aside, then
:func:`publish` converts it to a COG (GDAL's COG driver: DEFLATE, predictor 2 for integers and 3
for floats, 512 px blocks, overviews by nearest for categorical rasters, else average) written to
``<name>.partial.tif`` beside the target and renamed only when complete, so a reader never sees
half a file and an interrupted run leaves nothing that looks finished. :func:`write_cog` is the
same for an array in memory. Masks, predictions, composites and simulated scenes all go through
it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.windows import Window

from cloudseg.sentinel2.grid import Grid

#: Block size (pixels) of every COG, and of the tiled GeoTIFFs they are assembled from.
TILE_SIZE = 512


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class CogWriter:
    """A raster on ``grid`` written window by window, then published as a COG at ``path``.

    The pixels go into a tiled GeoTIFF in ``workdir`` (default: beside ``path``, as
    ``.<name>.tiled.tif``) through :attr:`dataset` (an open rasterio dataset: band descriptions,
    scales and tags set there travel to the COG). ``level`` is the DEFLATE level (``None``:
    GDAL's default, 6); ``blocksize`` the tile size (pixels). :func:`publish` writes the COG; :meth:`close` (also on leaving a
    ``with`` block) removes the tiled file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        grid: Grid,
        *,
        count: int,
        dtype: Any,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
        categorical: bool = False,
        tags: Mapping[str, Any] | None = None,
        level: int | None = None,
        blocksize: int = TILE_SIZE,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        if band_names is not None and len(band_names) != count:
            raise ValueError(f"{len(band_names)} band names for {count} bands in {self.path}.")
        self.grid = grid
        self.categorical = categorical
        self.level = level
        self.blocksize = blocksize
        self.floating = np.issubdtype(np.dtype(dtype), np.floating)
        folder = Path(workdir) if workdir is not None else self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        self.tiled = folder / f".{self.path.stem}.tiled.tif"
        self.dataset = rasterio.open(
            self.tiled,
            "w",
            driver="GTiff",
            count=count,
            dtype=dtype,
            nodata=nodata,
            tiled=True,
            blockxsize=blocksize,
            blockysize=blocksize,
            BIGTIFF="IF_SAFER",
            **grid.to_profile(),
        )
        try:
            for index, name in enumerate(band_names or (), start=1):
                self.dataset.set_band_description(index, str(name))
            if tags:
                self.dataset.update_tags(**{key: str(value) for key, value in tags.items()})
        except BaseException:
            self.close()
            raise

    def write(self, data: np.ndarray, window: Window | None = None) -> None:
        """Write ``data`` (``(bands, h, w)`` or ``(h, w)`` for one band) at ``window`` (whole)."""
        if data.ndim == 2:
            data = data[np.newaxis]
        self.dataset.write(data, window=window)

    def copy_to(self, target: Path) -> None:
        """Close the tiled GeoTIFF and copy it to a COG at ``target``."""
        self.dataset.close()
        options = {} if self.level is None else {"level": self.level}
        rasterio.shutil.copy(
            self.tiled,
            target,
            driver="COG",
            compress="DEFLATE",
            predictor=3 if self.floating else 2,
            blocksize=self.blocksize,
            overview_resampling=(
                Resampling.nearest if self.categorical else Resampling.average
            ).name,
            bigtiff="IF_SAFER",
            num_threads="ALL_CPUS",
            **options,
        )

    def close(self) -> None:
        self.dataset.close()
        self.tiled.unlink(missing_ok=True)

    def __enter__(self) -> CogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def publish(*writers: CogWriter) -> None:
    """Write each writer's COG at its path; all are renamed into place only when all succeeded."""
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(atomic_path(writer.path)) for writer in writers]
        for writer, target in zip(writers, targets, strict=True):
            writer.copy_to(target)
    for writer in writers:
        writer.close()


def write_cog(
    path: str | os.PathLike,
    data: np.ndarray,
    grid: Grid,
    *,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    categorical: bool = False,
    tags: Mapping[str, Any] | None = None,
    blocksize: int = TILE_SIZE,
) -> Path:
    """Write ``data`` (``(bands, y, x)`` or ``(y, x)``) on ``grid`` as a COG at ``path``.

    Overviews use nearest resampling for ``categorical`` layers (masks, classes, counts) and
    average otherwise. Band descriptions carry ``band_names``; ``tags`` go to the dataset metadata.
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ValueError(f"write_cog expects (bands, y, x) or (y, x), got shape {data.shape}.")
    if data.shape[1:] != grid.shape:
        raise ValueError(
            f"Array shape {data.shape[1:]} does not match the grid {grid.shape} for {path}."
        )
    with CogWriter(
        path, grid, count=data.shape[0], dtype=data.dtype, nodata=nodata,
        band_names=band_names, categorical=categorical, tags=tags, blocksize=blocksize,
    ) as writer:  # fmt: skip
        writer.write(data)
        publish(writer)
    return Path(path)
