"""Mask evaluation on real scenes without hand labels: every producer against a consensus reference.

The reference on each scene is where the independent real-trained detectors that can run on it
agree (:mod:`cloudseg.detectors.consensus`; by default ukis-csmask, s2cloudless where its 10 L1C
bands exist, SCL where the scene has it); where they disagree the pixel is ignored and counted.
Every producer is scored on the cloud, shadow and cloud-or-shadow views (IoU, F1), each detector
against the consensus of the *others*; the share of reference-clear pixels a producer calls cloud
or shadow measures its false alarms over bright soil, water and towns.

Scenes are found in a folder by :func:`discover_scenes`: multi-band GeoTIFFs, folders of band
files, STAC item JSON files and eo-learn numpy series (written out as COGs first, on the grid of
their ``bbox.geojson``). A producer that lacks bands on a scene is skipped there with a message
naming scene, producer and bands; a producer that fails on a scene is recorded and the others go
on. Outputs (:mod:`cloudseg.inference.real_report`): ``metrics.json``, ``metrics.md`` and one
overlay PNG per scene (RGB, reference, every producer).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.detectors.consensus import (
    VIEWS,
    Detection,
    ProducerTally,
    consensus,
    plan_detectors,
    tally,
)
from cloudseg.sentinel2.bands import AUXILIARY_LAYERS
from cloudseg.sentinel2.grid import pixel_size_m
from cloudseg.sentinel2.numpy_series import describe_series, is_series_folder, write_series_scenes
from cloudseg.sentinel2.product import product_level
from cloudseg.sentinel2.reader import describe_source, open_scene
from cloudseg.sentinel2.sources import RASTER_SUFFIXES, SceneError

#: The detectors whose agreement is the reference, by default.
DEFAULT_DETECTORS: tuple[str, ...] = ("ukis", "s2cloudless", "scl")
#: A scene counts as cloudy when the reference calls at least this share of its pixels cloud.
CLOUDY_SHARE = 0.01


@dataclass(frozen=True)
class RealScene:
    """One scene found in the folder: a ``name`` for tables and what ``open_scene`` opens."""

    name: str
    source: str


def discover_scenes(
    root: str | os.PathLike, work_dir: str | os.PathLike
) -> tuple[list[RealScene], dict[str, str]]:
    """The scenes under ``root`` and, for files that are not scenes, why (name -> reason).

    In each folder, in this order: STAC item ``.json`` files are scenes (and the folder's band
    files are then theirs); a numpy series (``REFERENCE_SCENES.npy`` + ``bbox.geojson``) gives one
    scene per date, written as COGs under ``work_dir``; a folder of band files is one scene;
    otherwise each raster whose bands are named Sentinel-2 bands is one. Sub-folders are searched
    the same way.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of scenes.")
    scenes: list[RealScene] = []
    not_scenes: dict[str, str] = {}
    _visit(root, root, Path(work_dir), scenes, not_scenes)
    if not scenes:
        raise FileNotFoundError(
            f"No Sentinel-2 scenes under {root}: expected multi-band GeoTIFFs with band "
            "descriptions, folders of band files, STAC item .json files or numpy series."
        )
    return scenes, not_scenes


def _visit(folder: Path, root: Path, work_dir: Path, scenes: list, not_scenes: dict) -> None:
    name = "" if folder == root else folder.relative_to(root).as_posix()
    items = [path for path in sorted(folder.glob("*.json")) if _is_stac_item(path)]
    if items:
        scenes += [RealScene(_label(name, path, len(items)), str(path)) for path in items]
    elif is_series_folder(folder):
        series = describe_series(folder)
        paths = write_series_scenes(series, work_dir / (name or "series"))
        scenes += [RealScene(f"{name}/{index}", str(path)) for index, path in enumerate(paths)]
    elif _band_folder(folder):
        scenes.append(RealScene(name, str(folder)))
    else:
        rasters = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES]
        readable = []
        for path in rasters:
            try:
                describe_source(path)
            except SceneError as err:
                not_scenes[path.relative_to(root).as_posix()] = str(err)
                continue
            readable.append(path)
        scenes += [RealScene(_label(name, path, len(readable)), str(path)) for path in readable]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        _visit(sub, root, work_dir, scenes, not_scenes)


def _label(folder_name: str, path: Path, siblings: int) -> str:
    if siblings == 1 and folder_name:
        return folder_name
    return f"{folder_name}/{path.stem}" if folder_name else path.stem


def _is_stac_item(path: Path) -> bool:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("type") == "Feature"


def _band_folder(folder: Path) -> bool:
    """A folder of at least two spectral band files (``B02.tif``, ``*_B02.jp2``...)."""
    try:
        layers = describe_source(folder).layers
    except SceneError:
        return False
    return len([name for name in layers if name not in AUXILIARY_LAYERS]) >= 2


def evaluate_real_scenes(
    root: str | os.PathLike,
    producers: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score ``producers`` (label -> mask producer) on every scene under ``root``.

    Producers whose label is in ``detectors`` form the consensus reference. Writes
    ``metrics.json``, ``metrics.md`` and ``overlays/<scene>.png`` to ``out_dir``.
    """
    from cloudseg.inference.real_report import plot_overlay, write_report

    if not producers:
        raise ValueError("No mask producers to evaluate; name at least one.")
    absent = [name for name in detectors if name not in producers]
    if absent:
        raise ValueError(
            f"Detectors {absent} are not among the producers {list(producers)}; the consensus "
            "reference is made of producers that run: add them or drop them from detectors."
        )
    out_dir = Path(out_dir)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    totals = {label: ProducerTally() for label in producers}
    cloudy_totals = {label: ProducerTally() for label in producers}
    scene_reports = []
    with tempfile.TemporaryDirectory(prefix="cloudfree-real-scenes-") as work_dir:
        scenes, not_scenes = discover_scenes(root, work_dir)
        log(f"== {len(scenes)} scenes under {root}")
        for number, real_scene in enumerate(scenes, start=1):
            log(f"== scene {number}/{len(scenes)}: {real_scene.name}")
            report, detections, counts = _evaluate_scene(real_scene, producers, detectors, log)
            for label, scene_counts in counts.items():
                totals[label].add(scene_counts)
                if report["cloudy"]:
                    cloudy_totals[label].add(scene_counts)
            scene_reports.append(report)
            with open_scene(real_scene.source) as scene:
                overlay = out_dir / "overlays" / f"{_file_name(real_scene.name)}.png"
                plot_overlay(
                    scene, real_scene.name, detections, detectors, report, overlay, list(producers)
                )
            report["overlay"] = overlay.relative_to(out_dir).as_posix()
    result = {
        "root": str(root),
        "command": command,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "detectors": list(detectors),
        "producers": list(producers),
        "producer_options": {label: _options(p) for label, p in producers.items()},
        "not_scenes": not_scenes,
        "overall": {label: tally_json(t) for label, t in totals.items()},
        "overall_cloudy": {label: tally_json(t) for label, t in cloudy_totals.items()},
        "scenes": scene_reports,
    }
    write_report(result, out_dir)
    return result


def _evaluate_scene(real_scene, producers, detectors, log):
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    detections: list[Detection] = []
    with open_scene(real_scene.source) as scene:
        level = product_level(scene)
        plan = plan_detectors({label: p.missing(scene.bands) for label, p in producers.items()})
        for label, reason in plan.left_out.items():
            skipped[label] = reason
            log(
                f"   skip {label} on {real_scene.name}: it {reason} (scene has {list(scene.bands)})"
            )
        for label in plan.run:
            try:
                classes = producers[label].predict(scene)
            except Exception as err:  # one producer's failure must not lose the others' results
                failed[label] = f"{type(err).__name__}: {err}"
                log(f"   FAILED {label} on {real_scene.name}: {failed[label]}")
                log("".join(traceback.format_exception_only(err)).strip())
                continue
            detections.append(Detection(label, classes, tuple(producers[label].emits)))
        grid = scene.grid()
    references = [d for d in detections if d.name in detectors]
    scene_totals, scene_counts = {}, {}
    for detection in detections:
        counts, voters = tally(detection, references)
        scene_counts[detection.name] = counts
        reference_from = {view: list(names) for view, names in voters.items()}
        scene_totals[detection.name] = {**tally_json(counts), "reference_from": reference_from}
    coverage = _coverage(references)
    log(
        "   reference from "
        + (", ".join(d.name for d in references) or "no detector")
        + f": {coverage['cloud_or_shadow']['determined']:.1%} of pixels determined"
    )
    report = {
        "name": real_scene.name,
        "source": real_scene.source,
        "product_level": level,
        "shape": list(grid.shape),
        "pixel_size_m": pixel_size_m(grid),
        "crs": grid.crs.to_string(),
        "detectors_run": [d.name for d in references],
        "skipped": skipped,
        "failed": failed,
        "coverage": coverage,
        "cloudy": coverage["cloud"]["cloud_pixels_share"] >= CLOUDY_SHARE,
        "producers": scene_totals,
    }
    return report, detections, scene_counts


def _coverage(references: Sequence[Detection]) -> dict[str, dict[str, Any]]:
    """Per view: the share of pixels with data where the reference is determined / disputed, and
    the share of the determined pixels that are positive."""
    if not references:
        empty = {"determined": 0.0, "disagreement": 0.0, "positive_share": None, "pixels": 0}
        return {view: {**empty, "cloud_pixels_share": 0.0, "voters": []} for view in VIEWS}
    with_data = np.zeros(references[0].classes.shape, dtype=bool)
    for detection in references:
        with_data |= detection.predicted
    pixels = int(with_data.sum())
    coverage = {}
    for view in VIEWS:
        reference = consensus(references, view)
        determined = int((reference.determined & with_data).sum())
        coverage[view] = {
            "determined": determined / pixels if pixels else 0.0,
            "disagreement": int(reference.disagreement.sum()) / pixels if pixels else 0.0,
            "positive_share": int(reference.positive.sum()) / determined if determined else None,
            "cloud_pixels_share": int(reference.positive.sum()) / pixels if pixels else 0.0,
            "pixels": pixels,
            "voters": list(reference.voters),
        }
    return coverage


def tally_json(counts: ProducerTally) -> dict[str, Any]:
    """Counts and the scores they give, JSON-ready."""
    views = {}
    for view, score in counts.views.items():
        views[view] = {
            "iou": score.iou(),
            "f1": score.f1(),
            "scored_pixels": score.scored,
            "true_positive": score.true_positive,
            "false_positive": score.false_positive,
            "false_negative": score.false_negative,
            "true_negative": score.true_negative,
        }
    alarms = counts.alarms
    return {
        "views": views,
        "clear_called_cloud": alarms.share("cloud"),
        "clear_called_shadow": alarms.share("shadow"),
        "reference_clear_pixels": alarms.clear_pixels,
        "clear_called_cloud_pixels": alarms.called_cloud,
        "clear_called_shadow_pixels": alarms.called_shadow,
    }


def _options(producer) -> dict[str, Any]:
    record = getattr(producer, "record", None)
    return record() if callable(record) else {"producer": getattr(producer, "name", "")}


def _file_name(name: str) -> str:
    return name.replace("/", "__")
