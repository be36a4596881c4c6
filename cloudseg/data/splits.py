"""Spatial train/val/test splits: whole sites (tiles, ROIs) go to one split, never across.

Neighbouring chips of one site share clouds, surfaces and dates, so a site split across train and
test leaks. Splits are assigned to the accepted scenes of a manifest, deterministically from a
seed, and stored in its ``split`` column; splits already there (or given as overrides) are kept
and only unassigned sites are placed. Command line: ``cloudfree-dataset-split ROOT``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cloudseg.data.manifest import read_manifest, write_manifest

log = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


def _accepted(frame: pd.DataFrame) -> pd.Series:
    return frame["curation"] == "accepted"


def check_sites_not_shared(frame: pd.DataFrame, where: str = "manifest") -> None:
    """Raise if any site has accepted scenes in two different splits, naming site and scenes."""
    assigned = frame[_accepted(frame) & (frame["split"] != "")]
    for site, group in assigned.groupby("site"):
        splits = sorted(set(group["split"]))
        if len(splits) > 1:
            examples = {s: group.loc[group["split"] == s, "scene_id"].tolist()[:3] for s in splits}
            raise ValueError(
                f"{where}: site {site!r} has scenes in splits {splits} ({examples}); a site must "
                f"lie in one split. Fix its rows or reassign with `cloudfree-dataset-split "
                f"--reassign`."
            )


def assign_splits(
    frame: pd.DataFrame,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overrides: Mapping[str, str] | None = None,
    reassign: bool = False,
) -> pd.DataFrame:
    """Return a copy of a manifest with ``split`` set for every accepted scene, by whole sites.

    Sites already assigned keep their split unless ``reassign``; ``overrides`` map site -> split.
    The remaining sites are shuffled with ``seed`` and placed, largest first, into the split
    furthest below its share (``fractions`` of train/val/test scenes); each split with a
    non-zero share first gets one site while sites remain. Scenes not accepted get no split.
    """
    if len(fractions) != len(SPLIT_NAMES) or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(
            f"fractions must be 3 non-negative numbers (train, val, test), got {fractions}."
        )
    shares = np.asarray(fractions, dtype=float) / float(sum(fractions))
    if abs(sum(fractions) - 1.0) > 0.015:  # 0.33 0.33 0.33 means thirds
        log.warning(
            "Split fractions %s sum to %g, not 1: using them as relative shares, train/val/test "
            "= %s. Pass fractions that sum to 1 (e.g. --fractions %s) to say so exactly.",
            list(fractions), float(sum(fractions)), " / ".join(f"{v:.3f}" for v in shares),
            " ".join(f"{v:.2f}" for v in shares),
        )  # fmt: skip
    frame = frame.copy()
    accepted = _accepted(frame)
    frame.loc[~accepted, "split"] = ""
    if reassign:
        frame.loc[accepted, "split"] = ""
    check_sites_not_shared(frame)

    site_of_split = {
        site: group["split"].iloc[0]
        for site, group in frame[accepted & (frame["split"] != "")].groupby("site")
    }
    sites = set(frame.loc[accepted, "site"])
    for site, split in (overrides or {}).items():
        if split not in SPLIT_NAMES:
            raise ValueError(f"Override for site {site!r}: split {split!r} not in {SPLIT_NAMES}.")
        if site not in sites:
            raise ValueError(f"Override names site {site!r}, which has no accepted scene.")
        site_of_split[site] = split

    scenes_per_site = frame[accepted].groupby("site").size()
    counts = dict.fromkeys(SPLIT_NAMES, 0)
    for site, split in site_of_split.items():
        counts[split] += int(scenes_per_site[site])

    rng = np.random.default_rng(seed)
    free = sorted(sites - set(site_of_split))
    free = [free[i] for i in rng.permutation(len(free))]
    free.sort(key=lambda site: -int(scenes_per_site[site]))  # stable: ties keep shuffled order
    for split, share in zip(SPLIT_NAMES[::-1], shares[::-1], strict=True):
        if share > 0 and counts[split] == 0 and free:
            site = free.pop()  # the smallest remaining site seeds an empty split
            site_of_split[site] = split
            counts[split] += int(scenes_per_site[site])
    total = int(scenes_per_site.sum()) if len(scenes_per_site) else 0
    for site in free:
        deficits = [
            share * total - counts[split] for split, share in zip(SPLIT_NAMES, shares, strict=True)
        ]
        split = SPLIT_NAMES[int(np.argmax(deficits))]
        site_of_split[site] = split
        counts[split] += int(scenes_per_site[site])

    frame.loc[accepted, "split"] = frame.loc[accepted, "site"].map(site_of_split)
    check_sites_not_shared(frame)
    return frame


def split_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Sites and scenes per split (accepted scenes), for printing."""
    accepted = frame[_accepted(frame)]
    rows = []
    for split in SPLIT_NAMES:
        part = accepted[accepted["split"] == split]
        rows.append({"split": split, "sites": part["site"].nunique(), "scenes": len(part)})
    return pd.DataFrame(rows).set_index("split")


def split_dataset(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    overrides: Mapping[str, str] | None = None,
    reassign: bool = False,
) -> pd.DataFrame:
    """Assign spatial splits in ``<root>/manifest.csv`` and write it back."""
    frame = read_manifest(root, check_files=False)
    frame = assign_splits(
        frame, seed=seed, fractions=fractions, overrides=overrides, reassign=reassign
    )
    write_manifest(frame, root)
    return frame


def _parse_override(text: str) -> tuple[str, str]:
    site, sep, split = text.rpartition("=")
    if not sep or not site:
        raise argparse.ArgumentTypeError(f"--set expects SITE=SPLIT, got {text!r}.")
    return site, split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cloudfree-dataset-split",
        description="Assign spatial train/val/test splits (whole sites) in a dataset's manifest.",
    )
    parser.add_argument("root", help="dataset folder (holds manifest.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=DEFAULT_FRACTIONS,
        metavar=("TRAIN", "VAL", "TEST"),
    )
    parser.add_argument(
        "--set", dest="overrides", type=_parse_override, action="append", default=[],
        metavar="SITE=SPLIT", help="put a site in a split (repeatable)",
    )  # fmt: skip
    parser.add_argument("--reassign", action="store_true", help="ignore splits already stored")
    args = parser.parse_args(argv)
    frame = split_dataset(
        args.root,
        seed=args.seed,
        fractions=args.fractions,
        overrides=dict(args.overrides),
        reassign=args.reassign,
    )
    print(split_table(frame).to_string())


if __name__ == "__main__":
    main()
