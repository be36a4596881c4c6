"""``python -m cloudseg.data.realdata``: training data from real scenes.

    python -m cloudseg.data.realdata library --source ../shared/realdata --out data/real/library.npz
    python -m cloudseg.data.realdata backgrounds --source ../shared/realdata \
        --out data/real/backgrounds
    python -m cloudseg.data.realdata curated --source ../shared/realdata \
        --curation data/manifests/realdata_consensus_curation.csv --out data/real/curated
    python -m cloudseg.data.realdata demo --realdata ../shared/realdata --out data/demo
    python -m cloudseg.data.realdata mix --dataset data/simulated/labeled \
        --dataset data/real/backgrounds --out data/demo

``--source`` may be given several times (the shared scenes and a user's own folder). Nothing is
copied from the sources: the outputs are derived (spectra, rendered scenes) and written under
``--out`` only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from cloudseg.data.importers.curation import CurationList
from cloudseg.data.mix import write_mixed_dataset
from cloudseg.data.realdata.backgrounds import DEFAULT_RENDERS, RenderExtras, write_background_set
from cloudseg.data.realdata.build_library import build_library
from cloudseg.data.realdata.curated import write_curated_set
from cloudseg.data.realdata.demo import CURATION_LIST, prepare_demo_data
from cloudseg.data.realdata.scenes import LoadedScene, find_real_scenes
from cloudseg.data.simulate.scale import SUPPORTED_GSD_M


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudseg.data.realdata",
        description="Training data from real Sentinel-2 scenes (deterministic by seed).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    library = commands.add_parser("library", help="spectral library of real clear-sky pixels")
    backgrounds = commands.add_parser(
        "backgrounds", help="simulated clouds rendered on real clear backgrounds (a dataset)"
    )
    backgrounds.add_argument("--renders", type=int, default=DEFAULT_RENDERS,
                             help=f"atmospheres per view (default {DEFAULT_RENDERS})")  # fmt: skip
    backgrounds.add_argument(
        "--gsd", type=int, nargs="*", choices=SUPPORTED_GSD_M, default=[20, 30, 60],
        help="coarser GSDs to also render fine scenes at (block-averaged)",
    )  # fmt: skip
    backgrounds.add_argument("--veil-share", type=float, default=0.0,
                             help="share of renders with a thin low veil added (default 0)")  # fmt: skip
    backgrounds.add_argument(
        "--veil-b10", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
        help="draw the veil's B10 gain (relative to the visible) from this range instead of "
        "deriving it from its height, e.g. 0 0.02 for low veils in humid air",
    )  # fmt: skip
    backgrounds.add_argument("--haze-share", type=float, default=0.0,
                             help="share of renders with dense haze, labelled clear (default 0)")  # fmt: skip
    backgrounds.add_argument("--cirrus-share", type=float, default=0.0,
                             help="share of renders with faint cirrus (default 0)")  # fmt: skip
    backgrounds.add_argument("--keep-path", action="store_true",
                             help="rendered shadows keep the path reflectance of L1C scenes")  # fmt: skip
    backgrounds.add_argument("--tilt-share", type=float, default=0.0,
                             help="share of renders whose clouds get another colour (default 0)")  # fmt: skip
    curated = commands.add_parser(
        "curated", help="real scenes labeled by the detectors' consensus, ignore where they differ"
    )
    curated.add_argument(
        "--curation", type=Path, default=None,
        help="scene_id,decision,reason list (e.g. data/manifests/realdata_consensus_curation.csv);"
        " scenes it does not name stay pending",
    )  # fmt: skip
    mix = commands.add_parser("mix", help="one training dataset listing several (nothing copied)")
    mix.add_argument("--dataset", type=Path, action="append", required=True,
                     help="a dataset folder to include (repeatable)")  # fmt: skip
    mix.add_argument("--out", type=Path, required=True)
    demo = commands.add_parser(
        "demo", help="the default training data (make demo-data): library, scenes, backgrounds, mix"
    )
    demo.add_argument("--realdata", type=Path, default=None,
                      help="folder of real scenes (absent: simulated only)")  # fmt: skip
    demo.add_argument("--out", type=Path, required=True)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--curation", type=Path, default=CURATION_LIST,
                      help="curation list of the consensus-labeled real scenes")  # fmt: skip
    for command in (library, backgrounds, curated):
        command.add_argument(
            "--source", type=Path, action="append", required=True,
            help="folder of real scenes (repeatable), e.g. ../shared/realdata",
        )  # fmt: skip
        command.add_argument("--out", type=Path, required=True)
        command.add_argument("--seed", type=int, default=0)
    return parser


def load_sources(sources: list[Path]) -> list[LoadedScene]:
    scenes = []
    for source in sources:
        found = find_real_scenes(source)
        print(f"{source}: {len(found)} scenes")
        scenes.extend(found)
    return scenes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "mix":
            written = write_mixed_dataset(args.out, args.dataset)
        elif args.command == "demo":
            written = prepare_demo_data(args.out, args.realdata, args.seed, args.curation)
        elif args.command == "curated":
            curation = None if args.curation is None else CurationList.read(args.curation)
            written = write_curated_set(load_sources(args.source), args.out, curation)
        elif args.command == "library":
            scenes = load_sources(args.source)
            library = build_library(scenes, seed=args.seed)
            written = library.save(args.out)
            print(f"pixels by land type: {library.counts()}")
        else:
            written = write_background_set(
                load_sources(args.source), args.out, args.renders, args.seed,
                gsds=tuple(args.gsd), extras=RenderExtras(
                    veil_share=args.veil_share, haze_share=args.haze_share,
                    veil_b10=None if args.veil_b10 is None else tuple(args.veil_b10),
                    cirrus_share=args.cirrus_share, tilt_share=args.tilt_share,
                ), keep_path=args.keep_path,
            )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"python -m cloudseg.data.realdata {args.command}: {err}") from err
    print(f"Wrote {written} in {time.perf_counter() - started:.1f} s.")
    return 0
