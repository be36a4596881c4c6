"""Tables and pictures of the real-scene evaluation (:mod:`cloudseg.inference.real_scenes`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cloudseg.detectors.consensus import DISPUTED, NO_PREDICTION, Detection, reference_map
from cloudseg.inference.evaluate import rgb_quicklook
from cloudseg.labels import CLASS_COLORS, CLASS_NAMES
from cloudseg.sentinel2.cog import atomic_path

#: Picture colours: the classes, then "detectors disagree" and "no prediction / no reference".
LEGEND: tuple[tuple[str, tuple[int, int, int]], ...] = (
    *((name, CLASS_COLORS[code]) for code, name in enumerate(CLASS_NAMES)),
    ("detectors disagree", (255, 0, 255)),
    ("no prediction", (128, 128, 128)),
)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cloud", "iou", "cloud IoU"),
    ("cloud", "f1", "cloud F1"),
    ("shadow", "iou", "shadow IoU"),
    ("shadow", "f1", "shadow F1"),
    ("cloud_or_shadow", "iou", "cloud+shadow IoU"),
    ("cloud_or_shadow", "f1", "cloud+shadow F1"),
)


def _lookup() -> tuple[ListedColormap, np.ndarray]:
    colors = np.array([color for _, color in LEGEND], dtype=float) / 255.0
    lookup = np.full(256, len(LEGEND) - 1, dtype=np.uint8)
    lookup[: len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES))
    lookup[DISPUTED] = len(CLASS_NAMES)
    lookup[NO_PREDICTION] = len(LEGEND) - 1
    return ListedColormap(colors), lookup


def plot_overlay(
    scene,
    name: str,
    detections: Sequence[Detection],
    detectors: Sequence[str],
    report: dict[str, Any],
    path: Path,
    producers: Sequence[str],
) -> Path:
    """One row: RGB, the consensus reference, then every producer in ``producers`` order (or
    why it has no mask here)."""
    cmap, lookup = _lookup()
    references = [d for d in detections if d.name in detectors]
    panels: list[tuple[str, np.ndarray | str]] = [("RGB", rgb_quicklook(scene))]
    reference_title = "reference: " + (" = ".join(d.name for d in references) or "none")
    panels.append((reference_title, reference_map(references) if references else "no detector ran"))
    by_name = {d.name: d for d in detections}
    for label in producers:
        if label in by_name:
            panels.append((label, by_name[label].classes))
        else:
            why = report["skipped"].get(label) or "failed: " + report["failed"].get(label, "")
            panels.append((label, why))
    height, width = panels[0][1].shape[:2]
    panel_height = min(5.0, max(2.0, 2.6 * height / width))
    figure = Figure(figsize=(2.6 * len(panels), panel_height + 0.9))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, panel) in zip(axes, panels, strict=True):
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_title(title, fontsize=8)
        if isinstance(panel, str):
            axis.text(0.5, 0.5, _wrap(panel), ha="center", va="center", fontsize=7,
                      transform=axis.transAxes)  # fmt: skip
        elif panel.ndim == 3:
            axis.imshow(panel)
        else:
            axis.imshow(lookup[panel], cmap=cmap, vmin=0, vmax=len(LEGEND) - 1,
                        interpolation="nearest")  # fmt: skip
    handles = [Rectangle((0, 0), 1, 1, color=np.array(c) / 255.0, ec="grey") for _, c in LEGEND]
    figure.legend(handles, [n for n, _ in LEGEND], loc="lower center", ncol=len(LEGEND),
                  fontsize=7, frameon=False)  # fmt: skip
    coverage = report["coverage"]
    figure.suptitle(
        f"{name}: reference determined on {coverage['cloud']['determined']:.0%} (cloud view), "
        f"{coverage['cloud_or_shadow']['determined']:.0%} (cloud+shadow view) of pixels; "
        f"detectors disagree on {coverage['cloud']['disagreement']:.0%} / "
        f"{coverage['cloud_or_shadow']['disagreement']:.0%}",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.3 / (panel_height + 0.9), 1, 1 - 0.25 / (panel_height + 0.9)))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return path


def _wrap(text: str, width: int = 28) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def producer_table(results: dict[str, Any], scenes: dict[str, int]) -> list[str]:
    """Markdown rows: one per producer, the view scores and the false-alarm shares."""
    header = ["producer", "scenes scored", *(title for _, _, title in COLUMNS),
              "clear called cloud", "clear called shadow"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for label, result in results.items():
        cells = [_cell(result["views"][view][metric]) for view, metric, _ in COLUMNS]
        cells += [_cell(result["clear_called_cloud"]), _cell(result["clear_called_shadow"])]
        lines.append(f"| {label} | {scenes.get(label, 0)} | " + " | ".join(cells) + " |")
    return lines


def scene_matrix(scenes: list[dict], producers: Sequence[str], view: str, title: str) -> list[str]:
    """Markdown: one row per scene, one column per producer, its ``view`` IoU there (the pooled
    tables above mix scene sets: each producer runs where it has its bands)."""
    lines = [
        f"## {title} per scene (`n/a`: the producer lacks bands or failed; `–`: nothing scored)",
        "",
        "| scene | " + " | ".join(producers) + " |",
        "| --- |" + " ---: |" * len(producers),
    ]
    for scene in scenes:
        cells = []
        for label in producers:
            entry = scene["producers"].get(label)
            cells.append("n/a" if entry is None else _cell(entry["views"][view]["iou"]))
        lines.append(f"| {scene['name']} | " + " | ".join(cells) + " |")
    return lines


def scored_scenes(scenes: list[dict], producers: Sequence[str]) -> dict[str, int]:
    """Per producer, the scenes where some view of it was scored against a reference."""
    return {
        label: sum(
            any(v["scored_pixels"] for v in s["producers"][label]["views"].values())
            for s in scenes
            if label in s["producers"]
        )
        for label in producers
    }


def markdown_report(result: dict[str, Any]) -> str:
    scenes = result["scenes"]
    cloudy = [s for s in scenes if s["cloudy"]]
    ran_all = scored_scenes(scenes, result["producers"])
    ran_cloudy = scored_scenes(cloudy, result["producers"])
    lines = [
        f"# Cloud masks on real Sentinel-2 scenes: `{result['root']}`",
        "",
        f"Generated {result['generated']} by `{result['command'] or 'evaluate_real_scenes'}`.",
        "",
        "No hand labels: the **reference** is where the detectors "
        f"{', '.join(result['detectors'])} that can run on a scene agree (pixels where they "
        "disagree are left out and counted). Each detector is scored against the consensus of the "
        "*others*, so none grades itself; every other producer against all of them. Views: cloud "
        "(thick + thin) vs the rest, shadow vs the rest, cloud-or-shadow vs clear. A detector "
        "votes only on views it can answer both ways (s2cloudless, binary, votes on cloud; its "
        "cloud still disputes a clear cloud-or-shadow, so no false alarm is counted there). "
        "`clear called cloud/shadow`: of the pixels the reference calls clear, the share the "
        "producer calls cloud / shadow (false alarms). `–`: nothing to score (no other detector "
        "judges that view on those scenes, or the producer cannot output the class). The two "
        "tables pool the pixels of the scenes each producer was scored on, and those sets differ "
        "(a producer runs where it has its bands; a detector is scored only where another "
        "detector judges it): compare producers scene by scene in the per-scene tables.",
        "",
        f"## Cloudy scenes ({len(cloudy)} of {len(scenes)}: the reference calls >= 1 % of pixels "
        "cloud)",
        "",
        *producer_table(result["overall_cloudy"], ran_cloudy),
        "",
        f"## All scenes ({len(scenes)})",
        "",
        *producer_table(result["overall"], ran_all),
        "",
        "## Reference per scene",
        "",
        "| scene | level | pixel | detectors | determined (cloud / shadow / cloud+shadow) | "
        "disputed (cloud / cloud+shadow) | share of pixels the reference calls cloud | cloudy |",
        "| --- | --- | ---: | --- | --- | --- | ---: | --- |",
    ]
    for scene in scenes:
        cov = scene["coverage"]
        determined = " / ".join(
            f"{cov[v]['determined']:.0%}" for v in ("cloud", "shadow", "cloud_or_shadow")
        )
        share = cov["cloud"]["cloud_pixels_share"]
        lines.append(
            f"| {scene['name']} | {scene['product_level'] or '?'} | {scene['pixel_size_m']:.0f} m | "
            f"{', '.join(scene['detectors_run']) or '–'} | {determined} | "
            f"{cov['cloud']['disagreement']:.0%} / {cov['cloud_or_shadow']['disagreement']:.0%} | "
            f"{_cell(share)} | "
            f"{'yes' if scene['cloudy'] else 'no'} |"
        )
    for view, title in (("cloud", "cloud IoU"), ("cloud_or_shadow", "cloud+shadow IoU")):
        lines += ["", *scene_matrix(scenes, result["producers"], view, title)]
    lines += ["", "## Per scene", ""]
    for scene in scenes:
        lines += [f"### {scene['name']}", "", f"![{scene['name']}]({scene['overlay']})", ""]
        lines += producer_table(scene["producers"], scored_scenes([scene], scene["producers"]))
        notes = [f"- {label} skipped: it {why}." for label, why in scene["skipped"].items()]
        notes += [f"- {label} failed: {why}" for label, why in scene["failed"].items()]
        lines += ["", *notes, ""] if notes else [""]
    if result["not_scenes"]:
        lines += ["## Files that are not scenes", ""]
        lines += [f"- `{name}`: {why}" for name, why in result["not_scenes"].items()]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], out_dir: Path) -> None:
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2, allow_nan=False, default=str) + "\n")
    with atomic_path(out_dir / "metrics.md") as tmp:
        tmp.write_text(markdown_report(result))
