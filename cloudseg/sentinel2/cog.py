"""Write rasters as cloud-optimized GeoTIFFs, atomically.

A COG is written to ``<name>.partial.tif`` beside the target and renamed only when complete, so a
reader never sees half a file and an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

from cloudseg.sentinel2.grid import Grid


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


def write_cog(
    path: str | os.PathLike,
    data: np.ndarray,
    grid: Grid,
    *,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
    categorical: bool = False,
    compress: str = "DEFLATE",
    blocksize: int = 512,
    tags: dict[str, str] | None = None,
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
    if band_names is not None and len(band_names) != data.shape[0]:
        raise ValueError(f"{len(band_names)} band names for {data.shape[0]} bands in {path}.")
    predictor = 3 if np.issubdtype(data.dtype, np.floating) else 2
    profile = {
        "driver": "COG",
        "dtype": data.dtype,
        "count": data.shape[0],
        "nodata": nodata,
        "compress": compress,
        "predictor": predictor,
        "blocksize": blocksize,
        "overview_resampling": (Resampling.nearest if categorical else Resampling.average).name,
        "BIGTIFF": "IF_SAFER",
        **grid.to_profile(),
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
        if band_names is not None:
            for index, name in enumerate(band_names, start=1):
                dst.set_band_description(index, str(name))
        if tags:
            dst.update_tags(**{k: str(v) for k, v in tags.items()})
    return Path(path)
