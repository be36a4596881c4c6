"""``cloudfree-simulate``: write the simulated labeled set, a time-series stack or two
overlapping tiles from the command line (also ``python -m cloudseg.data.simulate``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from cloudseg.data.manifest import MANIFEST_NAME, read_manifest
from cloudseg.data.simulate.library import SpectralLibrary
from cloudseg.data.simulate.products import (
    STACK_DATE_RANGE,
    STACK_SITE,
    write_labeled_set,
    write_overlapping_tiles,
    write_stack,
)
from cloudseg.data.simulate.scale import BASE_GSD_M, SUPPORTED_GSD_M
from cloudseg.data.simulate.sites import SITES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudfree-simulate",
        description="Simulate Sentinel-2 L1C scenes with true cloud masks (deterministic by seed).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    labeled = commands.add_parser("labeled", help="a labeled set (manifest.csv, images/, masks/)")
    labeled.add_argument("--n-scenes", type=int, default=100)
    labeled.add_argument(
        "--sites", nargs="+", choices=sorted(SITES), default=None, help="default: LABELED_SITES"
    )
    labeled.add_argument(
        "--merge",
        action="store_true",
        help="add the scenes to the labeled set already in --out (same scene ids are replaced); "
        "without it an existing set is refused",
    )
    labeled.add_argument(
        "--library", type=Path, default=None,
        help="spectral library of real clear-sky pixels (python -m cloudseg.data.realdata library)",
    )  # fmt: skip
    labeled.add_argument(
        "--gsd", type=int, nargs="+", choices=SUPPORTED_GSD_M, default=[BASE_GSD_M],
        help="ground sampling distances (m) the scenes cycle over (default: 10)",
    )  # fmt: skip
    labeled.add_argument(
        "--ignore-cirrus-only", action="store_true",
        help="label ignore (255) what is not clear only because of cirrus (for models without B10)",
    )  # fmt: skip

    stack = commands.add_parser("stack", help="a time series over one site, with its truth")
    stack.add_argument("--n-dates", type=int, default=100)

    tiles = commands.add_parser("tiles", help="one stack on two overlapping neighbouring tiles")
    tiles.add_argument("--n-dates", type=int, default=100)
    tiles.add_argument("--overlap", type=int, default=128, help="shared columns, in pixels")

    for command in (stack, tiles):
        command.add_argument("--site", choices=sorted(SITES), default=STACK_SITE)
        command.add_argument("--start", default=STACK_DATE_RANGE[0], help="first date (ISO)")
        command.add_argument("--end", default=STACK_DATE_RANGE[1], help="last date (ISO)")
    for command in (labeled, stack, tiles):
        command.add_argument("--out", type=Path, required=True, help="output folder")
        command.add_argument("--size", type=int, default=512, help="scene width/height in px")
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--no-progress", action="store_true", help="hide progress bars")
    commands.add_parser("sites", help="list the simulated sites")
    return parser


def _refuse_existing_set(out: Path) -> None:
    """Stop when ``out`` already holds a labeled set: writing would merge into it."""
    manifest = out / MANIFEST_NAME
    if manifest.exists():
        scenes = len(read_manifest(out, check_files=False))
        raise SystemExit(
            f"cloudfree-simulate labeled: --out {out} already holds a labeled set ({manifest}, "
            f"{scenes} scenes); the new scenes would be merged into it. Choose a new --out, "
            "delete the folder first, or pass --merge to add to it."
        )


def _folder_summary(folder: Path) -> str:
    files = [path for path in folder.rglob("*") if path.is_file()]
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    return f"{len(files)} files, {size_mb:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "sites":
        for site in SITES.values():
            print(f"{site.site_id}  tile {site.tile_id}  EPSG:{site.epsg}  {site.description}")
        return 0
    progress = not args.no_progress
    started = time.perf_counter()
    if args.command == "labeled" and not args.merge:
        _refuse_existing_set(args.out)
    try:
        if args.command == "labeled":
            library = None if args.library is None else SpectralLibrary.load(args.library)
            written = write_labeled_set(
                args.out, args.n_scenes, args.size, args.seed, sites=args.sites, library=library,
                gsds=tuple(args.gsd), ignore_cirrus_only=args.ignore_cirrus_only,
                progress=progress,
            )  # fmt: skip
        elif args.command == "stack":
            written = write_stack(
                args.out, args.n_dates, args.size, args.seed, site=args.site, start=args.start,
                end=args.end, progress=progress,
            )  # fmt: skip
        else:
            written = write_overlapping_tiles(
                args.out, args.n_dates, args.size, args.overlap, args.seed, site=args.site,
                start=args.start, end=args.end, progress=progress,
            )  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"cloudfree-simulate {args.command}: {err}") from err
    elapsed = time.perf_counter() - started
    print(f"Wrote {written} ({_folder_summary(args.out)} in {args.out}) in {elapsed:.1f} s.")
    return 0
