"""Benchmark of the masked-percentile kernel against its peers, in one run on the same arrays.

    .venv/bin/python experiments/bench_percentile.py            # about 2 min on 2 cores
    .venv/bin/python experiments/bench_percentile.py --quick    # 128 x 128 pixels, a smoke run

For 30, 100 and 300 dates x 4 bands x 512 x 512 pixels of uint16 DN with 60 % of the
observations excluded (plus 1 % nodata), it times the 25th percentile by
- np.nanpercentile on the masked values (NaN where excluded), on a slice, extrapolated;
- the sort-based method done well in numpy: one transposing copy to time-last with excluded
  values set to the largest DN (so they sort last), numpy's (AVX-512) sort along time, count,
  take_along_axis, interpolate; in row blocks on a thread pool (numpy releases the GIL);
- a per-pixel quickselect in numba (gather the valid values, nth_element), the textbook
  alternative to the kernel's vectorised bisection;
- composite.percentile.masked_percentile: linear (= np.nanpercentile), lower (one observation
  per band) and date-consistent (one date per pixel, ranked by the mean of all 4 bands);
- a masked streaming pass in numba that sums the valid values: one read of the stack and
  mask, the floor any exact method must pay;
and, for 100 dates, the kernel on a time-last (y, x, band, time) array read in place versus a
full transpose to time-first first. Results are cross-checked (kernel vs numpy sort, kernel
lower vs quickselect). It prints tables of times and ratios and writes them, with the machine
and load, to experiments/percentile_benchmark.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange
from tqdm import tqdm

from composite.percentile import masked_percentile
from composite.percentile.ranks import rank_table

Q = 25.0
NODATA = 0
EXCLUDED_SHARE = 0.6
NODATA_SHARE = 0.01
N_BANDS = 4
RECORD = Path(__file__).with_name("percentile_benchmark.md")


# -- data ----------------------------------------------------------------------------------------


def make_stack(n_dates: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(stack (time, band, y, x) uint16, exclude (time, y, x) bool): a surface DN per pixel and
    band (200-4000) with per-date noise, cloud-bright DN on the excluded dates, 1 % nodata."""
    rng = np.random.default_rng(seed)
    surface = rng.integers(200, 4000, (1, N_BANDS, size, size), dtype=np.int32)
    exclude = rng.random((n_dates, size, size), dtype=np.float32) < EXCLUDED_SHARE
    stack = np.empty((n_dates, N_BANDS, size, size), np.uint16)
    for t in range(n_dates):  # date by date keeps the int32 temporaries small
        noise = rng.integers(-150, 151, (N_BANDS, size, size), dtype=np.int32)
        cloud = rng.integers(5000, 9000, (N_BANDS, size, size), dtype=np.int32)
        dn = np.where(exclude[t], cloud, surface[0] + noise)
        dn[:, rng.random((size, size)) < NODATA_SHARE] = NODATA
        stack[t] = dn
    return stack, exclude


def valid_mask(stack: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """(time, y, x): not excluded and no band nodata (the kernel's definition)."""
    return ~exclude & (stack != NODATA).all(axis=1)


# -- peers ---------------------------------------------------------------------------------------


def nanpercentile_slice(stack: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """np.nanpercentile of the valid values (float64 with NaN where not valid)."""
    valid = valid_mask(stack, exclude)
    values = np.where(valid[:, None], stack, np.nan)
    return np.nanpercentile(values, Q, axis=0)


def sort_percentile_block(stack: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Linear percentile by sorting: excluded values last, count, take_along_axis, interpolate."""
    valid = valid_mask(stack, exclude)  # (time, y, x)
    ordered = np.moveaxis(stack, 0, -1).copy()  # (band, y, x, time): the one transposing copy
    np.copyto(ordered, np.iinfo(np.uint16).max, where=~np.moveaxis(valid, 0, -1)[None])
    ordered.sort(axis=-1)  # numpy's vectorised quicksort on contiguous rows
    count = valid.sum(axis=0)
    virtual = (count - 1) * (Q / 100)
    lower = np.floor(virtual)
    gamma = (virtual - lower)[None, ..., None]
    lower = np.clip(lower, 0, None).astype(np.intp)
    upper = np.minimum(lower + 1, np.maximum(count - 1, 0))
    a = np.take_along_axis(ordered, lower[None, ..., None], axis=-1).astype(np.float32)
    b = np.take_along_axis(ordered, upper[None, ..., None], axis=-1).astype(np.float32)
    result = (a + (b - a) * gamma.astype(np.float32))[..., 0]
    result[:, count == 0] = NODATA
    return result


def sort_percentile(stack: np.ndarray, exclude: np.ndarray, pool: ThreadPoolExecutor) -> np.ndarray:
    """`sort_percentile_block` over blocks of 16 rows on the thread pool."""
    size = stack.shape[2]
    blocks = [(y, min(y + 16, size)) for y in range(0, size, 16)]
    parts = pool.map(
        lambda b: sort_percentile_block(stack[:, :, b[0] : b[1]], exclude[:, b[0] : b[1]]), blocks
    )
    return np.concatenate(list(parts), axis=1)


@njit(cache=True)
def _quickselect(values, k, n):
    """values[k] after partially ordering values[:n] (Numerical Recipes' select)."""
    left, right = 0, n - 1
    while right > left + 1:
        mid = (left + right) >> 1
        values[mid], values[left + 1] = values[left + 1], values[mid]
        if values[left] > values[right]:
            values[left], values[right] = values[right], values[left]
        if values[left + 1] > values[right]:
            values[left + 1], values[right] = values[right], values[left + 1]
        if values[left] > values[left + 1]:
            values[left], values[left + 1] = values[left + 1], values[left]
        i, j, pivot = left + 1, right, values[left + 1]
        while True:
            i += 1
            while values[i] < pivot:
                i += 1
            j -= 1
            while values[j] > pivot:
                j -= 1
            if j < i:
                break
            values[i], values[j] = values[j], values[i]
        values[left + 1], values[j] = values[j], pivot
        if j >= k:
            right = j - 1
        if j <= k:
            left = i
    if right == left + 1 and values[right] < values[left]:
        values[left], values[right] = values[right], values[left]
    return values[k]


@njit(parallel=True, cache=True)
def quickselect_lower(stack, exclude, ranks, out):
    """Per pixel and band: gather the valid values, quickselect the rank `ranks[n]`."""
    n_dates, n_bands, height, width = stack.shape
    for y in prange(height):
        valid = np.empty((width, n_dates), np.bool_)
        series = np.empty((n_bands, width, n_dates), stack.dtype)
        scratch = np.empty(n_dates, stack.dtype)
        for t in range(n_dates):
            for x in range(width):
                valid[x, t] = not exclude[t, y, x]
            for b in range(n_bands):
                for x in range(width):
                    value = stack[t, b, y, x]
                    series[b, x, t] = value
                    valid[x, t] &= value != 0
        for x in range(width):
            for b in range(n_bands):
                n = 0
                for t in range(n_dates):
                    if valid[x, t]:
                        scratch[n] = series[b, x, t]
                        n += 1
                out[b, y, x] = _quickselect(scratch, ranks[n], n) if n > 0 else 0


@njit(parallel=True, cache=True)
def masked_sum(stack, exclude, out):
    """The streaming floor: out[b, y, x] = sum of the valid (not excluded, not 0) values."""
    n_dates, n_bands, height, width = stack.shape
    for y in prange(height):
        for t in range(n_dates):
            masked = exclude[t, y]
            for b in range(n_bands):
                row = stack[t, b, y]
                total = out[b, y]
                for x in range(width):
                    value = row[x]
                    total[x] += value if (value != 0) & (not masked[x]) else 0


# -- timing --------------------------------------------------------------------------------------


class Timing(NamedTuple):
    """Best wall-clock seconds and best process CPU seconds (all threads) over the repeats."""

    wall: float
    cpu: float

    def scaled(self, factor: float) -> Timing:
        return Timing(self.wall * factor, self.cpu * factor)


def best_time(run: Callable[[], object], repeats: int) -> Timing:
    """Fastest of `repeats` runs (after the caller's warm-up), in wall and in CPU time."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(min(walls), min(cpus))


@dataclass
class Case:
    """Measured seconds per method and notes for one number of dates."""

    n_dates: int
    size: int
    seconds: dict[str, Timing] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Inputs:
    """The arrays of a case and small C-contiguous samples of them for warm-up calls (the numba
    peers compile one version per array layout)."""

    stack: np.ndarray
    exclude: np.ndarray
    warm_stack: np.ndarray
    warm_exclude: np.ndarray

    @classmethod
    def make(cls, n_dates: int, size: int) -> Inputs:
        stack, exclude = make_stack(n_dates, size, seed=n_dates)
        return cls(
            stack,
            exclude,
            np.ascontiguousarray(stack[:, :, :8, :8]),
            np.ascontiguousarray(exclude[:, :8, :8]),
        )


def time_nanpercentile(case: Case, data: Inputs, repeats: int) -> None:
    """np.nanpercentile on a 16 x 64 pixel slice, scaled to the whole image."""
    rows, cols = min(16, case.size), min(64, case.size)
    scale = case.size * case.size / (rows * cols)
    nanpercentile_slice(data.warm_stack, data.warm_exclude)
    seconds = best_time(
        lambda: nanpercentile_slice(data.stack[:, :, :rows, :cols], data.exclude[:, :rows, :cols]),
        min(repeats, 2),
    )
    case.seconds["np.nanpercentile"] = seconds.scaled(scale)
    case.notes.append(f"np.nanpercentile timed on {rows} x {cols} pixels, scaled by {scale:.0f}")


def time_sort(case: Case, data: Inputs, repeats: int, pool: ThreadPoolExecutor) -> np.ndarray:
    sort_percentile(data.warm_stack, data.warm_exclude, pool)
    case.seconds["numpy sort"] = best_time(
        lambda: sort_percentile(data.stack, data.exclude, pool), repeats
    )
    return sort_percentile(data.stack, data.exclude, pool)


def time_quickselect(case: Case, data: Inputs, repeats: int) -> np.ndarray:
    ranks = rank_table(np.array([Q]), case.n_dates, "lower").lower[0]
    out = np.zeros((N_BANDS, case.size, case.size), np.uint16)
    quickselect_lower(
        data.warm_stack, data.warm_exclude, ranks, np.zeros((N_BANDS, 8, 8), np.uint16)
    )
    case.seconds["numba quickselect (lower)"] = best_time(
        lambda: quickselect_lower(data.stack, data.exclude, ranks, out), repeats
    )
    return out


def time_kernel(case: Case, data: Inputs, repeats: int) -> dict[str, np.ndarray]:
    """The kernel's three modes; returns their composites."""
    runs = {
        "kernel linear": dict(method="linear"),
        "kernel lower": dict(method="lower"),
        "kernel by date (lower)": dict(method="lower", key=tuple(range(N_BANDS))),
    }
    composites = {}
    for name, options in runs.items():
        masked_percentile(data.warm_stack, data.warm_exclude, Q, **options)  # compile/load cache
        composites[name] = masked_percentile(data.stack, data.exclude, Q, **options).composite
        case.seconds[name] = best_time(
            lambda o=options: masked_percentile(data.stack, data.exclude, Q, **o), repeats
        )
    return composites


def time_streaming_floor(case: Case, data: Inputs, repeats: int, label: str = "") -> None:
    sums = np.zeros((N_BANDS, case.size, case.size), np.uint32)
    masked_sum(data.warm_stack, data.warm_exclude, np.zeros((N_BANDS, 8, 8), np.uint32))
    case.seconds["streaming floor" + label] = best_time(
        lambda: masked_sum(data.stack, data.exclude, sums), repeats
    )


def time_one_thread(case: Case, data: Inputs, repeats: int) -> None:
    """Kernel and floor on one thread: how much the second core buys."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        case.seconds["kernel linear, 1 thread"] = best_time(
            lambda: masked_percentile(data.stack, data.exclude, Q), repeats
        )
        time_streaming_floor(case, data, repeats, label=", 1 thread")
    finally:
        numba.set_num_threads(threads)


def time_time_last(case: Case, data: Inputs, repeats: int, expected: np.ndarray) -> None:
    """A (y, x, band, time) stack: read in place by the kernel vs transposed to time-first."""
    time_last = np.ascontiguousarray(np.moveaxis(data.stack, (0, 1), (3, 2)))
    exclude_last = np.ascontiguousarray(np.moveaxis(data.exclude, 0, 2))  # (y, x, time)
    layout = dict(time_axis=-1, band_axis=2)
    in_place = masked_percentile(time_last, exclude_last, Q, **layout).composite
    assert np.array_equal(in_place, expected)
    case.seconds["time-last, read in place"] = best_time(
        lambda: masked_percentile(time_last, exclude_last, Q, **layout), repeats
    )
    case.seconds["time-last, transposed first"] = best_time(
        lambda: masked_percentile(
            np.ascontiguousarray(np.moveaxis(time_last, (3, 2), (0, 1))),
            np.ascontiguousarray(np.moveaxis(exclude_last, 2, 0)),
            Q,
        ),
        repeats,
    )


def cross_check(case: Case, data: Inputs, composites, by_sort, by_quickselect) -> None:
    """The timed methods compute the same thing (asserted, and noted in the record)."""
    linear = composites["kernel linear"]
    difference = float(np.abs(linear - by_sort).max())
    assert difference < 1e-2, difference
    case.notes.append(f"max |kernel linear - numpy sort| = {difference:.3g} DN")
    assert np.array_equal(composites["kernel lower"], by_quickselect)
    case.notes.append("kernel lower == numba quickselect: identical")
    expected = nanpercentile_slice(data.stack[:, :, :8, :64], data.exclude[:, :8, :64])
    expected = np.where(np.isnan(expected), NODATA, expected)
    assert np.allclose(linear[:, :8, :64], expected, rtol=1e-5)
    case.notes.append("kernel linear == np.nanpercentile on 8 x 64 pixels (rtol 1e-5)")


def run_case(
    n_dates: int, size: int, repeats: int, pool: ThreadPoolExecutor, progress: tqdm
) -> Case:
    """Every measurement for one number of dates, on one set of arrays."""
    case = Case(n_dates, size)
    data = Inputs.make(n_dates, size)
    steps = [
        ("np.nanpercentile", lambda: time_nanpercentile(case, data, repeats)),
        ("numpy sort", lambda: time_sort(case, data, repeats, pool)),
        ("quickselect", lambda: time_quickselect(case, data, repeats)),
        ("kernel", lambda: time_kernel(case, data, repeats)),
        ("streaming floor", lambda: time_streaming_floor(case, data, repeats)),
    ]
    outputs = {}
    for name, step in steps:
        progress.set_description(f"{n_dates} dates: {name}")
        outputs[name] = step()
        progress.update()
    if n_dates == 100:
        progress.set_description(f"{n_dates} dates: one thread, time-last layout")
        time_one_thread(case, data, repeats)
        time_time_last(case, data, repeats, outputs["kernel"]["kernel linear"])
    progress.update()
    cross_check(case, data, outputs["kernel"], outputs["numpy sort"], outputs["quickselect"])
    return case


# -- report --------------------------------------------------------------------------------------


RATIOS = [
    ("np.nanpercentile / kernel linear", "np.nanpercentile", "kernel linear"),
    ("numpy sort / kernel linear", "numpy sort", "kernel linear"),
    ("kernel linear / streaming floor", "kernel linear", "streaming floor"),
    ("kernel lower / streaming floor", "kernel lower", "streaming floor"),
    ("kernel by date / streaming floor", "kernel by date (lower)", "streaming floor"),
    ("np.nanpercentile / streaming floor (bound)", "np.nanpercentile", "streaming floor"),
    ("numba quickselect / kernel lower", "numba quickselect (lower)", "kernel lower"),
    ("kernel linear: 1 thread / all threads", "kernel linear, 1 thread", "kernel linear"),
    ("streaming floor: 1 thread / all threads", "streaming floor, 1 thread", "streaming floor"),
    ("transposed first / read in place", "time-last, transposed first", "time-last, read in place"),
]


def _table(header: str, cases: list[Case], rows: list[tuple[str, list[str]]]) -> list[str]:
    lines = [
        f"| {header} | "
        + " | ".join(f"{c.n_dates} dates, {c.size}x{c.size}" for c in cases)
        + " |",
        "| --- | " + " | ".join("---:" for _ in cases) + " |",
    ]
    return lines + [
        f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows if any(cells)
    ]


def report(cases: list[Case], command: str, load_before: tuple, load_after: tuple) -> str:
    """The markdown record: setup, seconds and ratios as measured, cross-check notes."""
    names = list(dict.fromkeys(name for case in cases for name in case.seconds))
    seconds = [
        (
            name,
            [
                f"{c.seconds[name].wall:.4g} ({c.seconds[name].cpu:.4g})"
                if name in c.seconds
                else ""
                for c in cases
            ],
        )
        for name in names
    ]
    ratios = [
        (
            label,
            [
                f"{c.seconds[top].wall / c.seconds[bottom].wall:.1f}x "
                f"({c.seconds[top].cpu / c.seconds[bottom].cpu:.1f}x)"
                if top in c.seconds and bottom in c.seconds
                else ""
                for c in cases
            ],
        )
        for label, top, bottom in RATIOS
    ]
    lines = [
        "# Masked percentile benchmark",
        "",
        f"Generated by `{command}` on {dt.datetime.now().isoformat(timespec='seconds')}.",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads, "
        f"{numba.threading_layer()} layer), numpy {np.__version__}, Python {platform.python_version()}.",
        f"Load average (1, 5, 15 min) before: {load_before}, after: {load_after} "
        "(a shared machine: other processes compete for the cores).",
        f"Data: uint16, {N_BANDS} bands, {EXCLUDED_SHARE:.0%} of observations excluded, "
        f"{NODATA_SHARE:.0%} nodata; q = {Q:g}. Each cell: best wall-clock time of the repeats, "
        "and in brackets the best process CPU time (all threads), which other processes on the "
        "machine disturb less.",
        "",
        "## Seconds: wall (CPU)",
        "",
        *_table("method", cases, seconds),
        "",
        "## Ratios: wall (CPU)",
        "",
        "Goal: >= 300x np.nanpercentile, >= 10x numpy sort, <= 5x the streaming floor.",
        "",
        *_table("ratio", cases, ratios),
        "",
        "## Notes",
        "",
        *[f"- {case.n_dates} dates: " + "; ".join(case.notes) for case in cases],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--size", type=int, default=512, help="pixels per side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="128 x 128 pixels, 2 repeats")
    parser.add_argument("--record", type=Path, default=RECORD, help="markdown file to write")
    args = parser.parse_args(argv)
    size, repeats = (128, 2) if args.quick else (args.size, args.repeats)
    command = "python experiments/bench_percentile.py" + (" --quick" if args.quick else "")
    load_before = tuple(round(v, 2) for v in os.getloadavg())
    cases = []
    steps_per_case = 6  # progress steps in run_case
    with (
        ThreadPoolExecutor(numba.get_num_threads()) as pool,
        tqdm(total=steps_per_case * len(args.dates)) as progress,
    ):
        for n_dates in args.dates:
            cases.append(run_case(n_dates, size, repeats, pool, progress))
    load_after = tuple(round(v, 2) for v in os.getloadavg())
    text = report(cases, command, load_before, load_after)
    print(text)
    args.record.write_text(text)
    print(f"written to {args.record}")


if __name__ == "__main__":
    main()
