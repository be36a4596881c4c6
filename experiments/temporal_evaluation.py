"""The multi-temporal test's record: which rule wins on the simulated demo tiles, and the real series.

    PYTHONPATH=$PWD .venv/bin/python experiments/temporal_evaluation.py \\
        --tiles data/simulated/tiles --ckpt outputs/demo/train/checkpoints/best.ckpt \\
        --realdata ../shared/realdata/eolearn-5dates --record experiments/temporal

Simulated (truth known): each tile of ``--tiles`` (``cloudfree-simulate tiles``, as ``make demo``
writes them) is read onto the composite's grid exactly as a composite window is
(:func:`composite.driver.read_window_observations`, the whole tile as one window: windows equal
the whole stack), with the single-date exclusion of masks ``none`` and ``model`` (the checkpoint
at 20 m with the composite's default ``clear_threshold``, as ``make demo`` runs it). For each mask
source and rule the exclusion is :func:`composite.temporal_rules.window_exclusion` (the composite's
own code path) and the measures are those of the composite's evidence: ``residual_cloud`` /
``residual_shadow`` (share of pixels whose 25th percentile uses an observation the truth calls
cloud / shadow), plus ``clear_dropped`` (share of truly clear observations excluded) and
``no_valid`` (pixels left without an observation) and the seconds the test took.

Real (no truth): ``--realdata`` is eo-learn's 5-date Slovenian series (scenes 0-1 cloudy, 2-4
clear by s2cloudless). The reference is the 25th percentile of the three clear dates; each
composite of all five dates is scored by its mean absolute error against it (reflectance), as a
ratio to the unmasked composite's error. Five dates are fewer than the test's default
``min_dates``: it is run with ``min_dates=5, min_clear=3`` and said so.

Writes ``<record>/metrics.json``, ``<record>/README.md`` and ``<record>/exclusion_sources.png``
(which source excluded the observations of the first tile under model + temporal by the default
rule). The test's settings are the defaults (``k`` and ``cloud_floor`` were chosen on these same
two tiles: there is no held-out tuning set yet).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from composite.cluster import LocalExecutor
from composite.driver import CompositeSettings, make_job, read_window_observations
from composite.evidence.truth import find_truth, read_truth_masks, stack_truth_indices
from composite.masking import COMPOSITE_INFERENCE, MaskSettings, prepare_masks
from composite.metrics import composite_truth_contamination
from composite.output_grid import composite_bands, output_grid
from composite.percentile import masked_percentile
from composite.stack import StackSettings, build_stack
from composite.temporal import TemporalBands, TemporalTest, valid_observations, verdicts
from composite.temporal_evidence import CHART, sources_chart
from composite.temporal_rules import (
    DEFAULT_RULE,
    TEMPORAL_RULES,
    ExclusionSources,
    TemporalSettings,
    combine,
)

Q = 25.0
#: (row name, mask source, rule) in table order.
CASES = (
    ("none", "none", "none"),
    ("model", "model", "none"),
    ("temporal alone (union)", "none", "union"),
    ("temporal alone (vote)", "none", "vote"),
    *((f"model + temporal ({rule})", "model", rule) for rule in TEMPORAL_RULES[1:]),
)
#: Goals of issue 16 for the model + temporal default on both demo tiles.
GOAL_CLOUD, GOAL_SHADOW = 0.001, 0.005


def tile_measures(
    tile: Path, ckpt: str, cache: Path, test: TemporalTest
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """The table's rows for one simulated tile, and which source excluded the observations
    under model + temporal by the default rule."""
    stack = build_stack(StackSettings(source=str(tile)), progress=False)
    truth = find_truth(str(tile), stack)
    if truth is None:
        raise SystemExit(
            f"{tile} has no stack.json with truth masks; pass cloudfree-simulate tiles."
        )
    settings = CompositeSettings()
    bands = composite_bands(stack, settings)
    grid = output_grid(stack, settings, bands)
    whole = Window(0, 0, grid.width, grid.height)
    classes = read_truth_masks(truth, stack_truth_indices(stack, truth), grid)
    rows: dict[str, dict[str, float]] = {}
    for source in ("none", "model"):
        mask_settings = MaskSettings(
            source=source,
            checkpoint=ckpt if source == "model" else None,
            cache_dir=str(cache),
            inference=dataclasses.replace(COMPOSITE_INFERENCE, resolution=20.0),
        )
        masks, _ = prepare_masks(stack, mask_settings, LocalExecutor(), progress=False)
        job, _ = make_job(stack, masks, settings, grid, bands, cache / "unused")
        dn, mask = read_window_observations(job, whole)
        valid = valid_observations(dn)
        clear = (classes == 0) & valid
        started = time.perf_counter()
        verdict = verdicts(dn, TemporalBands.resolve(bands), ~mask, test)
        seconds = time.perf_counter() - started
        if source == "model":
            default = combine(DEFAULT_RULE, mask, verdict)
            excluded_by = ExclusionSources.of(mask, verdict, default, valid).totals()
        for name, case_source, rule in CASES:
            if case_source != source:
                continue
            excluded = combine(rule, mask, verdict)
            counts = composite_truth_contamination(dn, excluded, classes, Q).counts()
            cloud, shadow, with_value = (int(v) for v in counts)
            rows[name] = {
                "residual_cloud": cloud / with_value,
                "residual_shadow": shadow / with_value,
                "clear_dropped": float((excluded & clear).sum() / clear.sum()),
                "no_valid": float(((~excluded & valid).sum(axis=0) == 0).mean()),
                "test_seconds": seconds if rule != "none" else 0.0,
            }
    return rows, excluded_by


def real_measures(folder: Path, test: TemporalTest) -> dict[str, Any]:
    """eo-learn's five real dates: error against the clear dates' percentile, per rule."""
    scenes = np.load(folder / "REFERENCE_SCENES.npy")  # (dates, y, x, 13) reflectance
    dn = np.clip(np.round(scenes * 10000), 1, 65535).astype(np.uint16).transpose(0, 3, 1, 2)
    bands = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
             "B11", "B12")  # fmt: skip
    clear_dates = [2, 3, 4]
    reference = np.percentile(scenes[clear_dates], Q, axis=0).transpose(2, 0, 1)
    verdict = verdicts(dn, TemporalBands.resolve(bands), np.ones(dn[:, 0].shape, bool), test)
    out: dict[str, Any] = {
        "flagged_share_per_date": [round(float((v >= 2).mean()), 4) for v in verdict],
    }
    errors = {}
    for rule in ("none", "union", "vote"):
        excluded = combine(rule, np.zeros(verdict.shape, bool), verdict)
        composite = masked_percentile(dn, excluded, Q, nodata=0, no_valid="all_observations")
        errors[rule] = float(np.abs(composite.composite / 10000 - reference).mean())
    out["mae"] = errors
    out["mae_ratio_to_unmasked"] = {rule: errors[rule] / errors["none"] for rule in errors}
    return out


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# The stack as evidence: the multi-temporal cloud/shadow test",
        "",
        f"Generated {record['created']} by `{record['command']}`.",
        "",
        f"Machine: {record['machine']}. Test settings: `{json.dumps(record['test'])}`; default "
        f"rule `{DEFAULT_RULE}`.",
        "",
        "## Simulated demo tiles (truth known)",
        "",
        "Residual cloud/shadow: share of pixels whose 25th percentile (linear) uses an "
        "observation the truth calls cloud/shadow (the composite evidence's measure). Clear "
        "dropped: share of truly clear observations excluded. Goal (issue 16) for model + "
        f"temporal by the default rule: residual cloud < {GOAL_CLOUD}, residual shadow < "
        f"{GOAL_SHADOW}, fewer clear views dropped than the model alone.",
        "",
    ]
    for tile, rows in record["tiles"].items():
        lines += [
            f"### {tile}",
            "",
            "| masks | residual cloud | residual shadow | clear dropped | pixels without a value "
            "| test s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | {row['residual_cloud']:.4f} | {row['residual_shadow']:.4f} | "
                f"{row['clear_dropped']:.4f} | {row['no_valid']:.4f} | {row['test_seconds']:.1f} |"
            )
        lines.append("")
    lines += [
        "### Goals per rule (both tiles)",
        "",
        "| model + temporal rule | residual cloud < 0.001 | residual shadow < 0.005 | drops "
        "fewer clear views than the model alone |",
        "| --- | --- | --- | --- |",
    ]
    for rule in TEMPORAL_RULES[1:]:
        name = f"model + temporal ({rule})"
        tables = record["tiles"].values()
        met = (
            all(rows[name]["residual_cloud"] < GOAL_CLOUD for rows in tables),
            all(rows[name]["residual_shadow"] < GOAL_SHADOW for rows in tables),
            all(rows[name]["clear_dropped"] < rows["model"]["clear_dropped"] for rows in tables),
        )
        lines.append(f"| {rule} | " + " | ".join("yes" if m else "no" for m in met) + " |")
    lines.append("")
    lines += [
        f"Observations excluded under model + temporal ({DEFAULT_RULE}), by source (`run.json`'s "
        "`temporal.excluded_by`; chart: `exclusion_sources.png`, first tile):",
        "",
        "| tile | single-date mask only | temporal test only | both | single-date calls "
        "overruled |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for tile, counts in record["excluded_by"].items():
        lines.append(
            f"| {tile} | {counts['model']:,} | {counts['temporal']:,} | {counts['both']:,} | "
            f"{counts['overruled']:,} |"
        )
    lines.append("")
    real = record.get("real")
    if real:
        lines += [
            "## Real: eo-learn 5 dates (Slovenia; scenes 0-1 cloudy, 2-4 clear)",
            "",
            f"Test run with `{json.dumps(real['test'])}` (5 dates < the default min_dates). "
            "Mean absolute error (reflectance) of the 25th percentile of all five dates against "
            "the 25th percentile of the three clear dates, and its ratio to the unmasked one.",
            "",
            "| masks | MAE | x unmasked |",
            "| --- | ---: | ---: |",
        ]
        for rule, value in real["mae"].items():
            name = "none" if rule == "none" else f"temporal alone ({rule})"
            lines.append(f"| {name} | {value:.4f} | {real['mae_ratio_to_unmasked'][rule]:.2f} |")
        lines += [
            "",
            "Share of each date's pixels the test flags: "
            + ", ".join(f"{v:.3f}" for v in real["flagged_share_per_date"]),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=Path, required=True)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--realdata", type=Path, default=None)
    parser.add_argument("--record", type=Path, default=Path("experiments/temporal"))
    parser.add_argument("--cache", type=Path, default=Path("outputs/cache/temporal_evaluation"))
    args = parser.parse_args(argv)
    test = TemporalSettings().test
    tiles = sorted(p.parent for p in args.tiles.glob("*/stack.json"))
    if not tiles:
        raise SystemExit(f"No <tile>/stack.json under {args.tiles}; run cloudfree-simulate tiles.")
    record: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": "python experiments/temporal_evaluation.py "
        + f"--tiles {args.tiles} --ckpt {args.ckpt}"
        + (f" --realdata {args.realdata}" if args.realdata else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared, contended: timings "
        "are indicative only)",
        "test": test.record(),
        "tiles": {},
    }
    for tile in tiles:
        print(f"== {tile.name}", flush=True)
        rows, excluded_by = tile_measures(tile, args.ckpt, args.cache, test)
        record["tiles"][tile.name] = rows
        record.setdefault("excluded_by", {})[tile.name] = excluded_by
    if args.realdata is not None and args.realdata.is_dir():
        short = TemporalTest(min_dates=5, min_clear=3)
        record["real"] = {
            "test": {"min_dates": 5, "min_clear": 3},
            **real_measures(args.realdata, short),
        }
    args.record.mkdir(parents=True, exist_ok=True)
    (args.record / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.record / "README.md").write_text(markdown(record) + "\n")
    first = tiles[0].name
    sources_chart(
        record["excluded_by"][first],
        args.record / CHART,
        f"{first}: model + temporal ({DEFAULT_RULE}), observations by source",
    )
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
