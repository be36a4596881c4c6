"""The real-scene yardstick of the training-data ablation: the project's consensus scoring
(:mod:`cloudseg.detectors.consensus`, as ``cloudseg.inference.real_scenes`` uses it) on the
**east halves** of the real scenes only (the west halves may feed training: spectral library,
backgrounds), so no lever is scored on pixels it trained on.

The reference is where the offline real-trained detectors that run on a scene agree (ukis-csmask,
s2cloudless where its 10 L1C bands exist, SCL where present), per view (cloud; shadow; cloud or
shadow vs clear; a detector votes only on views it can answer both ways: s2cloudless not on
shadow, and on cloud or shadow only to dispute a "clear" where it says cloud); disagreement is
ignored. Each detector is scored against the consensus of the *others* (scenes with a single
detector, the 4-band chips, do not score detectors), models against all, and also as ukis-csmask
is (against the others' consensus, beside ukis-csmask on the same scenes: ``head_to_head``).
Scores pool pixels over the scenes a producer runs on: ``iou_cloud``, ``iou_shadow``, ``iou_cos``
(cloud or shadow vs clear), ``false_alarm`` (share of reference-clear pixels called cloud or
shadow) and ``false_alarm_soil_water`` (the same over bare soil, sparse cover or water: NDVI < 0.3
or NDWI > 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.data.realdata.detectors import detections, run_detectors
from cloudseg.data.realdata.scenes import LoadedScene, holdout_columns
from cloudseg.detectors.consensus import (
    DISPUTED,
    Detection,
    FalseAlarms,
    ProducerTally,
    consensus,
    false_alarms,
    reference_map,
    tally,
)
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX

#: The detector a model must match (issue 15): a model is also scored on this detector's terms.
HEAD_TO_HEAD = "ukis"


def soil_or_water(scene: LoadedScene) -> np.ndarray:
    green, red, nir = (scene.band(b) for b in ("B03", "B04", "B08"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
        ndwi = (green - nir) / (green + nir)
    return (ndvi < 0.3) | (ndwi > 0.0)


def scores(counts: ProducerTally, soil_water: FalseAlarms) -> dict:
    """The table's numbers from pooled counts."""
    views = {view: score.iou() for view, score in counts.views.items()}
    return {
        "iou_cloud": _round(views["cloud"]),
        "iou_cos": _round(views["cloud_or_shadow"]),
        "iou_shadow": _round(views["shadow"]),
        "false_alarm": _round(counts.alarms.share("cloud") + counts.alarms.share("shadow"))
        if counts.alarms.clear_pixels else None,
        "false_alarm_soil_water": _round(soil_water.share("cloud") + soil_water.share("shadow"))
        if soil_water.clear_pixels else None,
        "reference_px": counts.views["cloud"].scored,
        "reference_clear_soil_water_px": soil_water.clear_pixels,
    }  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Pool:
    """Counts of one producer summed over scenes, and each scene's own."""

    def __init__(self) -> None:
        self.counts, self.soil_water = ProducerTally(), FalseAlarms()
        self.per_scene: dict[str, dict] = {}

    def add(self, item: YardstickScene, detection: Detection, references=None) -> None:
        """Count ``detection`` on ``item`` against the consensus of ``references`` (default: the
        scene's detectors but itself)."""
        references = item.references if references is None else references
        counts, _ = tally(detection, references)
        only_sw = Detection(
            detection.name, np.where(item.soil_water, detection.classes, IGNORE_INDEX),
            detection.emits,
        )  # fmt: skip
        clear_reference = consensus(references, "cloud_or_shadow", exclude=detection.name)
        soil_water = false_alarms(only_sw, clear_reference)
        self.counts.add(counts)
        self.soil_water.add(soil_water)
        self.per_scene[item.scene.name] = scores(counts, soil_water)

    def result(self) -> dict:
        """Pooled scores, the scenes, and ``per_scene`` (each scene's scores alone)."""
        return {**scores(self.counts, self.soil_water), "scenes": list(self.per_scene),
                "per_scene": self.per_scene}  # fmt: skip


@dataclass
class YardstickScene:
    scene: LoadedScene  # the east half
    detectors: dict[str, np.ndarray]
    soil_water: np.ndarray

    @property
    def references(self) -> list[Detection]:
        return detections(self.detectors)

    @property
    def reference(self) -> np.ndarray:
        """The all-detector consensus as classes (disputed: ignore), for pictures."""
        classes = reference_map(self.references)
        classes[classes == DISPUTED] = IGNORE_INDEX
        return classes


def prepare(scenes: list[LoadedScene], cache: Path | None = None) -> list[YardstickScene]:
    """Detectors and consensus reference of each scene's east half (scenes with none skipped);
    detector masks are kept in ``cache`` (a folder) when given."""
    prepared = []
    for scene in scenes:
        cached = None if cache is None else cache / f"{scene.name.replace('/', '-')}.npz"
        if cached is not None and cached.exists():
            with np.load(cached) as data:
                masks = {name: data[name] for name in data.files}
        else:
            masks = run_detectors(scene)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(cached, **masks)
        if not masks:
            continue
        east = holdout_columns(scene.grid.width)
        half = LoadedScene(
            name=scene.name, bands=scene.bands, reflectance=scene.reflectance[:, :, east],
            grid=scene.grid, gsd_m=scene.gsd_m, product_level=scene.product_level,
        )  # fmt: skip
        masks = {name: mask[:, east] for name, mask in masks.items()}
        prepared.append(YardstickScene(half, masks, soil_or_water(half)))
    return prepared


def score_detectors(prepared: list[YardstickScene]) -> dict[str, dict]:
    """Each detector against the consensus of the others (where there are others)."""
    pools: dict[str, Pool] = {}
    for item in prepared:
        if len(item.detectors) < 2:
            continue
        for detection in item.references:
            pools.setdefault(detection.name, Pool()).add(item, detection)
    return {name: pool.result() for name, pool in pools.items()}


def score_model(prepared: list[YardstickScene], predict) -> tuple[dict, dict[str, np.ndarray]]:
    """``predict(scene) -> classes or None`` (None: the scene lacks the model's bands), scored
    against the consensus of all detectors. ``head_to_head``: on the scenes where both the model
    and ukis-csmask are scored, ``model`` against all detectors, ``model_vs_others`` against the
    same reference as ukis-csmask (the others' consensus) and ``ukis`` itself against it."""
    pool = Pool()
    head_to_head = {"model": Pool(), "model_vs_others": Pool(), HEAD_TO_HEAD: Pool()}
    predictions = {}
    for item in prepared:
        classes = predict(item.scene)
        if classes is None:
            continue
        predictions[item.scene.name] = classes
        model = Detection("model", classes, CLASS_NAMES)
        pool.add(item, model)
        if HEAD_TO_HEAD in item.detectors and len(item.detectors) > 1:
            others = [d for d in item.references if d.name != HEAD_TO_HEAD]
            (ukis,) = [d for d in item.references if d.name == HEAD_TO_HEAD]
            head_to_head["model"].add(item, model)
            head_to_head["model_vs_others"].add(item, model, others)
            head_to_head[HEAD_TO_HEAD].add(item, ukis)
    duel = {name: pool.result() for name, pool in head_to_head.items()}
    return {**pool.result(), "head_to_head": duel}, predictions
