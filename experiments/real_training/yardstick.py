"""The real-scene yardstick of the training-data ablation (interim, until the project's real-scene
evaluation of issue 14 lands; then the ablation switches to it).

For every real scene of a folder (``../shared/realdata``), only its **east half** is scored (the
west halves may feed training: spectral library, backgrounds, curated labels). The reference is
the consensus of the offline real-trained detectors that can run on the scene (ukis-csmask,
s2cloudless where its 10 L1C bands exist, SCL where present):

* clear where all say clear; cloud where all say cloud (thick or thin);
* shadow where every shadow-capable detector says shadow and the others (s2cloudless knows no
  shadow) do not say cloud;
* ignore (255) where they disagree; with a single detector (4-band chips: ukis only) its answer
  is the reference, and ukis is not scored there.

Each detector is scored against the consensus of the *others* (none grades itself), models
against all of them. Scores are pooled over pixels of all scenes a producer can run on:
``iou_cloud`` (cloud vs the rest), ``iou_cos`` (cloud or shadow vs clear, shadow-capable
producers), ``false_alarm`` (share of clear-reference pixels over bare soil, sparse cover or water
that the producer calls cloud or shadow; soil/water by NDVI < 0.3 or NDWI > 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudseg.data.realdata.detectors import run_detectors
from cloudseg.data.realdata.scenes import RealScene, holdout_columns
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD

SHADOW_CAPABLE = {"ukis": True, "s2cloudless": False, "scl": True}


def consensus(masks: dict[str, np.ndarray], shadow_capable: dict[str, bool]) -> np.ndarray:
    """The consensus reference of ``masks`` (see the module doc)."""
    shape = next(iter(masks.values())).shape
    answered = np.logical_and.reduce([m != IGNORE_INDEX for m in masks.values()])
    cloud = [(m == THICK_CLOUD) | (m == THIN_CLOUD) for m in masks.values()]
    reference = np.full(shape, IGNORE_INDEX, dtype=np.uint8)
    reference[np.logical_and.reduce([m == CLEAR for m in masks.values()])] = CLEAR
    reference[np.logical_and.reduce(cloud)] = THICK_CLOUD
    capable = [n for n in masks if shadow_capable[n]]
    if capable:
        shadow = np.logical_and.reduce([masks[n] == CLOUD_SHADOW for n in capable])
        others = [masks[n] == CLEAR for n in masks if not shadow_capable[n]]
        if others:
            shadow &= np.logical_and.reduce(others)
        reference[shadow] = CLOUD_SHADOW
    reference[~answered] = IGNORE_INDEX
    return reference


def soil_or_water(scene: RealScene) -> np.ndarray:
    green, red, nir = (scene.band(b) for b in ("B03", "B04", "B08"))
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (nir - red) / (nir + red)
        ndwi = (green - nir) / (green + nir)
    return (ndvi < 0.3) | (ndwi > 0.0)


@dataclass
class Tally:
    """Pooled pixel counts of one producer."""

    shadow_capable: bool
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("cloud_tp", "cloud_fp", "cloud_fn", "cos_tp", "cos_fp", "cos_fn", "clear_sw",
         "alarm_sw", "reference_px"), 0))  # fmt: skip
    scenes: list[str] = field(default_factory=list)

    def add(self, name: str, prediction: np.ndarray, reference: np.ndarray, sw: np.ndarray):
        keep = (reference != IGNORE_INDEX) & (prediction != IGNORE_INDEX)
        pred_cloud = (prediction == THICK_CLOUD) | (prediction == THIN_CLOUD)
        ref_cloud = reference == THICK_CLOUD
        c = self.counts
        c["cloud_tp"] += int((pred_cloud & ref_cloud & keep).sum())
        c["cloud_fp"] += int((pred_cloud & ~ref_cloud & keep).sum())
        c["cloud_fn"] += int((~pred_cloud & ref_cloud & keep).sum())
        pred_cos = pred_cloud | (prediction == CLOUD_SHADOW)
        ref_cos = ref_cloud | (reference == CLOUD_SHADOW)
        c["cos_tp"] += int((pred_cos & ref_cos & keep).sum())
        c["cos_fp"] += int((pred_cos & ~ref_cos & keep).sum())
        c["cos_fn"] += int((~pred_cos & ref_cos & keep).sum())
        clear_sw = keep & (reference == CLEAR) & sw
        c["clear_sw"] += int(clear_sw.sum())
        c["alarm_sw"] += int((clear_sw & pred_cos).sum())
        c["reference_px"] += int(keep.sum())
        self.scenes.append(name)

    def result(self) -> dict[str, float | int | None | list[str]]:
        c = self.counts

        def iou(tp: int, fp: int, fn: int) -> float | None:
            return None if tp + fp + fn == 0 else round(tp / (tp + fp + fn), 4)

        return {
            "iou_cloud": iou(c["cloud_tp"], c["cloud_fp"], c["cloud_fn"]),
            "iou_cos": iou(c["cos_tp"], c["cos_fp"], c["cos_fn"]) if self.shadow_capable else None,
            "false_alarm": round(c["alarm_sw"] / c["clear_sw"], 4) if c["clear_sw"] else None,
            "reference_px": c["reference_px"],
            "scenes": self.scenes,
        }


@dataclass
class YardstickScene:
    scene: RealScene  # the east half
    detectors: dict[str, np.ndarray]
    reference: np.ndarray
    soil_water: np.ndarray


def prepare(scenes: list[RealScene], cache: Path | None = None) -> list[YardstickScene]:
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
        half = RealScene(
            name=scene.name, bands=scene.bands, reflectance=scene.reflectance[:, :, east],
            grid=scene.grid, gsd_m=scene.gsd_m, product_level=scene.product_level,
        )  # fmt: skip
        masks = {name: mask[:, east] for name, mask in masks.items()}
        reference = consensus(masks, SHADOW_CAPABLE)
        prepared.append(YardstickScene(half, masks, reference, soil_or_water(half)))
    return prepared


def score_detectors(prepared: list[YardstickScene]) -> dict[str, dict]:
    """Each detector against the consensus of the others (where there are others)."""
    tallies: dict[str, Tally] = {}
    for item in prepared:
        for name, mask in item.detectors.items():
            others = {n: m for n, m in item.detectors.items() if n != name}
            if not others:
                continue
            reference = consensus(others, SHADOW_CAPABLE)
            tally = tallies.setdefault(name, Tally(SHADOW_CAPABLE[name]))
            tally.add(item.scene.name, mask, reference, item.soil_water)
    return {name: tally.result() for name, tally in tallies.items()}


def score_model(prepared: list[YardstickScene], predict) -> tuple[dict, dict[str, np.ndarray]]:
    """``predict(scene) -> classes or None`` (None: the scene lacks the model's bands)."""
    tally = Tally(True)
    predictions = {}
    for item in prepared:
        classes = predict(item.scene)
        if classes is None:
            continue
        predictions[item.scene.name] = classes
        tally.add(item.scene.name, classes, item.reference, item.soil_water)
    return tally.result(), predictions
