"""Benchmark: full-tile cloud-mask inference, memory and speed, against s2cloudless.

Simulates a Sentinel-2 L1C tile cheaply (13 per-band GeoTIFFs at native 10/20/60 m, like a SAFE's
IMG_DATA, written strip by strip, with land, water, thick and thin cloud, shadows and a no-data
swath edge), then runs each case in a fresh process and reports wall time, peak resident memory
(``ru_maxrss`` of that process) and throughput in scene-megapixels per second (10 m pixels of the
tile / wall time):

- ``model@{res}m``: :func:`cloudseg.inference.predict_scene` end to end: read at ``res``, windows,
  blend, upsample, class + probability COGs on the 10 m grid;
- ``model@{res}m inference``: the same without output: read at ``res`` and blend only;
- ``s2cloudless@{res}m`` and ``s2cloudless@160m``: s2cloudless's mask on the same scene at the same
  resolution and at its production 160 m (read + probabilities + mask, at that resolution).

The model is ``--checkpoint`` if given, else an untrained model built with the architecture of
``conf/model/<--model>.yaml`` (speed and memory do not depend on the weights). Writes
``experiments/bench_inference.{json,md}`` (``--out``)::

    .venv/bin/python experiments/bench_inference.py                  # 10980 x 10980, 60 m
    .venv/bin/python experiments/bench_inference.py --size 2196 --out /tmp/bench  # quick check
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCENE_VERSION = 1
TILE_ID = "T31TDH"
SENSING = "20210601T103021"
NATIVE_FACTOR = {10: 6, 20: 3, 60: 1}  # 10 m pixels per 60 m pixel, per native resolution
#: TOA reflectance of the simulated surfaces, 13 bands (B01..B12 with B8A, SENTINEL2.md's table).
SPECTRA: dict[str, list[float]] = {
    "vegetation": [0.12, 0.07, 0.07, 0.04, 0.10, 0.22, 0.27, 0.30, 0.31, 0.10, 0.005, 0.17, 0.08],
    "soil": [0.13, 0.10, 0.12, 0.16, 0.19, 0.21, 0.23, 0.24, 0.25, 0.08, 0.005, 0.32, 0.26],
    "water": [0.11, 0.08, 0.06, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.002, 0.01, 0.005],
    "thick_cloud": [0.62, 0.70, 0.70, 0.70, 0.69, 0.68, 0.67, 0.66, 0.66, 0.35, 0.08, 0.50, 0.40],
    "thin_cloud": [0.17, 0.13, 0.13, 0.10, 0.16, 0.27, 0.32, 0.35, 0.36, 0.13, 0.05, 0.19, 0.09],
    "cloud_shadow": [0.07, 0.04, 0.04, 0.02, 0.04, 0.08, 0.09, 0.10, 0.11, 0.03, 0.002, 0.06, 0.03],
}


# -- the simulated tile --------------------------------------------------------------------------


def surface_map(size_60m: int, seed: int) -> np.ndarray:
    """Surface index per 60 m pixel (keys of ``SPECTRA`` in order; -1 = no data)."""
    from scipy.ndimage import zoom

    rng = np.random.default_rng(seed)

    def smooth_field(cells: int) -> np.ndarray:
        coarse = rng.normal(size=(cells, cells))
        field = zoom(coarse, size_60m / cells, order=3)[:size_60m, :size_60m]
        return (field - field.mean()) / field.std()

    land, cloud, cirrus = smooth_field(40), smooth_field(60), smooth_field(25)
    surface = np.where(land > 0.3, 1, 0)
    surface[land < -1.5] = 2
    thick = cloud > 1.0
    shadow = np.roll(thick, (12, 8), axis=(0, 1)) & ~thick
    surface[shadow] = 5
    surface[(cirrus > 1.2) & ~thick] = 4
    surface[thick] = 3
    rows, cols = np.indices(surface.shape)
    surface[cols < 0.2 * size_60m * (1 - rows / size_60m)] = -1  # swath edge
    return surface.astype(np.int8)


def write_tile(folder: Path, size: int, seed: int = 0) -> Path:
    """Write the 13 band files of a ``size`` x ``size`` (10 m) tile; reuse it if already there."""
    import rasterio
    from affine import Affine
    from tqdm import tqdm

    from cloudseg.sentinel2.bands import BANDS

    if size % 6:
        raise ValueError(f"--size must be a multiple of 6 (10/20/60 m grids), got {size}.")
    stamp = folder / "scene.json"
    description = {"version": SCENE_VERSION, "size": size, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == description:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    size_60m = size // 6
    surface = surface_map(size_60m, seed)
    lut = np.array(list(SPECTRA.values()), dtype=np.float32)  # (surfaces, 13)
    texture = 1 + 0.05 * np.random.default_rng(seed + 1).standard_normal((512, 512))
    strip_60m = 64
    for band_index, band in enumerate(tqdm(BANDS, desc="simulate tile", unit="band")):
        factor = NATIVE_FACTOR[band.resolution_m]
        width = size_60m * factor
        transform = Affine(band.resolution_m, 0, 399960.0, 0, -band.resolution_m, 4800000.0)
        profile = {
            "driver": "GTiff", "dtype": "uint16", "count": 1, "width": width, "height": width,
            "crs": "EPSG:32631", "transform": transform, "nodata": 0, "tiled": True,
            "blockxsize": 512, "blockysize": 512, "BIGTIFF": "IF_SAFER",
        }  # fmt: skip
        with rasterio.open(folder / f"{TILE_ID}_{SENSING}_{band.name}.tif", "w", **profile) as dst:
            for row in range(0, size_60m, strip_60m):
                block = surface[row : row + strip_60m]
                block = np.repeat(np.repeat(block, factor, axis=0), factor, axis=1)
                reflectance = lut[np.maximum(block, 0), band_index]
                rows, cols = block.shape
                tiles = np.tile(texture, (rows // 512 + 2, cols // 512 + 1))
                reflectance = reflectance * tiles[row % 512 : row % 512 + rows, :cols]
                dn = np.clip(np.rint(reflectance * 10000), 1, 65535).astype(np.uint16)
                dn[block < 0] = 0
                dst.write(dn, 1, window=((row * factor, row * factor + rows), (0, width)))
    stamp.write_text(json.dumps(description))
    return folder


# -- the model -----------------------------------------------------------------------------------


def load_predictor(args: argparse.Namespace, resolution: float | None = None):
    """The benchmarked predictor (model run at ``resolution``) and a description of it."""
    import yaml

    from cloudseg.inference.predictor import WindowedPredictor
    from cloudseg.inference.spec import InferenceSpec
    from cloudseg.labels import CLASS_NAMES
    from cloudseg.models import build_segmenter
    from cloudseg.sentinel2.bands import L1C_BANDS

    spec = InferenceSpec(
        resolution=resolution, window_size=args.window_size, batch_size=args.batch_size,
        device="cpu",
    )  # fmt: skip
    if args.checkpoint:
        predictor = WindowedPredictor.from_checkpoint(args.checkpoint, spec, progress=False)
        return predictor, f"checkpoint {args.checkpoint}"
    config = yaml.safe_load((REPO / "conf" / "model" / f"{args.model}.yaml").read_text())
    segmenter = dict(config["segmenter"])
    base = yaml.safe_load((REPO / "conf" / "model" / "vit_b16.yaml").read_text())["segmenter"]
    segmenter = {**base, **segmenter, "bands": list(L1C_BANDS), "img_size": 256}
    segmenter.update(pretrained="none", weights_path=None)
    model = build_segmenter(**segmenter)
    meta = {
        "bands": list(L1C_BANDS),
        "normalization": {"bands": list(L1C_BANDS), "mean": [0.2] * 13, "std": [0.15] * 13},
        "classes": list(CLASS_NAMES),
        "model_config": model.config,
        "patch_size": 256,
    }
    description = (
        f"untrained conf/model/{args.model}.yaml ({segmenter['backbone']} + {segmenter['head']}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters)"
    )
    return WindowedPredictor(model, meta, spec, progress=False), description


# -- the cases, each in its own process ---------------------------------------------------------


def prepare_case(case: str, args: argparse.Namespace, scene) -> tuple[Callable[[], dict], dict]:
    """``(work, notes)`` for a case: everything but the timed work is done here."""
    from cloudseg.inference.predict import output_paths, predict_scene
    from cloudseg.inference.producers.s2cloudless import S2CloudlessProducer

    notes: dict[str, Any] = {}
    if case == "baseline":  # imports, model and open scene only: the floor of the others' RSS
        load_predictor(args)
        return dict, notes
    kind, _, rest = case.partition("@")
    resolution = float(rest.split("m")[0])
    if kind == "s2cloudless":
        producer = S2CloudlessProducer(resolution=resolution)

        def s2cloudless() -> dict:
            mask = producer.cloud_mask(scene, producer.processing_grid(scene))
            return {"cloud_fraction": round(float(mask.mean()), 3)}

        return s2cloudless, notes
    predictor, notes["model"] = load_predictor(args, resolution)
    notes["window_size"], notes["overlap"] = predictor.window_size, predictor.overlap
    notes["batch_size"] = predictor.batch_size
    grid = scene.grid(resolution)

    def inference_only() -> dict:
        def read(window):
            return scene.read_reflectance(predictor.bands, grid=grid, window=window)

        for _ in predictor.probability_strips(read, grid.height, grid.width):
            pass
        return {}

    def end_to_end() -> dict:
        with tempfile.TemporaryDirectory(dir=args.workdir) as out:
            predict_scene(predictor, scene, *output_paths(out, "tile"))
            size = sum(path.stat().st_size for path in Path(out).glob("*.tif"))
        return {"output_mb": round(size / 1e6, 1)}

    return (inference_only if case.endswith("inference") else end_to_end), notes


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(case: str, args: argparse.Namespace, scene_folder: str, queue) -> None:
    """Child process: run one case, put its measurements on ``queue``."""
    import rasterio
    import torch

    from cloudseg.sentinel2.reader import open_scene

    torch.set_num_threads(args.threads)
    with rasterio.Env(GDAL_CACHEMAX=args.gdal_cache_mb), open_scene(scene_folder) as scene:
        work, notes = prepare_case(case, args, scene)
        wall, cpu = time.perf_counter(), cpu_seconds()
        notes.update(work())
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put({"seconds": wall, "cpu_seconds": cpu, "peak": peak, **notes})


def measure(case: str, args: argparse.Namespace, scene_folder: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_case, args=(case, args, str(scene_folder), queue))
    process.start()
    measured = queue.get()
    process.join()
    seconds, peak = measured.pop("seconds"), measured.pop("peak")
    result = {
        "case": case,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(measured.pop("cpu_seconds"), 1),
        "peak_rss_mb": round(peak / 2**20),
        "scene_mpx_per_s": round(args.size**2 / 1e6 / seconds, 2) if case != "baseline" else None,
        **measured,
    }
    print(json.dumps(result), flush=True)
    return result


def markdown(record: dict[str, Any]) -> str:
    rows = record["results"]
    by_case = {row["case"]: row for row in rows}
    res = record["resolution"]
    lines = [
        "# Full-tile inference benchmark",
        "",
        f"Generated {record['generated']} by `{record['command']}`.",
        "",
        f"Scene: simulated L1C tile, {record['size']} x {record['size']} px at 10 m "
        f"({record['scene_mpx']:.1f} Mpx, 13 band files at native 10/20/60 m, uncompressed). "
        f"Machine: {record['machine']} (1-min load average {record['load_average_1min'][0]} "
        f"before, {record['load_average_1min'][1]} after: other processes share the CPUs); "
        f"torch threads {record['threads']}, GDAL_CACHEMAX "
        f"{record['gdal_cache_mb']} MB. Model: {record['model']}, window "
        f"{record['window_size']} px (overlap {record['overlap']}) at {res:g} m, batch "
        f"{record['batch_size']}. Each case runs in "
        "a fresh process; peak RSS is that process's `ru_maxrss` (Python, torch and GDAL "
        "included); CPU s is its user + system time during the case (all threads), less "
        "sensitive than wall time to other processes on the machine.",
        "",
        "| case | wall s | CPU s | peak RSS (MB) | scene Mpx/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        speed = "" if row["scene_mpx_per_s"] is None else f"{row['scene_mpx_per_s']:.2f}"
        lines.append(
            f"| {row['case']} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | "
            f"{row['peak_rss_mb']} | {speed} |"
        )
    model = by_case.get(f"model@{res:g}m")
    peer = by_case.get(f"s2cloudless@{res:g}m")
    inference = by_case.get(f"model@{res:g}m inference")
    lines.append("")
    if model and peer:
        lines.append(
            f"Model end to end (10 m COGs) / s2cloudless at {res:g} m: wall time "
            f"{model['seconds'] / peer['seconds']:.2f}x, CPU time "
            f"{model['cpu_seconds'] / peer['cpu_seconds']:.2f}x."
        )
    if inference and peer:
        lines.append(
            f"Model inference only / s2cloudless at {res:g} m (both read + classify at "
            f"{res:g} m): wall time {inference['seconds'] / peer['seconds']:.2f}x, CPU time "
            f"{inference['cpu_seconds'] / peer['cpu_seconds']:.2f}x."
        )
    baseline = by_case.get("baseline")
    if baseline and model:
        lines.append(
            f"Peak RSS above the `baseline` process (imports, model, open scene: "
            f"{baseline['peak_rss_mb']} MB): {model['peak_rss_mb'] - baseline['peak_rss_mb']} MB "
            "for the whole end-to-end prediction."
        )
    full_float = 4 * record["scene_mpx"] * 1e6 * 4 / 2**20
    lines.append(
        f"For scale: the 4-class float32 probabilities of the whole tile at 10 m alone would be "
        f"{full_float:.0f} MB."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10980, help="tile side in 10 m pixels")
    parser.add_argument("--resolution", type=float, default=60.0, help="model inference metres")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--model", default="vit_tiny", help="conf/model/<name>.yaml if no ckpt")
    parser.add_argument(
        "--window-size", type=int, default=None, help="default: the checkpoint's patch size"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default: the predictor's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gdal-cache-mb", type=int, default=256)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cloudfree_bench"
    )
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "bench_inference")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    args.workdir.mkdir(parents=True, exist_ok=True)
    scene_folder = write_tile(args.workdir / f"tile_{args.size}", args.size)
    res = args.resolution
    cases = ["baseline", f"model@{res:g}m", f"model@{res:g}m inference", f"s2cloudless@{res:g}m"]
    if res != 160:
        cases.append("s2cloudless@160m")
    load_before = os.getloadavg()
    results = [measure(case, args, scene_folder) for case in cases]
    load_after = os.getloadavg()
    model_run = next(r for r in results if "window_size" in r)
    record = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shlex.join(
            ["python", "experiments/bench_inference.py", *(argv or sys.argv[1:])]
        ),
        "size": args.size,
        "scene_mpx": args.size**2 / 1e6,
        "resolution": res,
        "model": model_run["model"],
        "window_size": model_run["window_size"],
        "overlap": model_run["overlap"],
        "batch_size": model_run["batch_size"],
        "threads": args.threads,
        "gdal_cache_mb": args.gdal_cache_mb,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
