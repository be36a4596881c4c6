"""Write a finished composite run: COGs assembled from the window files, and the run JSON.

Outputs in the output folder:

- ``composite.tif``: uint16 DN harmonised to offset 0 (reflectance = DN / 10000), one band per
  output band (band descriptions are the band names, so :func:`cloudseg.sentinel2.reader.open_scene`
  reads it like a scene), nodata 0.
- ``count.tif``: uint16, the number of valid (unmasked, with data) observations per pixel.
- ``provenance.tif`` (observation-picking methods only): uint32 sensing date ``YYYYMMDD`` of the
  observation each value came from, nodata 0; one band per output band, or one band for a
  date-consistent composite (``key_bands``).
- ``exclusion_sources.tif`` (with the temporal test, :mod:`composite.temporal_rules`): uint16,
  per pixel the observations excluded by the single-date mask alone (``model``), the temporal
  test alone (``temporal``), both (``both``), and single-date calls the test overruled
  (``overruled``), one band each.
- ``run.json``: inputs, dates, skipped scenes, masks, checkpoint hash, configuration, counts
  (``temporal.excluded_by``: the same four counts summed over the grid).

Windows are first written into tiled GeoTIFFs in the work folder, one window at a time (memory
stays at one window), then published together as COGs (:class:`cloudseg.sentinel2.cog.CogWriter`),
so an output file exists only when complete; ``run.json`` is written last and marks a finished run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from tqdm.auto import tqdm

from cloudseg.sentinel2.cog import CogWriter, atomic_path, publish
from composite.driver import COMPOSITE_NODATA, GDAL_CACHE_MB, CompositeRun
from composite.output_grid import grid_record
from composite.temporal_rules import SOURCE_NAMES

log = logging.getLogger(__name__)

PROVENANCE_NODATA = 0
RUN_JSON = "run.json"


@dataclass(frozen=True)
class CompositeOutputs:
    """Paths of a finished run's outputs (``provenance`` is ``None`` for ``linear``)."""

    out_dir: Path
    composite: Path
    count: Path
    provenance: Path | None
    run_json: Path
    exclusion_sources: Path | None = None

    def record(self) -> dict[str, str | None]:
        return {
            "composite": self.composite.name,
            "count": self.count.name,
            "provenance": self.provenance.name if self.provenance else None,
            "exclusion_sources": (self.exclusion_sources.name if self.exclusion_sources else None),
            "run_json": self.run_json.name,
        }


def output_paths(out_dir: str | Path, picks: bool, temporal: bool = False) -> CompositeOutputs:
    out_dir = Path(out_dir)
    return CompositeOutputs(
        out_dir=out_dir,
        composite=out_dir / "composite.tif",
        count=out_dir / "count.tif",
        provenance=out_dir / "provenance.tif" if picks else None,
        run_json=out_dir / RUN_JSON,
        exclusion_sources=out_dir / "exclusion_sources.tif" if temporal else None,
    )


def scene_dates(run: CompositeRun) -> np.ndarray:
    """``YYYYMMDD`` (uint32) of each scene of the run, in stack order."""
    return np.array(
        [int(scene.datetime.strftime("%Y%m%d")) for scene in run.job.scenes], dtype=np.uint32
    )


def write_rasters(
    run: CompositeRun, out_dir: str | Path, tags: Mapping[str, Any], *, progress: bool = True
) -> tuple[CompositeOutputs, dict[str, Any]]:
    """Assemble the window files into COGs in ``out_dir``; returns the paths and pixel counts
    (``no_valid``: pixels without a valid observation; ``fallback``: of those, filled from all
    observations)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        return _write_rasters(run, out_dir, tags, progress)


def _write_rasters(
    run: CompositeRun, out_dir: str | Path, tags: Mapping[str, Any], progress: bool
) -> tuple[CompositeOutputs, dict[str, Any]]:
    job = run.job
    picks = job.method != "linear"
    outputs = output_paths(out_dir, picks, job.temporal is not None)
    outputs.out_dir.mkdir(parents=True, exist_ok=True)
    assembly = run.work_dir / "assembly"
    dates = scene_dates(run)
    totals = {"no_valid": 0, "fallback": 0}
    excluded_by = dict.fromkeys(SOURCE_NAMES, 0)
    with contextlib.ExitStack() as stack:
        composite = stack.enter_context(
            CogWriter(
                outputs.composite, job.grid, count=len(job.bands), dtype="uint16",
                nodata=COMPOSITE_NODATA, band_names=job.bands, workdir=assembly,
                tags={**tags, "DN_OFFSET": "0", "REFLECTANCE_SCALE": "0.0001"},
            )
        )  # fmt: skip
        count = stack.enter_context(
            CogWriter(
                outputs.count, job.grid, count=1, dtype="uint16", categorical=True,
                band_names=["valid_observations"], tags=tags, workdir=assembly,
            )
        )  # fmt: skip
        writers = [composite, count]
        if outputs.provenance is not None:
            names = ["date"] if job.key is not None else [f"date_{b}" for b in job.bands]
            provenance = stack.enter_context(
                CogWriter(
                    outputs.provenance, job.grid, count=len(names), dtype="uint32",
                    nodata=PROVENANCE_NODATA, categorical=True, band_names=names,
                    tags={**tags, "DATE_FORMAT": "YYYYMMDD"}, workdir=assembly,
                )
            )  # fmt: skip
            writers.append(provenance)
        if outputs.exclusion_sources is not None:
            sources = stack.enter_context(
                CogWriter(
                    outputs.exclusion_sources, job.grid, count=len(SOURCE_NAMES),
                    dtype="uint16", band_names=[f"excluded_by_{n}" for n in SOURCE_NAMES],
                    tags=tags, workdir=assembly,
                )
            )  # fmt: skip
            writers.append(sources)
        for index, window in enumerate(
            tqdm(run.windows, desc="write outputs", unit="window", disable=not progress)
        ):
            with np.load(job.window_path(index)) as saved:
                composite.write(saved["composite"], window=window)
                count.write(saved["count"].astype(np.uint16), window=window)
                totals["no_valid"] += int(np.count_nonzero(saved["count"] == 0))
                totals["fallback"] += int(np.count_nonzero(saved["fallback"]))
                if outputs.provenance is not None:
                    index_array = saved["index"]
                    picked_dates = np.where(
                        index_array >= 0, dates[np.clip(index_array, 0, None)], 0
                    )
                    provenance.write(picked_dates.astype(np.uint32), window=window)
                if outputs.exclusion_sources is not None:
                    sources.write(saved["sources"].astype(np.uint16), window=window)
                    for i, name in enumerate(SOURCE_NAMES):
                        excluded_by[name] += int(saved["sources"][i].sum(dtype=np.int64))
        publish(*writers)
    if outputs.exclusion_sources is not None:
        totals["excluded_by"] = excluded_by
    shutil.rmtree(assembly, ignore_errors=True)
    return outputs, totals


def run_record(
    run: CompositeRun,
    outputs: CompositeOutputs,
    pixel_totals: Mapping[str, int],
    *,
    masks: dict[str, Any],
    config: Mapping[str, Any],
    cluster: Mapping[str, Any],
    timing_s: Mapping[str, float],
) -> dict[str, Any]:
    """The content of ``run.json``."""
    job = run.job
    pixels = job.grid.height * job.grid.width
    scenes = []
    for scene, mask_path in zip(job.scenes, job.mask_paths, strict=True):
        scenes.append({**scene.record(), "mask": mask_path})
    return {
        "format": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run_key": run.run_key,
        "outputs": outputs.record(),
        "composite": {
            "bands": list(job.bands),
            "q": job.q,
            "method": job.method,
            "key_bands": [job.bands[i] for i in job.key] if job.key else None,
            "no_valid": job.no_valid,
            "units": "DN harmonised to offset 0: reflectance = DN / 10000; 0 is nodata",
            "provenance": "sensing date YYYYMMDD of the picked observation; 0 is nodata",
        },
        "grid": grid_record(job.grid),
        "stack": {**run.stack.summary(), "scenes_used": scenes},
        "masks": masks,
        "windows": {
            "total": len(run.windows),
            "reused": run.reused_windows,
            "computed": run.computed_windows,
        },
        "pixels": {
            "total": pixels,
            "no_valid": pixel_totals["no_valid"],
            "fallback": pixel_totals["fallback"],
        },
        "temporal": _temporal_record(run, pixel_totals),
        "cluster": dict(cluster),
        "timing_s": {key: round(value, 3) for key, value in timing_s.items()},
        "config": dict(config),
    }


def _temporal_record(run: CompositeRun, pixel_totals: Mapping[str, Any]) -> dict[str, Any]:
    """``run.json``'s ``temporal``: the rule and test, whether it ran (and why not), and the
    observations excluded by each source."""
    if run.temporal is None:
        return {"rule": "none", "applied": False, "skipped_because": "no temporal settings"}
    return {**run.temporal, "excluded_by": pixel_totals.get("excluded_by")}


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    """Write JSON atomically (NaN is not allowed: it is not JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False, default=str) + "\n")
    return path
