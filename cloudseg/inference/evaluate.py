"""Evaluate any number of cloud-mask producers on a labeled split, with the training metrics.

For every accepted scene of ``split`` in a dataset folder (:mod:`cloudseg.data.manifest`), each
producer (:mod:`cloudseg.inference.producers`) predicts a class raster on the scene's grid and is
scored against the reference mask with :func:`cloudseg.metrics.segmentation_metrics`, so the names
and definitions are the ones training logs (``iou_thick_cloud``, ``balanced_accuracy``,
``iou_cloud_vs_rest``, ``iou_cloud_or_shadow_vs_clear``: what a composite excludes against clear,
the metric training monitors...). Added here: omission (1 - recall) and commission
(1 - precision) of cloud (thick + thin, the ``cloud_vs_rest`` view) and of cloud shadow. Pixels
labeled ignore (255) are skipped; pixels a producer leaves without prediction are skipped for
that producer and reported as its ``coverage``.

Outputs in ``out_dir``: ``metrics.json`` (everything, plus per-scene errors and confusion
matrices), ``metrics.md`` (the tables) and ``worst_scenes.png`` (the scenes where the first
producer errs most: RGB, reference, every producer's mask).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from tqdm.auto import tqdm

from cloudseg.data.manifest import read_manifest
from cloudseg.data.splits import assign_splits
from cloudseg.inference.producers import MaskProducer
from cloudseg.inference.spec import CLASS_NODATA
from cloudseg.labels import CLASS_COLORS, CLASS_NAMES, IGNORE_INDEX, class_codes
from cloudseg.metrics import BINARY_VIEWS, confusion_matrix_metric, segmentation_metrics
from cloudseg.sentinel2.bands import RGB_BANDS
from cloudseg.sentinel2.cog import atomic_path
from cloudseg.sentinel2.reader import open_scene

#: Summary columns of the markdown table, in order.
SUMMARY_METRICS: tuple[str, ...] = (
    "balanced_accuracy",
    "miou",
    "iou_cloud_or_shadow_vs_clear",
    "f1_cloud_or_shadow_vs_clear",
    "iou_cloud_vs_rest",
    "f1_cloud_vs_rest",
    "omission_cloud",
    "commission_cloud",
    "omission_cloud_shadow",
    "commission_cloud_shadow",
)
PER_CLASS_METRICS: tuple[str, ...] = ("iou", "f1", "precision", "recall")


#: Omission/commission are reported for these groups of classes.
ERROR_GROUPS: dict[str, tuple[str, ...]] = {
    "cloud": BINARY_VIEWS["cloud_vs_rest"],
    "cloud_shadow": ("cloud_shadow",),
}


def omission_commission(confusion: np.ndarray) -> dict[str, float | None]:
    """Omission (missed / reference) and commission (false / predicted) of each error group.

    ``confusion`` has reference classes in rows and predictions in columns. Equal to 1 - recall
    and 1 - precision, except that a group absent from the reference (omission) or from the
    predictions (commission) gives ``None`` rather than a misleading 1.
    """
    errors: dict[str, float | None] = {}
    for group, class_names in ERROR_GROUPS.items():
        members = np.isin(np.arange(len(CLASS_NAMES)), class_codes(list(class_names)))
        true_positive = confusion[np.ix_(members, members)].sum()
        reference = confusion[members].sum()
        predicted = confusion[:, members].sum()
        errors[f"omission_{group}"] = float(1 - true_positive / reference) if reference else None
        errors[f"commission_{group}"] = float(1 - true_positive / predicted) if predicted else None
    return errors


def applicable_metrics(emits: Sequence[str]) -> set[str]:
    """Metric names that mean something for a producer that can output only ``emits``.

    Precision/IoU/F1/recall of a class a producer never outputs are 0 by construction, not
    a measurement; they are reported as ``n/a`` in the tables (and still present in the JSON).
    """
    names = {"balanced_accuracy", "miou", "accuracy"}
    for class_name in emits:
        names |= {f"{metric}_{class_name}" for metric in PER_CLASS_METRICS}
    if {"thick_cloud", "thin_cloud"} & set(emits):
        names |= {f"{m}_cloud_vs_rest" for m in PER_CLASS_METRICS}
        names |= {"omission_cloud", "commission_cloud"}
    if "cloud_shadow" in emits:
        names |= {"omission_cloud_shadow", "commission_cloud_shadow"}
    if set(emits) - {"clear"}:
        names |= {f"{m}_cloud_or_shadow_vs_clear" for m in PER_CLASS_METRICS}
    return names


@dataclass
class ProducerScore:
    """Running metrics of one producer over the split."""

    producer: MaskProducer
    metrics: Any = field(default_factory=segmentation_metrics)
    confusion: Any = field(default_factory=confusion_matrix_metric)
    scenes: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    labeled_pixels: int = 0
    covered_pixels: int = 0

    def update(self, prediction: np.ndarray, reference: np.ndarray) -> float | None:
        """Add one scene; returns its pixel error rate (``None`` if nothing was scored)."""
        target = reference.astype(np.int64)
        no_prediction = prediction == CLASS_NODATA
        labeled = target != IGNORE_INDEX
        target[no_prediction] = IGNORE_INDEX
        scored = target != IGNORE_INDEX
        self.scenes += 1
        self.labeled_pixels += int(labeled.sum())
        self.covered_pixels += int(scored.sum())
        if not scored.any():
            return None
        preds = torch.from_numpy(np.where(no_prediction, 0, prediction).astype(np.int64))[None]
        target_tensor = torch.from_numpy(target)[None]
        self.metrics.update(preds, target_tensor)
        self.confusion.update(preds, target_tensor)
        return float((prediction[scored] != reference[scored]).mean())

    def result(self) -> dict[str, Any]:
        metrics: dict[str, float | None] = {}
        confusion = None
        if self.covered_pixels:
            metrics = {name: float(value) for name, value in self.metrics.compute().items()}
            confusion = self.confusion.compute().numpy()
            metrics.update(omission_commission(confusion))
        return {
            "emits": list(self.producer.emits),
            "scenes": self.scenes,
            "skipped_scenes": self.skipped,
            "labeled_pixels": self.labeled_pixels,
            "coverage": self.covered_pixels / self.labeled_pixels if self.labeled_pixels else 0.0,
            "metrics": metrics,
            "not_applicable": sorted(set(metrics) - applicable_metrics(self.producer.emits)),
            "confusion_matrix": None if confusion is None else confusion.tolist(),
        }


@dataclass(order=True)
class _WorstScene:
    error: float
    scene_id: str = field(compare=False)
    rgb: np.ndarray = field(compare=False, repr=False)
    reference: np.ndarray = field(compare=False, repr=False)
    predictions: dict[str, np.ndarray] = field(compare=False, repr=False)


def evaluate_masks(
    dataset: str | os.PathLike,
    producers: Sequence[MaskProducer],
    out_dir: str | os.PathLike,
    *,
    split: str = "test",
    worst: int = 6,
    split_seed: int = 0,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``producers`` on ``split`` of ``dataset`` and write JSON, markdown and the figure.

    Accepted scenes the manifest gives no split are assigned as the DataModule assigns them
    (whole sites, :func:`cloudseg.data.splits.assign_splits` with ``split_seed``), so the test
    split is the one training held out; the report then records the seed.
    """
    if not producers:
        raise ValueError("No mask producers to evaluate; name at least one.")
    names = [producer.name for producer in producers]
    if len(set(names)) != len(names):
        raise ValueError(f"Mask producer names repeat: {names}; give each a distinct name.")
    root = Path(dataset)
    rows, assigned = split_rows(root, split, split_seed)
    scores = {producer.name: ProducerScore(producer) for producer in producers}
    per_scene: list[dict[str, Any]] = []
    worst_heap: list[_WorstScene] = []
    primary = producers[0].name
    for row in tqdm(rows.to_dict("records"), desc=f"evaluate {split}", disable=not progress):
        scene_errors: dict[str, float | None] = {}
        predictions: dict[str, np.ndarray] = {}
        with open_scene(root / row["image_path"]) as scene:
            reference = read_reference(root / row["mask_path"], scene.grid().shape)
            for producer in producers:
                missing = producer.missing(scene.bands)
                if missing:
                    scores[producer.name].skipped[row["scene_id"]] = missing
                    continue
                prediction = producer.predict(scene)
                if prediction.shape != reference.shape:
                    raise ValueError(
                        f"Producer {producer.name} returned shape {prediction.shape} for scene "
                        f"{row['scene_id']}, whose mask is {reference.shape}."
                    )
                scene_errors[producer.name] = scores[producer.name].update(prediction, reference)
                predictions[producer.name] = prediction
            per_scene.append({"scene_id": row["scene_id"], "error": scene_errors})
            primary_error = scene_errors.get(primary)
            if worst > 0 and primary_error is not None:
                entry = _WorstScene(
                    primary_error, row["scene_id"], rgb_quicklook(scene), reference, predictions
                )
                if len(worst_heap) < worst:
                    heapq.heappush(worst_heap, entry)
                else:
                    heapq.heappushpop(worst_heap, entry)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    worst_scenes = sorted(worst_heap, reverse=True)
    report = {
        "dataset": str(root),
        "split": split,
        "scenes": len(rows),
        "splits_assigned_with_seed": split_seed if assigned else None,
        "command": command,
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "classes": list(CLASS_NAMES),
        "producers": {name: score.result() for name, score in scores.items()},
        "worst_scenes": [
            {"scene_id": entry.scene_id, "error": entry.error} for entry in worst_scenes
        ],
        "per_scene": per_scene,
    }
    _write_json(out_dir / "metrics.json", report)
    if worst_scenes:
        plot_worst_scenes(worst_scenes, names, out_dir / "worst_scenes.png", primary)
    _write_text(out_dir / "metrics.md", markdown_report(report, has_figure=bool(worst_scenes)))
    return report


def split_rows(root: Path, split: str, split_seed: int) -> tuple[pd.DataFrame, bool]:
    """Accepted manifest rows of ``split``, and whether splits had to be assigned first."""
    manifest = read_manifest(root)
    accepted = manifest["curation"] == "accepted"
    assigned = bool((accepted & (manifest["split"] == "")).any())
    if assigned:  # as the DataModule does: whole sites, the same seed and fractions
        manifest = assign_splits(manifest, seed=split_seed)
    rows = manifest[(manifest["split"] == split) & accepted]
    if rows.empty:
        splits = sorted(set(manifest["split"]) - {""})
        raise ValueError(
            f"{root / 'manifest.csv'} has no accepted scenes in split {split!r}; splits present: "
            f"{splits}. Pick one of them with --split."
        )
    return rows, assigned


def read_reference(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A dataset mask, checked to be on the image's grid."""
    with rasterio.open(path) as dataset:
        mask = dataset.read(1)
    if mask.shape != shape:
        raise ValueError(f"Mask {path} is {mask.shape} but its image is {shape}; re-import it.")
    return mask


def rgb_quicklook(scene) -> np.ndarray:
    """(H, W, 3) uint8 true-colour quicklook (reflectance 0-0.3 stretched), grey if no RGB."""
    if not all(band in scene.bands for band in RGB_BANDS):
        return np.full((*scene.grid().shape, 3), 128, dtype=np.uint8)
    reflectance = np.nan_to_num(scene.read_reflectance(RGB_BANDS), nan=0.0)
    return (
        (np.clip(reflectance / 0.3, 0.0, 1.0) ** (1 / 1.5) * 255)
        .astype(np.uint8)
        .transpose(1, 2, 0)
    )


def class_colormap() -> tuple[ListedColormap, np.ndarray]:
    """A colormap over class codes 0..NUM_CLASSES (the last entry is ignore/no prediction)."""
    codes = [*range(len(CLASS_NAMES)), IGNORE_INDEX]
    colors = np.array([CLASS_COLORS[code] for code in codes], dtype=float) / 255.0
    lookup = np.full(256, len(CLASS_NAMES), dtype=np.uint8)
    lookup[: len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES))
    return ListedColormap(colors), lookup


def plot_worst_scenes(
    worst_scenes: Sequence[_WorstScene], producers: Sequence[str], path: Path, ranked_by: str
) -> Path:
    """One row per scene: RGB, reference, then each producer's mask (blank if it skipped)."""
    cmap, lookup = class_colormap()
    columns = ["RGB", "reference", *producers]
    figure = Figure(figsize=(2.4 * len(columns), 2.4 * len(worst_scenes) + 0.6))
    axes = figure.subplots(len(worst_scenes), len(columns), squeeze=False)
    for row, entry in enumerate(worst_scenes):
        panels = [entry.rgb, entry.reference, *(entry.predictions.get(p) for p in producers)]
        for col, (title, panel) in enumerate(zip(columns, panels, strict=True)):
            axis = axes[row, col]
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
            if col == 0:
                axis.set_ylabel(f"{entry.scene_id}\nerror {entry.error:.1%}", fontsize=7)
            if panel is None:
                axis.text(0.5, 0.5, "n/a", ha="center", va="center", transform=axis.transAxes)
            elif panel.ndim == 3:
                axis.imshow(panel)
            else:
                axis.imshow(
                    lookup[panel], cmap=cmap, vmin=0, vmax=len(CLASS_NAMES), interpolation="nearest"
                )
    handles = [
        Rectangle((0, 0), 1, 1, color=np.array(CLASS_COLORS[code]) / 255.0, ec="grey")
        for code in [*range(len(CLASS_NAMES)), IGNORE_INDEX]
    ]
    figure.legend(
        handles,
        [*CLASS_NAMES, "ignore / no prediction"],
        loc="lower center",
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(f"Worst scenes by {ranked_by} pixel error", fontsize=10)
    figure.tight_layout(rect=(0, 0.04, 1, 0.97))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    return path


def _format(value: float | None, applicable: bool) -> str:
    if not applicable:
        return "n/a"
    if value is None:
        return "–"
    return f"{value:.3f}"


def markdown_report(report: dict[str, Any], *, has_figure: bool) -> str:
    """The tables of ``metrics.md`` from the report that ``evaluate_masks`` builds."""
    producers = report["producers"]
    seed = report.get("splits_assigned_with_seed")
    assigned = (
        "" if seed is None else f"; splits assigned by site with seed {seed}, as training does"
    )
    lines = [
        f"# Cloud-mask evaluation: split `{report['split']}` of `{report['dataset']}`",
        "",
        f"Generated {report['generated']} by `{report['command'] or 'evaluate_masks'}` "
        f"({report['scenes']} scenes{assigned}). Metrics are those of `cloudseg.metrics` over all "
        "labeled pixels of the split (ignore pixels and pixels a producer leaves without "
        "prediction are skipped; `coverage` is the fraction scored). Omission = 1 - recall, "
        "commission = 1 - precision; cloud = thick + thin cloud. `cloud_or_shadow_vs_clear`: "
        "thick + thin cloud + shadow against clear, what a composite excludes (training "
        "monitors its IoU); it is defined for s2cloudless too, which has no shadow class: its "
        "cloud against clear, scored on cloud + shadow truth, so the shadows it misses count. "
        "`n/a`: the producer cannot output that class (s2cloudless is binary: its cloud is "
        "counted as thick_cloud); `–`: undefined (the class is absent from the reference or "
        "from the predictions). `balanced_accuracy` and `miou` average all four classes, "
        "including those a binary producer cannot output: compare binary producers on the "
        "cloud and cloud_or_shadow columns.",
        "",
        "| producer | scenes | coverage | " + " | ".join(SUMMARY_METRICS) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in SUMMARY_METRICS) + " |",
    ]
    for name, result in producers.items():
        usable = applicable_metrics(result["emits"])
        cells = [_format(result["metrics"].get(m), m in usable) for m in SUMMARY_METRICS]
        lines.append(
            f"| {name} | {result['scenes']} | {result['coverage']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Per class",
        "",
        "| producer | class | " + " | ".join(PER_CLASS_METRICS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in PER_CLASS_METRICS) + " |",
    ]
    for name, result in producers.items():
        usable = applicable_metrics(result["emits"])
        for class_name in CLASS_NAMES:
            keys = [f"{metric}_{class_name}" for metric in PER_CLASS_METRICS]
            cells = [_format(result["metrics"].get(k), k in usable) for k in keys]
            lines.append(f"| {name} | {class_name} | " + " | ".join(cells) + " |")
    skipped = {name: r["skipped_scenes"] for name, r in producers.items() if r["skipped_scenes"]}
    if skipped:
        lines += ["", "## Skipped", ""]
        for name, scenes in skipped.items():
            missing = sorted({band for bands in scenes.values() for band in bands})
            lines.append(f"- {name}: {len(scenes)} scenes lack {', '.join(missing)}.")
    if has_figure:
        lines += ["", "## Worst scenes", "", "![worst scenes](worst_scenes.png)"]
    return "\n".join(lines) + "\n"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
