"""What content fingerprints cost: hashing every scene file of a 100-date simulated stack.

    .venv/bin/python experiments/bench_fingerprint.py                 # 100 dates, 256 and 512 px
    .venv/bin/python experiments/bench_fingerprint.py --sizes 64      # a smoke run

Simulates ``cloudfree-simulate stack --n-dates 100 --size S`` into a temporary folder, then, per
size, times (repeats: ``--repeats``, median and range) the BLAKE2b digest of every scene file
(:func:`cloudseg.digests.file_digest`, what keys the mask cache now), the path/size/mtime
``stat`` it replaced, and the whole stack assembly (:func:`composite.stack.build_stack`, which
opens every scene and fingerprints it). Files are in the page cache after the first pass (a
cold read from disk adds the disk's read time). Writes experiments/fingerprint_cost.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cloudseg.data.simulate import write_stack
from cloudseg.digests import file_digest
from composite.stack import StackSettings, build_stack

RECORD = Path(__file__).with_name("fingerprint_cost.md")


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def summary(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s ({min(times):.3f}-{max(times):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-dates", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            folder = Path(tmp) / f"stack{size}"
            write_stack(folder, args.n_dates, size, seed=0, progress=False)
            files = sorted(folder.rglob("*.tif"))
            files = [path for path in files if "truth" not in path.parts]
            megabytes = sum(path.stat().st_size for path in files) / 1e6
            hashing = timed(lambda files=files: [file_digest(p) for p in files], args.repeats)
            stats = timed(lambda files=files: [os.stat(p) for p in files], args.repeats)
            scenes = folder / "scenes" if (folder / "scenes").is_dir() else folder
            assembly = timed(
                lambda scenes=scenes: build_stack(
                    StackSettings(source=str(scenes), deduplicate=False), progress=False
                ),
                max(1, args.repeats // 2),
            )
            rows.append(
                f"| {size} | {len(files)} | {megabytes:.1f} | {summary(hashing)} | "
                f"{megabytes / statistics.median(hashing):.0f} | {summary(stats)} | "
                f"{summary(assembly)} | {statistics.median(hashing) / statistics.median(assembly):.2f} |"
            )
            print(rows[-1], flush=True)
    load = os.getloadavg()
    RECORD.write_text(
        "# Content fingerprints: the cost of hashing a 100-date stack\n\n"
        f"Command: `.venv/bin/python experiments/bench_fingerprint.py --n-dates {args.n_dates} "
        f"--sizes {' '.join(map(str, args.sizes))} --repeats {args.repeats}`  \n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} at the end (shared machine: contended), "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Files in the page cache.\n\n"
        "Median (min-max) over the repeats. *hash*: BLAKE2b of every scene file (what keys the "
        "mask cache and the run key now); *stat*: the path/size/mtime it replaced; *assembly*: "
        "`build_stack` of the folder (opens every scene, hashes it).\n\n"
        "| size px | files | MB | hash | MB/s | stat | assembly (with hash) | hash share |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
