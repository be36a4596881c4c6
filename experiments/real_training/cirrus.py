"""How much of the simulated test split's cloud only B10 shows, and how models score without it.

The simulated labels call a pixel thin cloud where cirrus reflectance reaches 0.02. Such cirrus
is bright in B10 (1375 nm, above the water vapour) but adds only a few hundredths of
reflectance, nearly flat, to the other bands. This script replays the labeled set that
``--sim-test`` holds (:func:`~cloudseg.data.simulate.labeled_set_plan`; it checks that every
replayed test mask equals the stored one) and finds, per test scene, the pixels that are not
clear only because of the cirrus (:meth:`~cloudseg.data.simulate.World.cirrus_only`). Then, for
each run, it gives the simulated IoU cloud-or-shadow vs clear as ``ablation.py`` scores it, the
same IoU with the cirrus-only pixels left out, and the share of cirrus-only pixels the model
calls not clear (argmax).

    python experiments/real_training/cirrus.py --sim-test /work/wt/data-sim/labeled \\
        --run backgrounds-r24+curated-6-20ep-p128-share20-seed42 ...

Writes ``cirrus.md`` and ``cirrus.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import ARGMAX, sim_test_predictions  # noqa: E402

from cloudseg.data.manifest import read_manifest  # noqa: E402
from cloudseg.data.simulate import labeled_set_plan  # noqa: E402
from cloudseg.data.splits import assign_splits  # noqa: E402
from cloudseg.inference.predictor import WindowedPredictor  # noqa: E402
from cloudseg.labels import CLEAR, IGNORE_INDEX, THIN_CLOUD  # noqa: E402


def cirrus_only_masks(sim_test: Path, plan_options: dict) -> dict[str, np.ndarray]:
    """Per test scene of ``sim_test``, its cirrus-only pixels, from the replayed labeled set."""
    frame = read_manifest(sim_test)
    frame = frame[assign_splits(frame, seed=0)["split"] == "test"].set_index("scene_id")
    plan = {planned.scene_id: planned for planned in labeled_set_plan(**plan_options)}
    missing = sorted(set(frame.index) - set(plan))
    if missing:
        raise SystemExit(
            f"{sim_test}: test scenes {missing[:3]} are not in the labeled set of "
            f"labeled_set_plan({plan_options}); give the --n-scenes/--size/--seed it was "
            "written with (a set written with --library or --gsd cannot be replayed here)."
        )
    masks = {}
    for scene_id, row in frame.iterrows():
        planned = plan[scene_id]
        scene = planned.render()
        with rasterio.open(sim_test / row["mask_path"]) as dataset:
            stored = dataset.read(1)
        if not np.array_equal(stored, scene.mask):
            raise SystemExit(
                f"{sim_test / row['mask_path']}: the replayed mask differs from the stored one "
                f"in {int((stored != scene.mask).sum())} px; the set was written with other "
                "options or another version of the simulator."
            )
        masks[scene_id] = planned.world.cirrus_only(scene)
    return masks


def iou(tp: int, fp: int, fn: int) -> float:
    return round(tp / max(tp + fp + fn, 1), 4)


def score(predictor: WindowedPredictor, sim_test: Path, cirrus_only: dict) -> dict:
    """IoU cloud-or-shadow vs clear with and without the cirrus-only pixels, and their share
    called not clear."""
    counts = np.zeros((2, 3), dtype=np.int64)  # rows: all, cirrus-only left out; tp, fp, fn
    caught = 0
    for name, reference, classes in sim_test_predictions(predictor, sim_test, ARGMAX):
        valid = (reference != IGNORE_INDEX) & (classes != IGNORE_INDEX)
        truth, called = reference != CLEAR, classes != CLEAR
        for row, keep in enumerate((valid, valid & ~cirrus_only[name])):
            counts[row] += [(truth & called & keep).sum(), (~truth & called & keep).sum(),
                            (truth & ~called & keep).sum()]  # fmt: skip
        caught += int((cirrus_only[name] & valid & called).sum())
    total = sum(int(mask.sum()) for mask in cirrus_only.values())
    return {
        "sim_iou": iou(*counts[0]),
        "sim_iou_without_cirrus_only": iou(*counts[1]),
        "cirrus_only_called_cloud": round(caught / max(total, 1), 3),
    }


def split_facts(sim_test: Path, cirrus_only: dict) -> dict:
    frame = read_manifest(sim_test)
    frame = frame[assign_splits(frame, seed=0)["split"] == "test"]
    thin = not_clear = 0
    for row in frame.to_dict("records"):
        with rasterio.open(sim_test / row["mask_path"]) as dataset:
            mask = dataset.read(1)
        thin += int((mask == THIN_CLOUD).sum())
        not_clear += int(((mask != CLEAR) & (mask != IGNORE_INDEX)).sum())
    return {
        "scenes": len(frame),
        "cirrus_only_px": sum(int(mask.sum()) for mask in cirrus_only.values()),
        "thin_px": thin,
        "not_clear_px": not_clear,
        "per_scene": {name: int(mask.sum()) for name, mask in cirrus_only.items() if mask.any()},
    }


def markdown(report: dict) -> str:
    facts = report["split"]
    lines = [
        "# Cirrus that only B10 shows, in the simulated test split", "",
        "Generated by `experiments/real_training/cirrus.py`; do not edit by hand.", "",
        f"Command: `{report['command']}`  ", f"Machine: {report['machine']}", "",
        f"The test split ({facts['scenes']} scenes) has {facts['not_clear_px']} pixels labelled "
        f"cloud or shadow, {facts['thin_px']} of them thin cloud. {facts['cirrus_only_px']} "
        f"({facts['cirrus_only_px'] / facts['thin_px']:.0%} of the thin cloud) are labelled so "
        "only because of cirrus: rendered without its cirrus layer, the scene is clear there "
        "(per scene: " + ", ".join(f"`{n}` {c}" for n, c in facts["per_scene"].items()) + ").", "",
        "| run | bands | sim IoU c+s | the same, cirrus-only pixels left out | cirrus-only "
        "pixels called cloud |",
        "| --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for run in report["runs"]:
        lines.append(f"| {run['name']} | {run['bands']} | {run['sim_iou']:.3f} | "
                     f"{run['sim_iou_without_cirrus_only']:.3f} | "
                     f"{run['cirrus_only_called_cloud']:.0%} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sim-test", type=Path, required=True)
    parser.add_argument("--runs", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--run", nargs="+", default=[], help="run folders under --runs")
    parser.add_argument("--checkpoint", nargs=2, action="append", default=[],
                        metavar=("LABEL", "PATH"), help="a checkpoint outside --runs")  # fmt: skip
    parser.add_argument("--n-scenes", type=int, help="the set's (default: the simulator's)")
    parser.add_argument("--size", type=int, help="the set's (default: the simulator's)")
    parser.add_argument("--seed", type=int, help="the set's (default: the simulator's)")
    parser.add_argument("--out", type=Path, default=Path("experiments/real_training"))
    args = parser.parse_args()
    checkpoints = list(args.checkpoint)
    for name in args.run:
        score_file = args.runs / name / "score.json"
        if not score_file.exists():
            parser.error(f"{score_file} does not exist: score the run with ablation.py first.")
        checkpoints.append((name, json.loads(score_file.read_text())["checkpoint"]))
    if not checkpoints:
        parser.error("give --run and/or --checkpoint")
    plan_options = {key: value for key in ("n_scenes", "size", "seed")
                    if (value := getattr(args, key)) is not None}  # fmt: skip

    print("== replaying the labeled set's test scenes without their cirrus", flush=True)
    cirrus_only = cirrus_only_masks(args.sim_test, plan_options)
    runs = []
    print(f"== scoring {len(checkpoints)} checkpoints", flush=True)
    for name, checkpoint in checkpoints:
        predictor = WindowedPredictor.from_checkpoint(checkpoint)
        predictor.progress = False
        scores = score(predictor, args.sim_test, cirrus_only)
        runs.append({"name": name, "checkpoint": checkpoint, "bands": len(predictor.bands),
                     **scores})  # fmt: skip
    report = {
        "command": shlex.join(["python", "experiments/real_training/cirrus.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "split": split_facts(args.sim_test, cirrus_only),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cirrus.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "cirrus.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
