"""``python -m cloudseg.data.realdata``: training data from real scenes.

    python -m cloudseg.data.realdata library --source ../shared/realdata --out data/real/library.npz
    python -m cloudseg.data.realdata backgrounds --source ../shared/realdata \
        --out data/real/backgrounds
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

from cloudseg.data.mix import write_mixed_dataset
from cloudseg.data.realdata.backgrounds import write_background_set
from cloudseg.data.realdata.build_library import build_library
from cloudseg.data.realdata.demo import prepare_demo_data
from cloudseg.data.realdata.scenes import RealScene, find_real_scenes
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
    backgrounds.add_argument("--renders", type=int, default=4, help="atmospheres per view")
    backgrounds.add_argument(
        "--gsd", type=int, nargs="*", choices=SUPPORTED_GSD_M, default=[20, 30, 60],
        help="coarser GSDs to also render fine scenes at (block-averaged)",
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
    for command in (library, backgrounds):
        command.add_argument(
            "--source", type=Path, action="append", required=True,
            help="folder of real scenes (repeatable), e.g. ../shared/realdata",
        )  # fmt: skip
        command.add_argument("--out", type=Path, required=True)
        command.add_argument("--seed", type=int, default=0)
    return parser


def load_sources(sources: list[Path]) -> list[RealScene]:
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
            written = prepare_demo_data(args.out, args.realdata, args.seed)
        elif args.command == "library":
            scenes = load_sources(args.source)
            library = build_library(scenes, seed=args.seed)
            written = library.save(args.out)
            print(f"pixels by land type: {library.counts()}")
        else:
            written = write_background_set(
                load_sources(args.source), args.out, args.renders, args.seed, gsds=tuple(args.gsd)
            )
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"python -m cloudseg.data.realdata {args.command}: {err}") from err
    print(f"Wrote {written} in {time.perf_counter() - started:.1f} s.")
    return 0
