"""Checks of a composite run's inputs and outputs before the first scene is read.

What each settings class checks on construction (keys, types, ranges) is not repeated here;
these are the checks that look at the file system: ``out_dir`` is (or can be) a writable folder,
the rasters ``evaluation.reference`` / ``evaluation.compare_with`` open as rasters, and the
checkpoint of ``masks.source=model`` loads as one. Each error names the key, the value and what
to pass instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from cloudseg.checkpoint import read_checkpoint_metadata
from composite.evidence.settings import EvidenceSettings
from composite.masking import MaskSettings


def check_out_dir(out_dir: str | os.PathLike, key: str = "out_dir") -> None:
    """``out_dir`` is a folder, or can be created as one, and can be written to."""
    out_dir = Path(out_dir)
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies inside the file {existing}"
        raise NotADirectoryError(
            f"{key}={out_dir} {where}, not a folder. Pass a folder path for the outputs "
            "(composite.tif, count.tif, run.json...): a new or an existing folder."
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{key}={out_dir}: {existing} cannot be written to (permissions). Pass a folder you "
            "can write to."
        )


def check_raster(path: str | os.PathLike, key: str, what: str) -> None:
    """``path`` opens as a raster with rasterio."""
    try:
        with rasterio.open(path):
            pass
    except RasterioError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(
            f"{key}={path} is not a readable raster ({first_line}). Give the path of {what} "
            "(a GeoTIFF/COG), or null."
        ) from None


def check_run_inputs(masks: MaskSettings, evidence: EvidenceSettings | None) -> None:
    """The checkpoint loads (``masks.source=model``) and the evaluation rasters open."""
    if masks.source == "model" and masks.checkpoint:
        read_checkpoint_metadata(masks.checkpoint, key="ckpt")
    if evidence is None:
        return
    evaluation = evidence.evaluation
    if evaluation.reference:
        check_raster(
            evaluation.reference, "evaluation.reference", "a clear-surface reflectance COG"
        )
    if evaluation.compare_with:
        check_raster(
            evaluation.compare_with, "evaluation.compare_with", "the neighbouring tile's composite"
        )
