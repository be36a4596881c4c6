"""Print where the demo's outputs are and its headline numbers beside the committed record's;
write that record on purpose.

``make demo`` ends with (it writes nothing outside ``outputs/``)::

    python experiments/demo_report.py --train outputs/demo/train \
        --composite outputs/demo/composite_a --neighbour outputs/demo/composite_b \
        --committed experiments/demo

``make demo-record`` ends with (seeds 42, 43, 44 of the same chain; the first is the record)::

    python experiments/demo_report.py --train outputs/demo-record/seed42/train ... \
        --seed-runs outputs/demo-record/seed42 outputs/demo-record/seed43 \
        outputs/demo-record/seed44 --write-record experiments/demo

It reads only what the runs wrote: the training's ``metrics.json`` and ``.hydra/`` config, each
composite's ``metrics.json`` (rows ``composite``, ``baseline_<source>``, ``reference``; see
``composite/evidence.py``) and ``run.json``. It prints the paths of the main composite, its
quicklooks, map page and metrics, then the headline: the best validation (and test) IoU of
cloud + shadow against clear, the residual cloud (share of pixels whose value uses an observation
the simulated truth masks call cloud) of the model-masked composite, the unmasked 25th
percentile and s2cloudless, and the seam error against the neighbouring tile; with
``--committed``, the committed record's numbers and their range over the record's seeds beside
them. The record (``--write-record``) holds ``README.md`` (the headline with the seed range,
commands, configuration, data, metrics tables, figures), ``headline.json`` (every seed's
headline), ``composite_vs_unmasked.png`` and copies of the metrics files, so every number in it
can be traced to a file. Paths inside the repository (where ``make`` runs) are recorded relative
to it in the commands.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import yaml

from cloudseg.sentinel2.bands import RGB_BANDS
from composite.evidence.tables import HEADLINE_METRICS, MAIN, MAP_PAGE, METRICS_JSON, REFERENCE
from composite.outputs import RUN_JSON
from composite.quicklook import auto_stretch, read_bands_preview, rgba_image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

#: The training metric of the headline (what a composite masks out, against clear).
IOU_METRIC = "iou_cloud_or_shadow_vs_clear"
#: The composite rows compared in the headline, with how the record names them.
HEADLINE_ROWS: dict[str, str] = {
    MAIN: "model-masked",
    "baseline_none": "unmasked 25th percentile",
    "baseline_s2cloudless": "s2cloudless-masked",
}
#: Per-class and summary training metrics in the record's table (cloudseg/metrics.py names).
TRAINING_TABLE_METRICS: tuple[str, ...] = (
    "iou_clear",
    "iou_thick_cloud",
    "iou_thin_cloud",
    "iou_cloud_shadow",
    "miou",
    "iou_cloud_vs_rest",
    IOU_METRIC,
    "f1_cloud_or_shadow_vs_clear",
    "balanced_accuracy",
    "accuracy",
)
FIGURE_NAME = "composite_vs_unmasked.png"
HEADLINE_JSON = "headline.json"
#: Long side (px) of each panel read for the figure, and the figure's resolution.
FIGURE_PANEL_PX = 400
FIGURE_DPI = 64
#: The repository root, where ``make demo`` runs: recorded paths inside it are made relative to it.
REPO_ROOT = Path(__file__).resolve().parents[1]


#: What the demo pins and what it cannot (the record's Reproducibility section).
REPRODUCIBILITY = """\
`make demo` pins what decides the numbers on a CPU: every seed (torch, numpy, python, the
albumentations pipeline, data-loader workers; the simulated data has its own fixed seeds),
deterministic torch algorithms (`trainer.deterministic: true`), 2 threads whatever the machine
has (`OMP_NUM_THREADS`, `MKL_NUM_THREADS`, `MKL_DYNAMIC=FALSE`: a reduction split another way
rounds another way), and the same AVX2 kernels on every x86-64 CPU: torch's
(`ATEN_CPU_CAPABILITY=avx2`), oneDNN's (`ONEDNN_MAX_CPU_ISA=AVX2`), MKL's
(`MKL_CBWR=AVX2,STRICT`) and numpy's (`NPY_DISABLE_CPU_FEATURES` without AVX-512), set by the
Makefile for every step of the demo. Unpinned, an AVX-512 machine and an AVX2 one round differently
in the last bits (numpy's AVX-512 kernels already change a few DN values of the simulated
scenes); over 20 epochs that moves the weights, and with them the best epoch and every number
after it: a 3-epoch run of the demo's training here gave test IoU 0.897 with this machine's
AVX-512 kernels against 0.883 pinned, 235 of 249 weight tensors different, while two pinned runs
gave bitwise-identical weights. Any x86-64 CPU with AVX2 runs the same kernels; on an AVX-512
machine they cost some speed (that 3-epoch run: 24.0 s CPU pinned vs 21.2 s, on 2 shared,
contended cores). Not pinned: CPUs without AVX2 or of another
architecture (ARM), other versions of torch, MKL, numpy or onnxruntime, and GPUs; there expect
the numbers within about the seed range."""


def repository_relative(argument: str, root: Path = REPO_ROOT) -> str:
    """A command-line argument (``key=value`` or a bare value) with an absolute path inside
    ``root`` written relative to it; anything else unchanged."""
    key, sep, value = argument.partition("=")
    if not sep:
        key, value = "", argument
    if not Path(value).is_absolute():
        return argument
    try:
        relative = Path(value).resolve().relative_to(root.resolve())
    except ValueError:
        return argument
    return f"{key}{sep}{relative.as_posix()}"


def command_line(program: str, arguments: Sequence[str]) -> str:
    """``program`` and its ``arguments`` (repository-relative, shell-quoted) as one line."""
    return " ".join([program, *(shlex.quote(repository_relative(a)) for a in arguments)])


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file, or an error naming it and what writes it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run that writes it has not finished (run `make demo`)."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); rerun the step that writes it."
        ) from err


@dataclass(frozen=True)
class TrainingRun:
    """A finished ``train.py`` run: its folder, ``metrics.json`` and composed config."""

    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    overrides: list[str]

    @classmethod
    def load(cls, folder: str | Path) -> TrainingRun:
        folder = Path(folder)
        hydra_dir = folder / ".hydra"
        config_path = hydra_dir / "config.yaml"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} does not exist: {folder} is not a train.py run folder."
            )
        hydra_path = hydra_dir / "hydra.yaml"
        overrides: list[str] = []
        if hydra_path.is_file():
            recorded = yaml.safe_load(hydra_path.read_text())["hydra"]["overrides"]
            hydra_overrides = [o for o in recorded.get("hydra", []) if o.startswith("hydra.run")]
            overrides = [*recorded.get("task", []), *hydra_overrides]
        return cls(
            folder, read_json(folder / "metrics.json"), yaml.safe_load(config_path.read_text()),
            overrides,
        )  # fmt: skip

    @property
    def command(self) -> str:
        return command_line("python train.py", self.overrides)

    @property
    def best_val_iou(self) -> float | None:
        """The best validation IoU when it is the monitored metric, as the checkpoint kept it."""
        if self.metrics.get("monitor") == f"val/{IOU_METRIC}":
            return self.metrics.get("best_score")
        return None

    @property
    def test_iou(self) -> float | None:
        return self.metrics.get("test", {}).get(f"test/{IOU_METRIC}")

    def metric(self, split: str, name: str) -> float | None:
        """``<split>/<name>``: test from the best checkpoint, val from the last epoch."""
        source = self.metrics.get("test" if split == "test" else "fit", {})
        return source.get(f"{split}/{name}")


@dataclass(frozen=True)
class CompositeRunFiles:
    """A finished ``composite.py`` run: its folder, ``metrics.json`` table and ``run.json``."""

    folder: Path
    table: dict[str, dict[str, float]]
    run: dict[str, Any]

    @classmethod
    def load(cls, folder: str | Path) -> CompositeRunFiles:
        folder = Path(folder)
        table = read_json(folder / METRICS_JSON)
        if MAIN not in table:
            raise ValueError(
                f"{folder / METRICS_JSON} has no row {MAIN!r} (rows: {sorted(table)}); it is "
                "not the metrics table of a composite run."
            )
        return cls(folder, table, read_json(folder / RUN_JSON))

    @property
    def command(self) -> str:
        argv = self.run.get("config", {}).get("command") or []
        return command_line("python", argv) if argv else "(not recorded)"

    def path(self, name: str) -> Path:
        return self.folder / name

    def row_folder(self, row: str) -> Path:
        """The folder of a composite of the table (main, ``baseline_<source>``, reference)."""
        if row == MAIN:
            return self.folder
        if row == REFERENCE:
            return self.folder / "reference"
        return self.folder / "baselines" / row.removeprefix("baseline_")

    def stretch(self) -> tuple[float, float]:
        """The reflectance stretch of the run's quicklooks (``auto``: as the run computes it)."""
        stretch = self.run.get("config", {}).get("quicklook", {}).get("stretch", [0.0, 0.3])
        if stretch == "auto":
            rgb, _ = read_bands_preview(self.path("composite.tif"), RGB_BANDS, FIGURE_PANEL_PX)
            return auto_stretch(rgb)
        return float(stretch[0]), float(stretch[1])


def output_paths(composite: CompositeRunFiles) -> dict[str, Path]:
    """What a user opens first, by what it is."""
    return {
        "composite": composite.path("composite.tif"),
        "quicklook (RGB)": composite.path("composite_rgb.png"),
        "quicklook (gray)": composite.path("composite_gray.png"),
        "map page": composite.path(MAP_PAGE),
        "metrics": composite.path(METRICS_JSON),
    }


def headline_numbers(
    training: TrainingRun,
    composite: CompositeRunFiles | None,
    neighbour: CompositeRunFiles | None,
) -> dict[str, float | None]:
    """The demo's headline, by label (``None`` where a run did not compute it)."""
    numbers: dict[str, float | None] = {
        "val IoU cloud+shadow vs clear (best checkpoint)": training.best_val_iou,
        "test IoU cloud+shadow vs clear (best checkpoint)": training.test_iou,
    }
    for row, label in HEADLINE_ROWS.items():
        table = composite.table if composite is not None else {}
        residual = table.get(row, {}).get("residual_cloud")
        numbers[f"residual cloud (pixels using truth-cloud obs.), {label}"] = residual
    seam = neighbour.table[MAIN].get("seam_mae") if neighbour is not None else None
    numbers["seam MAE vs neighbouring tile (reflectance)"] = seam
    return numbers


def format_value(value: float | None) -> str:
    return "not computed" if value is None else f"{value:.4g}"


def headline_text(numbers: Mapping[str, float | None]) -> str:
    width = max(len(label) for label in numbers)
    return "\n".join(f"{label:<{width}}  {format_value(v)}" for label, v in numbers.items())


@dataclass(frozen=True)
class DemoRun:
    """One demo chain's run folder: ``train/``, and ``composite_a/`` and ``composite_b/`` where
    the chain went that far (a seed run of the record may be training only)."""

    folder: Path
    training: TrainingRun
    composite: CompositeRunFiles | None
    neighbour: CompositeRunFiles | None

    @classmethod
    def load(cls, folder: str | Path) -> DemoRun:
        folder = Path(folder)
        composites = [
            CompositeRunFiles.load(folder / name) if (folder / name).is_dir() else None
            for name in ("composite_a", "composite_b")
        ]
        return cls(folder, TrainingRun.load(folder / "train"), *composites)

    @property
    def seed(self) -> int:
        seed = self.training.config.get("seed")
        if seed is None:
            raise ValueError(f"{self.training.folder} was trained unseeded: rerun with seed=N.")
        return int(seed)

    def headline(self) -> dict[str, float | None]:
        return headline_numbers(self.training, self.composite, self.neighbour)


@dataclass(frozen=True)
class SeedSpread:
    """The record's headline (one seed's run) and the same numbers for every seed of the record
    (the same simulated data, only the training seed changes); ``headline.json`` holds it."""

    record_seed: int
    numbers: dict[str, float | None]
    seeds: dict[int, dict[str, float | None]]

    def __post_init__(self) -> None:
        if self.record_seed not in self.seeds:
            raise ValueError(
                f"The record's seed {self.record_seed} is not among the seed runs "
                f"{sorted(self.seeds)}: pass its run folder to --seed-runs too."
            )
        if self.seeds[self.record_seed] != self.numbers:
            raise ValueError(
                f"The seed-{self.record_seed} run of --seed-runs has other numbers than the "
                "record's run (--train/--composite/--neighbour): pass the same run folder."
            )

    def value_range(self, label: str) -> tuple[float, float] | None:
        values = [n[label] for n in self.seeds.values() if n.get(label) is not None]
        return (min(values), max(values)) if values else None

    def range_text(self, label: str) -> str:
        """``low - high`` over the seeds that computed the value (how many, when not all)."""
        values = [n[label] for n in self.seeds.values() if n.get(label) is not None]
        if len(values) < 2:
            return f"seed {self.record_seed} only" if values else "not computed"
        span = f"{min(values):.4g} - {max(values):.4g}"
        return span if len(values) == len(self.seeds) else f"{span} ({len(values)} seeds)"

    def coverage_note(self) -> str:
        """Which numbers have a range: the other seeds may be trained and tested only."""
        partial = [
            label for label in self.numbers
            if sum(n.get(label) is not None for n in self.seeds.values()) < len(self.seeds)
        ]  # fmt: skip
        if not partial:
            return "Every number has its range."
        return (
            f"The other seeds were trained and tested only (`make demo-record`: their composites "
            f"would take as long again per seed), so {len(partial)} composite numbers are the "
            f"seed-{self.record_seed} run's alone."
        )

    @property
    def seeds_label(self) -> str:
        return f"{len(self.seeds)} seeds ({', '.join(map(str, sorted(self.seeds)))})"

    def to_json(self) -> dict[str, Any]:
        return {
            "record_seed": self.record_seed,
            "numbers": self.numbers,
            "seeds": {str(seed): numbers for seed, numbers in sorted(self.seeds.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeedSpread:
        return cls(
            int(data["record_seed"]), dict(data["numbers"]),
            {int(seed): dict(numbers) for seed, numbers in data["seeds"].items()},
        )  # fmt: skip

    @classmethod
    def load(cls, record: Path) -> SeedSpread:
        path = record / HEADLINE_JSON
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: {record} is not a demo record (`make demo-record` "
                "writes one)."
            )
        try:
            return cls.from_json(read_json(path))
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"{path} lacks {err}: it is not a demo record's headline (rerun `make demo-record`)."
            ) from err

    def headline_text(self) -> str:
        """The record's headline with the seed range: what README.md shows."""
        return columns_text(
            ["", f"seed {self.record_seed}", f"range over {self.seeds_label}"],
            [[label, format_value(v), self.range_text(label)] for label, v in self.numbers.items()],
        )

    def comparison_text(self, yours: Mapping[str, float | None], seed: int | None) -> str:
        """Your run's headline beside the record's and its seed range."""
        rows = [
            [label, format_value(value), format_value(self.numbers.get(label)),
             self.range_text(label)]
            for label, value in yours.items()
        ]  # fmt: skip
        header = ["", f"yours (seed {seed})", f"committed (seed {self.record_seed})",
                  f"range over {self.seeds_label}"]  # fmt: skip
        return columns_text(header, rows)


def columns_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces apart."""
    table = [list(header), *map(list, rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]
    return "\n".join(lines)


def verdict(composite: CompositeRunFiles) -> str:
    """Whether the model-masked composite has the least residual cloud of the compared ones."""
    residual = {
        label: composite.table[row]["residual_cloud"]
        for row, label in HEADLINE_ROWS.items()
        if "residual_cloud" in composite.table.get(row, {})
    }
    if HEADLINE_ROWS[MAIN] not in residual or len(residual) < 2:
        return "Residual cloud was not computed for the model-masked composite and a baseline."
    model = HEADLINE_ROWS[MAIN]
    least = min(residual.values())
    if residual[model] > least:
        best = min(residual, key=residual.get)
        return (
            f"The model-masked composite does NOT have the least residual cloud: {best} has "
            f"{format_value(least)} against {format_value(residual[model])}."
        )
    tied = [label for label, value in residual.items() if value == least and label != model]
    tie = f" (tied with {', '.join(tied)})" if tied else ""
    return (
        f"The model-masked composite has the least residual cloud of the compared composites{tie}."
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def training_table(training: TrainingRun) -> str:
    """Per-class and binary metrics, validation (last epoch) and test (best checkpoint)."""
    rows = [
        [
            name,
            format_value(training.metric("val", name)),
            format_value(training.metric("test", name)),
        ]
        for name in TRAINING_TABLE_METRICS
    ]
    return markdown_table(["metric", "val (last epoch)", "test (best checkpoint)"], rows)


def composite_table(composite: CompositeRunFiles) -> str:
    """The headline metrics of every composite of a run, one column per composite."""
    names = list(composite.table)
    metrics = [m for m in HEADLINE_METRICS if any(m in row for row in composite.table.values())]
    rows = [[m, *(format_value(composite.table[n].get(m)) for n in names)] for m in metrics]
    return markdown_table(["metric", *names], rows)


def write_comparison_figure(composite: CompositeRunFiles, path: Path) -> Path:
    """The model-masked composite next to the unmasked 25th percentile (and the truth
    reference when there is one), true colour with the run's quicklook stretch."""
    panels = {"model-masked composite": composite.row_folder(MAIN)}
    if "baseline_none" not in composite.table:
        raise ValueError(
            f"{composite.folder / METRICS_JSON} has no baseline_none row: run composite.py with "
            "evaluation.baselines containing none."
        )
    panels["unmasked 25th percentile (baseline)"] = composite.row_folder("baseline_none")
    if REFERENCE in composite.table:
        panels["truth reference (no clouds)"] = composite.row_folder(REFERENCE)
    stretch = composite.stretch()
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4.8), layout="constrained"
    )
    for axis, (title, folder) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        rgb, _ = read_bands_preview(folder / "composite.tif", RGB_BANDS, FIGURE_PANEL_PX)
        axis.imshow(rgba_image(rgb, stretch))
        residual = composite.table.get(_row_of(composite, folder), {}).get("residual_cloud")
        axis.set_title(title, fontsize=10)
        if residual is not None:
            axis.text(0.5, -0.02, f"residual cloud {format_value(residual)}", fontsize=10,
                      ha="center", va="top", transform=axis.transAxes)  # fmt: skip
        axis.set_axis_off()
    figure.supxlabel(
        f"{composite.folder.name}: B04/B03/B02, reflectance {stretch[0]:g}-{stretch[1]:g}",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)
    return path


def _row_of(composite: CompositeRunFiles, folder: Path) -> str:
    return next(row for row in composite.table if composite.row_folder(row) == folder)


def record_markdown(
    training: TrainingRun,
    composite: CompositeRunFiles,
    neighbour: CompositeRunFiles | None,
    spread: SeedSpread,
) -> str:
    """The experiment record's README."""
    data = training.config.get("data", {})
    trainer = training.config.get("trainer", {})
    segmenter = training.config.get("model", {}).get("segmenter", {})
    runs = [composite, *([neighbour] if neighbour else [])]
    sections = [
        "# Demo: the whole chain on simulated Sentinel-2 data (CPU)",
        "",
        "Generated by `experiments/demo_report.py` from the runs' metrics files (copies in "
        "`metrics/`, every seed's headline in `headline.json`); do not edit by hand, rerun "
        "`make demo-record` (`make demo` only reads this record).",
        "",
        "## Headline",
        "",
        "```",
        spread.headline_text(),
        "```",
        "",
        verdict(composite),
        "",
        "## Reproducibility",
        "",
        f"The record is the seed-{spread.record_seed} run; the range is over {spread.seeds_label}"
        " of the same training on the same simulated data (only the training seed changes), "
        "which is how far the numbers move when training takes another path. "
        f"{spread.coverage_note()}",
        "",
        REPRODUCIBILITY,
        "",
        "## Commands",
        "",
        "`make demo` (see the Makefile) simulates the data, then runs, as recorded by each run:",
        "",
        "```bash",
        training.command,
        *(run.command for run in runs),
        "```",
        "",
        "## Configuration",
        "",
        f"- model: `{segmenter.get('backbone')}` backbone, `{segmenter.get('head')}` head with a "
        f"{segmenter.get('detail_channels', 0)}-channel full-resolution branch, "
        f"pretrained `{segmenter.get('pretrained')}`; lr {training.config.get('model', {}).get('lr')}",
        f"- training: {trainer.get('max_epochs')} epochs of {data.get('train_chips_per_epoch')} "
        f"chips of {data.get('patch_size')} px, batch {data.get('batch_size')}, bands "
        f"{' '.join(data.get('bands', []))}; best checkpoint by `{training.metrics.get('monitor')}`",
        *(composite_configuration(run) for run in runs),
        "",
        "## Data",
        "",
        f"- training: `{data.get('root')}` (`cloudfree-simulate labeled`), splits by site",
        *(composite_data(run) for run in runs),
        "",
        "## Training metrics",
        "",
        f"Run `{training.folder}`; best `{training.metrics.get('monitor')}` = "
        f"{format_value(training.metrics.get('best_score'))}.",
        "",
        training_table(training),
        "",
    ]
    for run in runs:
        sections += [
            f"## Composite metrics: `{run.folder}`",
            "",
            "Rows of composite/evidence.py (`residual_*`: share of pixels whose value, in any "
            "band, uses an observation the simulated truth masks call cloud/shadow; "
            "`brighter/darker_than_reference`: brightness against the truth surfaces' "
            "composite, which also moves with seasonal sampling; `model_residual_*`: what the "
            "model still calls cloud/shadow in the composite); the full table is "
            f"`metrics/{run.folder.name}.json`.",
            "",
            composite_table(run),
            "",
        ]
    sections += [
        "## Figures",
        "",
        f"![model-masked composite next to the unmasked 25th percentile]({FIGURE_NAME})",
        "",
        f"The run's own quicklooks and map page: `{composite.path('composite_rgb.png')}`, "
        f"`{composite.path(MAP_PAGE)}` (not committed).",
        "",
    ]
    return "\n".join(sections)


def composite_configuration(run: CompositeRunFiles) -> str:
    config = run.run.get("config", {})
    masks = config.get("masks", {})
    settings = config.get("composite", {})
    evaluation = config.get("evaluation", {})
    inference = masks.get("inference", {})
    clear_threshold = inference.get("rule", {}).get("clear_threshold")
    clear_rule = f"p(clear) >= {clear_threshold}" if clear_threshold is not None else "argmax"
    temporal = run.run.get("temporal") or {}
    temporal_rule = (
        f"multi-temporal test `{temporal.get('rule')}`"
        if temporal.get("applied")
        else f"no multi-temporal test ({temporal.get('skipped_because') or 'masks.temporal=none'})"
    )
    return (
        f"- `{run.folder.name}`: q={settings.get('q'):g} ({settings.get('method')}), masks "
        f"`{masks.get('source')}` excluding {masks.get('exclude')} with a {masks.get('buffer_m')} m "
        f"buffer, model at {inference.get('resolution')} m, clear where {clear_rule}, "
        f"{temporal_rule}; baselines {evaluation.get('baselines')}"
    )


def composite_data(run: CompositeRunFiles) -> str:
    stack = run.run.get("stack", {})
    grid = run.run.get("grid", {})
    scenes = stack.get("scenes_used", [])
    dates = sorted(str(scene.get("datetime", ""))[:10] for scene in scenes)
    span = f", {dates[0]} to {dates[-1]}" if dates else ""
    source = run.run.get("config", {}).get("stack", {}).get("source")
    return (
        f"- `{run.folder.name}`: `{source}` (`cloudfree-simulate tiles`), {len(scenes)} scenes"
        f"{span}, grid {grid.get('height')} x {grid.get('width')} px"
    )


def write_record(
    record: Path,
    training: TrainingRun,
    composite: CompositeRunFiles,
    neighbour: CompositeRunFiles | None,
    spread: SeedSpread,
) -> Path:
    """Write ``README.md``, ``headline.json``, the comparison figure and copies of the metrics
    files."""
    metrics_dir = record / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(training.folder / "metrics.json", metrics_dir / "train.json")
    for run in [composite, *([neighbour] if neighbour else [])]:
        shutil.copyfile(run.path(METRICS_JSON), metrics_dir / f"{run.folder.name}.json")
    (record / HEADLINE_JSON).write_text(json.dumps(spread.to_json(), indent=1) + "\n")
    write_comparison_figure(composite, record / FIGURE_NAME)
    readme = record / "README.md"
    readme.write_text(record_markdown(training, composite, neighbour, spread))
    return readme


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="the train.py run folder")
    parser.add_argument("--composite", type=Path, required=True, help="the main composite run")
    parser.add_argument(
        "--neighbour", type=Path, default=None, help="the neighbouring tile's run (seam error)"
    )
    parser.add_argument(
        "--committed", type=Path, default=None,
        help="a committed record (experiments/demo): print its numbers and seed range beside yours",
    )  # fmt: skip
    parser.add_argument(
        "--seed-runs", type=Path, nargs="+", default=(),
        help="demo run folders (train/, composite_a/, composite_b/) of every seed of the record",
    )  # fmt: skip
    parser.add_argument(
        "--write-record", type=Path, default=None, help="write the experiment record here"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        training = TrainingRun.load(args.train)
        composite = CompositeRunFiles.load(args.composite)
        neighbour = CompositeRunFiles.load(args.neighbour) if args.neighbour else None
        numbers = headline_numbers(training, composite, neighbour)
        seed = training.config.get("seed")
        committed = SeedSpread.load(args.committed) if args.committed else None
        spread = None
        if args.write_record:
            runs = [DemoRun.load(folder) for folder in args.seed_runs]
            seeds = {run.seed: run.headline() for run in runs} or {seed: numbers}
            spread = SeedSpread(seed, numbers, seeds)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"demo_report: {err}") from err
    print("Outputs:")
    for run in [composite, *([neighbour] if neighbour else [])]:
        for label, path in output_paths(run).items():
            print(f"  {run.folder.name} {label}: {path}")
    print(f"  checkpoint: {training.metrics.get('best_checkpoint')}")
    sync = (training.metrics.get("wandb") or {}).get("sync_command")
    if sync:
        print(f"  W&B (offline): {sync}")
    print("\nHeadline:")
    if committed is not None:
        print(committed.comparison_text(numbers, seed))
    elif spread is not None:
        print(spread.headline_text())
    else:
        print(headline_text(numbers))
    print(verdict(composite))
    if committed is not None:
        print(
            f"The committed numbers are {args.committed / 'README.md'}: the same commit on an "
            "x86-64 CPU with AVX2 runs the same pinned kernels (see its Reproducibility section); "
            "elsewhere expect your numbers within about the seed range."
        )
    if args.write_record:
        readme = write_record(args.write_record, training, composite, neighbour, spread)
        print(f"\nExperiment record: {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
