"""Command lines: ``cloudfree-predict`` (scenes -> COG masks) and ``cloudfree-evaluate-masks``.

Examples::

    # class + probability COGs for two scenes, model run at 60 m, with flip TTA
    cloudfree-predict best.ckpt S2A_MSIL1C_...SAFE scene.tif --out predictions/ --resolution 60 --flips

    # the model against s2cloudless, SCL (where present) and the threshold rule
    cloudfree-evaluate-masks --data data/simulated --split test --checkpoint best.ckpt \\
        --out experiments/mask_evaluation

    # real scenes without labels: models against the consensus of ukis-csmask, s2cloudless, SCL
    cloudfree-evaluate-masks --scenes ../shared/realdata --model demo=best.ckpt --out real/
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cloudseg.detectors.ukis import PRODUCT_LEVELS
from cloudseg.inference.evaluate import evaluate_masks
from cloudseg.inference.predict import output_paths, predict_scene
from cloudseg.inference.predictor import WindowedPredictor
from cloudseg.inference.producers import build_producer, producer_class, producer_names
from cloudseg.inference.real_scenes import DEFAULT_DETECTORS, evaluate_real_scenes
from cloudseg.inference.spec import InferenceSpec, MaskRule
from cloudseg.run_folder import exclusive_folder, remove_leftovers
from cloudseg.sentinel2.errors import SCENE_READ_ERRORS
from cloudseg.sentinel2.reader import open_scene

#: The defaults of the inference options: those of the spec, stated there once.
DEFAULTS = InferenceSpec()


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference")
    group.add_argument(
        "--resolution",
        type=float,
        default=DEFAULTS.resolution,
        help="run the model at this pixel size in metres (e.g. 20 or 60) and upsample the "
        "probabilities bilinearly; default: the scene's own grid",
    )
    group.add_argument(
        "--window-size",
        type=int,
        default=DEFAULTS.window_size,
        help="window side in pixels, a multiple of 16 (default: the checkpoint's patch size)",
    )
    group.add_argument(
        "--overlap",
        type=int,
        default=DEFAULTS.overlap,
        help="window overlap in pixels (default: window/4)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        help="windows per forward pass (default: 8 x 256^2 pixels' worth of windows)",
    )
    group.add_argument("--device", default=DEFAULTS.device, help="auto, cpu, cuda, cuda:1, ...")
    group.add_argument("--no-amp", action="store_true", help="no mixed precision on GPU")
    group.add_argument("--flips", action="store_true", help="average over h/v flips (3x time)")
    group.add_argument(
        "--cloud-threshold",
        type=_threshold("cloud_threshold"),
        default=DEFAULTS.rule.cloud_threshold,
        help="cloud where p(thick)+p(thin) >= this (a calibrated value); default: argmax",
    )
    group.add_argument(
        "--clear-threshold",
        type=_threshold("clear_threshold"),
        default=DEFAULTS.rule.clear_threshold,
        help="for masks that feed a composite: clear only where p(clear) >= this (e.g. 0.8), "
        "else the likeliest of thick/thin cloud and shadow; applied after --cloud-threshold, "
        "it only removes pixels from clear; default: none",
    )


def _threshold(name: str) -> Callable[[str], float]:
    """An argparse ``type`` for the :class:`MaskRule` field ``name``: a float in that threshold's
    range, else argparse's usage error with the range."""

    def probability(text: str) -> float:
        value = float(text)
        try:
            MaskRule(**{name: value})
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err
        return value

    return probability


def inference_spec(args: argparse.Namespace) -> InferenceSpec:
    """The :class:`InferenceSpec` of the parsed inference arguments."""
    return InferenceSpec(
        resolution=args.resolution,
        window_size=args.window_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        amp=not args.no_amp,
        flips=args.flips,
        rule=MaskRule(args.cloud_threshold, args.clear_threshold),
    )


def scene_name(source: str) -> str:
    """Output name of a source: the file or folder name without suffixes (``item`` -> parent)."""
    path = Path(source.rstrip("/"))
    name = path.name.split(".")[0] if path.suffix.lower() != ".safe" else path.stem
    if name.lower() in {"item", "metadata", ""}:
        name = path.parent.name
    return name


def predict_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cloudfree-predict",
        description="Predict cloud-mask COGs (<name>_classes.tif, <name>_probabilities.tif) on "
        "each scene's grid with a trained checkpoint.",
    )
    parser.add_argument("checkpoint", type=Path, help="a .ckpt written by train.py")
    parser.add_argument(
        "sources",
        nargs="+",
        help="scenes: multi-band GeoTIFF, folder/SAFE of band files, or STAC item JSON",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave scenes whose two outputs already exist (to continue an interrupted run)",
    )
    _add_inference_arguments(parser)
    args = parser.parse_args(argv)
    names = [scene_name(source) for source in args.sources]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        parser.error(f"sources share output names {repeated}; predict them into separate --out.")
    predictor = WindowedPredictor.from_checkpoint(
        args.checkpoint, inference_spec(args), key="checkpoint"
    )
    with exclusive_folder(args.out, f"cloudfree-predict --out {args.out}"):
        remove_leftovers(args.out)
        failed = [
            source
            for source, name in zip(args.sources, names, strict=True)
            if not _predict_source(predictor, source, name, args)
        ]
    if failed:
        print(
            f"{len(failed)} of {len(names)} scenes could not be read and were skipped: {failed} "
            f"(reasons above); the other {len(names) - len(failed)} are in {args.out}.",
            file=sys.stderr,
        )
        return 1
    return 0


def _predict_source(
    predictor: WindowedPredictor, source: str, name: str, args: argparse.Namespace
) -> bool:
    """Predict one scene of ``cloudfree-predict``; False (and why, on stderr) when the scene
    cannot be read, so the others still run."""
    classes_path, probabilities_path = output_paths(args.out, name)
    if args.skip_existing and classes_path.exists() and probabilities_path.exists():
        print(f"skip {source}: {classes_path} exists")
        return True
    try:
        with open_scene(source) as scene:
            predict_scene(predictor, scene, classes_path, probabilities_path)
    except SCENE_READ_ERRORS as err:
        print(f"skip {source}: {err}", file=sys.stderr)
        return False
    print(f"{source} -> {classes_path}, {probabilities_path}")
    return True


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cloudfree-evaluate-masks",
        description="Score cloud-mask producers on a labeled split (--data; writes metrics.json, "
        "metrics.md and worst_scenes.png to --out) or, without labels, on a folder of real "
        "scenes against the consensus of independent detectors (--scenes; writes metrics.json, "
        "metrics.md and overlays/).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="dataset folder (manifest.csv)")
    source.add_argument(
        "--scenes",
        type=Path,
        help="folder of real scenes (GeoTIFFs, band folders, STAC items, numpy series): "
        "evaluate against the consensus of --detectors",
    )
    parser.add_argument("--split", default="test", help="manifest split to evaluate (--data)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a .ckpt for 'model'")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=CKPT",
        help="(--scenes) a checkpoint to score under NAME; repeat for several",
    )
    parser.add_argument(
        "--producers",
        nargs="+",
        default=None,
        choices=producer_names(),
        help="producers in table order; the first ranks the worst scenes (default: model "
        "if --checkpoint is given, then s2cloudless, scl, threshold; with --scenes also ukis)",
    )
    parser.add_argument(
        "--detectors",
        nargs="+",
        default=list(DEFAULT_DETECTORS),
        choices=producer_names(),
        help="(--scenes) the producers whose agreement is the reference (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("experiments/mask_evaluation"))
    parser.add_argument("--worst", type=int, default=6, help="scenes in the worst-scenes figure")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="for scenes without a stored split: assign sites as the DataModule does (its "
        "data.split_seed)",
    )
    _add_producer_option_arguments(parser)
    _add_inference_arguments(parser)
    args = parser.parse_args(argv)
    names = args.producers
    if names is None:
        detectors = list(DEFAULT_DETECTORS) if args.scenes else ["s2cloudless", "scl"]
        names = [*(["model"] if args.checkpoint else []), *detectors, "threshold"]
    if args.scenes:
        names = list(dict.fromkeys([*names, *args.detectors]))
    command = shlex.join(["cloudfree-evaluate-masks", *(sys.argv[1:] if argv is None else argv)])
    try:
        producers = {}
        for spec in args.model:  # the named checkpoints first in the tables
            label, _, path = spec.partition("=")
            if not label or not path or label in producer_names() or label in producers:
                raise ValueError(
                    f"--model {spec!r}: give NAME=CKPT with a NAME of its own (not a producer's)."
                )
            producers[label] = build_producer(
                "model", checkpoint=path, inference=inference_spec(args), checkpoint_key="--model"
            )
        options = producer_options(args)
        for name in names:
            producers[name] = build_producer(
                name,
                checkpoint=args.checkpoint and str(args.checkpoint),
                inference=inference_spec(args),
                **options.get(name, {}),
            )
    except ValueError as err:
        parser.error(str(err))
    if args.scenes:
        evaluate_real_scenes(
            args.scenes, producers, args.out, detectors=args.detectors, command=command
        )
        print(f"wrote {args.out / 'metrics.md'}")
        return 0
    if args.model:
        parser.error("--model NAME=CKPT is for --scenes; with --data pass --checkpoint.")
    report = evaluate_masks(
        args.data,
        list(producers.values()),
        args.out,
        split=args.split,
        worst=args.worst,
        split_seed=args.split_seed,
        command=command,
    )
    for name, result in report["producers"].items():
        metrics = result["metrics"]
        summary = ", ".join(
            f"{key} {metrics[key]:.3f}"
            for key in ("balanced_accuracy", "iou_cloud_or_shadow_vs_clear", "iou_cloud_vs_rest")
            if key in metrics
        )
        print(f"{name}: {result['scenes']} scenes, {summary}")
    print(f"wrote {args.out / 'metrics.md'}")
    return 0


def _add_producer_option_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the producers that have some (defaults: the producers' own)."""
    group = parser.add_argument_group("producer options")
    group.add_argument(
        "--s2cloudless-resolution",
        type=float,
        default=producer_class("s2cloudless").resolution,
        help="pixel size (m) s2cloudless runs at (160: as Sentinel Hub runs it)",
    )
    group.add_argument(
        "--ukis-product-level",
        default=producer_class("ukis").product_level,
        choices=("auto", *PRODUCT_LEVELS),
        help="ukis-csmask's model: l1c or l2a; auto: from the scene (%(default)s)",
    )
    group.add_argument(
        "--ocm-weights",
        default=None,
        help="OmniCloudMask weights: a folder with its weight files, a TorchScript .pt, or "
        "'download' (with internet); needed for the ocm producer",
    )


def producer_options(args: argparse.Namespace) -> dict[str, dict]:
    """The producers' options from the command line, by producer name."""
    return {
        "model": {"checkpoint_key": "--checkpoint"},
        "s2cloudless": {"resolution": args.s2cloudless_resolution},
        "ukis": {"product_level": args.ukis_product_level},
        "ocm": {"weights": args.ocm_weights},
    }
