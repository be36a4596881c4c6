"""End-to-end benchmark of the composite: seconds per scene-megapixel and peak memory vs stack size.

    .venv/bin/python experiments/bench_composite.py            # ~1 min (+2 min to write the stacks once)
    .venv/bin/python experiments/bench_composite.py --quick    # 30 dates x 256 px only, a smoke run
    .venv/bin/python experiments/bench_composite.py --temporal --out /tmp/temporal_cost.md
                                                    # 100 dates x 256 px with/without the test

Simulated stacks (``cloudseg.data.simulate.write_stack``: 13-band L1C scenes at native 10/20/60 m,
seed 0; written once and cached under ``--cache``) of 30 and 100 dates at 256 and 512 px are
composited end to end by :func:`composite.run.run_composite` with the composed
``conf/composite.yaml`` (its defaults: every common band, window 512 px, this process), stack
assembly included, the evidence step (baselines, metrics, pictures) left out. Masks are
``masks.source=none``, so the composite itself is measured; one extra case uses
``s2cloudless`` at 100 dates x 256 px to show what computing masks adds, and three add the
multi-temporal test (``masks.temporal=veto``; the others run with ``masks.temporal=none``) to show
what it costs (issue 16's goal: under 1.5x). Each case runs in a fresh
process whose peak RSS (``ru_maxrss``) is its peak memory. Per case it reports the seconds in
total and per stage (from the run JSON), seconds per scene-megapixel (dates x pixels / 1e6) and
peak RSS, then the growth of each between dates and sizes, and writes the table, with the machine
and its load, to ``experiments/composite_benchmark.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORD = Path(__file__).with_name("composite_benchmark.md")
DEFAULT_CACHE = Path("/tmp/cloudfree_bench_composite")
SEED = 0


@dataclasses.dataclass(frozen=True)
class Case:
    """One end-to-end run: ``n_dates`` scenes of ``size`` x ``size`` px, masks from ``masks``
    combined with the multi-temporal test by the rule ``temporal`` (``none``: not run)."""

    n_dates: int
    size: int
    masks: str = "none"
    temporal: str = "none"

    @property
    def name(self) -> str:
        name = f"{self.n_dates} dates x {self.size} px, masks {self.masks}"
        return name if self.temporal == "none" else f"{name} + temporal {self.temporal}"

    @property
    def scene_mpx(self) -> float:
        """Dates x output pixels / 1e6."""
        return self.n_dates * self.size**2 / 1e6


DEFAULT_CASES = (
    Case(30, 256),
    Case(100, 256),
    Case(30, 512),
    Case(100, 512),
    Case(100, 256, "s2cloudless"),
    Case(30, 256, temporal="veto"),
    Case(100, 256, temporal="veto"),
    Case(100, 512, temporal="veto"),
)
QUICK_CASES = (Case(30, 256), Case(30, 256, temporal="veto"))
#: ``--temporal``: what the multi-temporal test costs, with and without it side by side.
TEMPORAL_CASES = (Case(100, 256), Case(100, 256, temporal="veto"))


# -- data ----------------------------------------------------------------------------------------


def cached_stack(cache: Path, n_dates: int, size: int) -> Path:
    """The simulated stack folder of ``n_dates`` x ``size`` px, written unless already cached
    (``stack.json`` is written last, so its presence with the right contents means complete)."""
    from cloudseg.data.simulate import write_stack

    folder = cache / f"sim-{n_dates}x{size}"
    description = folder / "stack.json"
    if description.is_file():
        written = json.loads(description.read_text())
        grid = written["grid"]
        if (
            written["seed"] == SEED
            and len(written["dates"]) == n_dates
            and (grid["height"], grid["width"]) == (size, size)
        ):
            return folder
    print(f"Writing the simulated stack {folder} ...", flush=True)
    write_stack(folder, n_dates=n_dates, size=size, seed=SEED)
    return folder


# -- one case in a fresh process ----------------------------------------------------------------


def run_case(case: Case, stack_folder: str, scratch: str, queue) -> None:
    """Child process: composite ``stack_folder`` as ``python composite.py`` would, without the
    evidence step; put the measurements on ``queue``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from composite.run import run_composite, settings_from_config

    scratch_dir = Path(scratch)
    overrides = [
        f"stack.source={stack_folder}",
        f"masks.source={case.masks}",
        f"masks.temporal={case.temporal}",
        f"paths.log_dir={scratch_dir / 'logs'}",
        f"out_dir={scratch_dir / 'out'}",
        "progress=false",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="composite", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # paths.* interpolate hydra.runtime
    with open_dict(cfg):
        del cfg.hydra
    settings = dataclasses.replace(settings_from_config(cfg), evidence=None)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    started = time.perf_counter()
    result = run_composite(settings)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    record = result.record
    queue.put(
        {
            "seconds": seconds,
            "peak_rss_bytes": peak,
            "import_rss_bytes": rss_before,
            "timing_s": record["timing_s"],
            "scenes": len(result.stack),
            "bands": list(result.bands),
            "grid_shape": [result.grid.height, result.grid.width],
            "window_size": settings.composite.window_size,
        }
    )


def measure(case: Case, stack_folder: Path) -> dict[str, Any]:
    """Run ``case`` in a fresh (spawned) process; its measurements as a JSON-ready row."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory(prefix="bench_composite_") as scratch:
        process = context.Process(target=run_case, args=(case, str(stack_folder), scratch, queue))
        process.start()
        measured = None
        while measured is None and process.is_alive():
            try:
                measured = queue.get(timeout=1.0)
            except Empty:
                continue
        process.join()
    if measured is None or process.exitcode != 0:
        raise RuntimeError(
            f"Case {case.name} failed (exit code {process.exitcode}); its traceback is above."
        )
    if measured["scenes"] != case.n_dates:
        raise RuntimeError(f"Case {case.name} composited {measured['scenes']} scenes.")
    seconds = measured["seconds"]
    row = {
        **dataclasses.asdict(case),
        "case": case.name,
        "scene_mpx": round(case.scene_mpx, 3),
        "seconds": round(seconds, 2),
        "s_per_scene_mpx": round(seconds / case.scene_mpx, 3),
        "peak_rss_mb": round(measured["peak_rss_bytes"] / 2**20),
        "import_rss_mb": round(measured["import_rss_bytes"] / 2**20),
        "stage_s": {stage: round(value, 2) for stage, value in measured["timing_s"].items()},
        "bands": measured["bands"],
        "grid_shape": measured["grid_shape"],
        "window_size": measured["window_size"],
    }
    print(json.dumps(row), flush=True)
    return row


# -- growth and the record ----------------------------------------------------------------------


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios between cases that differ in one thing: dates (30 -> 100), size (256 -> 512),
    masks (none -> another source) or the temporal test (none -> a rule)."""
    by_key = {(row["n_dates"], row["size"], row["masks"], row["temporal"]): row for row in rows}
    pairs = []
    for (n_dates, size, masks, temporal), row in by_key.items():
        for other_key, what in (
            ((n_dates * 10 // 3, size, masks, temporal), "dates"),
            ((n_dates, size * 2, masks, temporal), "size"),
        ):
            if other_key in by_key:
                pairs.append((what, row, by_key[other_key]))
        if masks != "none" and (n_dates, size, "none", temporal) in by_key:
            pairs.append(("masks", by_key[(n_dates, size, "none", temporal)], row))
        if temporal != "none" and (n_dates, size, masks, "none") in by_key:
            pairs.append(("temporal", by_key[(n_dates, size, masks, "none")], row))
    ratios = []
    for what, small, large in pairs:
        ratios.append(
            {
                "change": f"{small['case']} -> {large['case']}",
                "varies": what,
                "work_ratio": round(large["scene_mpx"] / small["scene_mpx"], 2),
                "seconds_ratio": round(large["seconds"] / small["seconds"], 2),
                "s_per_scene_mpx_ratio": round(
                    large["s_per_scene_mpx"] / small["s_per_scene_mpx"], 2
                ),
                "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2),
                "peak_rss_above_imports_ratio": round(
                    (large["peak_rss_mb"] - large["import_rss_mb"])
                    / max(1, small["peak_rss_mb"] - small["import_rss_mb"]),
                    2,
                ),
            }
        )
    return ratios


def markdown(record: dict[str, Any]) -> str:
    """The record as a markdown page (every number from ``record``)."""
    rows = record["results"]
    first = rows[0]
    lines = [
        "# Composite end-to-end benchmark",
        "",
        f"Generated {record['generated']} by `{record['command']}`.",
        "",
        f"Machine: {record['machine']}, {record['cpus']} CPUs (1-min load average "
        f"{record['load_before']:.2f} before, {record['load_after']:.2f} after: other processes "
        "share the CPUs). Stacks: `cloudseg.data.simulate.write_stack` (seed 0), "
        f"{len(first['bands'])} bands at native 10/20/60 m composited on the 10 m grid, "
        f"window {first['window_size']} px, cluster `local` (this process), the composed "
        "`conf/composite.yaml` defaults; stack assembly, masks, windows and COG outputs "
        "included, the evidence step (baselines, metrics, pictures) left out. Each case runs in a "
        "fresh process; peak RSS is its `ru_maxrss` (Python, GDAL and the imports included; "
        "`imports MB` is the same before the run). Scene-Mpx = dates x output pixels / 1e6.",
        "",
        "| case | scene-Mpx | seconds | s / scene-Mpx | stack s | masks s | windows s | "
        "outputs s | peak RSS MB | imports MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        stage = row["stage_s"]
        lines.append(
            f"| {row['case']} | {row['scene_mpx']:.2f} | {row['seconds']:.1f} | "
            f"{row['s_per_scene_mpx']:.2f} | {stage.get('stack', 0):.1f} | "
            f"{stage.get('masks', 0):.1f} | {stage.get('windows', 0):.1f} | "
            f"{stage.get('outputs', 0):.1f} | {row['peak_rss_mb']} | {row['import_rss_mb']} |"
        )
    if record["growth"]:
        lines += [
            "",
            "## Growth",
            "",
            "Ratios of the larger case to the smaller (work = scene-Mpx). A seconds ratio equal "
            "to the work ratio is linear cost; s / scene-Mpx ratio 1.0 means the same cost per "
            "pixel-date. RSS above imports = peak RSS minus the imports' RSS.",
            "",
            "| change | varies | work | seconds | s / scene-Mpx | peak RSS | RSS above imports |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for ratio in record["growth"]:
            lines.append(
                f"| {ratio['change']} | {ratio['varies']} | {ratio['work_ratio']:.2f}x | "
                f"{ratio['seconds_ratio']:.2f}x | {ratio['s_per_scene_mpx_ratio']:.2f}x | "
                f"{ratio['peak_rss_ratio']:.2f}x | {ratio['peak_rss_above_imports_ratio']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small case, a smoke run")
    parser.add_argument(
        "--temporal", action="store_true", help="only the cases with and without the temporal test"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where simulated stacks are kept"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown record, a .json beside it (default {RECORD.name}; with --quick, in --cache)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = args.cache / "composite_benchmark_quick.md" if args.quick else RECORD
    cases = QUICK_CASES if args.quick else TEMPORAL_CASES if args.temporal else DEFAULT_CASES
    args.cache.mkdir(parents=True, exist_ok=True)
    folders = {
        (case.n_dates, case.size): cached_stack(args.cache, case.n_dates, case.size)
        for case in cases
    }
    load_before = os.getloadavg()[0]
    rows = [measure(case, folders[(case.n_dates, case.size)]) for case in cases]
    load_after = os.getloadavg()[0]
    record = {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(["python", "experiments/bench_composite.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "results": rows,
        "growth": growth(rows),
    }
    print()
    print(markdown(record))
    args.out.write_text(markdown(record))
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"Wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
