"""``cloudfree-dataset-summary``: what a dataset holds, per split.

Class balance (pixels per class and ignore), per-band reflectance statistics (mean and std over
all valid pixels; 2nd and 98th percentiles from up to 20 000 sampled pixels per scene) and a picture of sample chips with their masks. Writes ``summary.json`` and
``sample_chips.png`` (default into ``<root>/summary/``) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from tqdm import tqdm

from cloudseg.data.dataset import SceneReader, SceneRecord, scene_records
from cloudseg.data.manifest import read_manifest
from cloudseg.data.normalization import BandStatistics
from cloudseg.labels import CLASS_COLORS, CLASS_NAMES, IGNORE_INDEX
from cloudseg.sentinel2.bands import L1C_BANDS, RGB_BANDS, resolve_bands
from cloudseg.sentinel2.cog import atomic_path
from cloudseg.sentinel2.radiometry import dn_to_reflectance

UNASSIGNED = "unassigned"
PERCENTILE_SAMPLES_PER_SCENE = 20_000


def common_bands(frame: pd.DataFrame) -> tuple[str, ...]:
    """Bands every scene of ``frame`` has, in canonical order."""
    shared = set.intersection(*(set(b.split()) for b in frame["bands"]))
    return tuple(b for b in L1C_BANDS if b in shared)


def _split_groups(accepted: pd.DataFrame) -> dict[str, pd.DataFrame]:
    names = accepted["split"].replace("", UNASSIGNED)
    return {split: accepted[names == split] for split in sorted(set(names))}


def summarize_split(
    reader: SceneReader, records: Sequence[SceneRecord], bands: Sequence[str], seed: int = 0
) -> dict:
    """Class pixel counts and band statistics over the scenes of one split."""
    counts = np.zeros(256, dtype=np.int64)
    stats = BandStatistics(bands)
    samples = []
    rng = np.random.default_rng(seed)
    for record in tqdm(records, desc="scenes", leave=False):
        dn, mask = reader.full_scene(record)
        counts += np.bincount(mask.ravel(), minlength=256)
        reflectance = dn_to_reflectance(dn, record.offset)
        stats.update(reflectance)
        flat = reflectance.reshape(len(bands), -1)
        picked = rng.choice(
            flat.shape[1], min(PERCENTILE_SAMPLES_PER_SCENE, flat.shape[1]), replace=False
        )
        samples.append(flat[:, picked])
    labeled = int(counts[: len(CLASS_NAMES)].sum())
    classes = {
        name: {
            "pixels": int(counts[code]),
            "fraction_of_labeled": (counts[code] / labeled) if labeled else 0.0,
        }
        for code, name in enumerate(CLASS_NAMES)
    }
    classes["ignore"] = {"pixels": int(counts[IGNORE_INDEX]), "fraction_of_labeled": None}
    moments = stats.result()
    sampled = np.concatenate(samples, axis=1)
    low, high = np.nanpercentile(sampled, [2, 98], axis=1)
    band_stats = {
        band: {
            "mean": moments["mean"][i],
            "std": moments["std"][i],
            "p02": float(low[i]),
            "p98": float(high[i]),
        }
        for i, band in enumerate(moments["bands"])
    }
    return {
        "scenes": len(records),
        "sites": len({r.site for r in records}),
        "classes": classes,
        "bands": band_stats,
    }


def summarize_dataset(root: str | os.PathLike, bands: Sequence[str] | None = None) -> dict:
    """The summary of a dataset: per split (``unassigned`` for accepted scenes with none yet)."""
    root = Path(root)
    frame = read_manifest(root)
    accepted = frame[frame["curation"] == "accepted"]
    if accepted.empty:
        raise ValueError(f"{root / 'manifest.csv'} has no accepted scenes to summarise.")
    bands = resolve_bands(bands) if bands is not None else common_bands(accepted)
    reader = SceneReader(cache=False)
    splits = {
        split: summarize_split(reader, scene_records(root, group, bands), bands)
        for split, group in _split_groups(accepted).items()
    }
    not_accepted = frame[frame["curation"] != "accepted"]
    return {
        "root": str(root),
        "bands": list(bands),
        "splits": splits,
        "not_accepted": [
            {"scene_id": r["scene_id"], "curation": r["curation"], "reason": r["curation_reason"]}
            for r in not_accepted.to_dict("records")
        ],
    }


def class_table(summary: dict) -> pd.DataFrame:
    """Rows: splits; columns: scenes, sites, % of labeled pixels per class, % ignore of all."""
    rows = {}
    for split, part in summary["splits"].items():
        classes = part["classes"]
        total = sum(c["pixels"] for c in classes.values())
        row = {"scenes": part["scenes"], "sites": part["sites"]}
        row |= {name: round(100 * classes[name]["fraction_of_labeled"], 2) for name in CLASS_NAMES}
        row["ignore % of all"] = (
            round(100 * classes["ignore"]["pixels"] / total, 2) if total else 0.0
        )
        rows[split] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def band_table(summary: dict, split: str) -> pd.DataFrame:
    return pd.DataFrame.from_dict(summary["splits"][split]["bands"], orient="index").round(4)


def _quicklook(reflectance: np.ndarray) -> np.ndarray:
    """(3 or 1, y, x) reflectance -> (y, x, 3) in 0-1, 2-98 % stretch, nodata black."""
    rgb = reflectance if reflectance.shape[0] == 3 else np.repeat(reflectance[:1], 3, axis=0)
    rgb = np.moveaxis(rgb, 0, -1)
    finite = rgb[np.isfinite(rgb)]
    low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    return np.nan_to_num(np.clip((rgb - low) / max(high - low, 1e-6), 0, 1), nan=0.0)


def _colour_mask(mask: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for code, colour in CLASS_COLORS.items():
        lut[code] = colour
    return lut[mask]


def plot_sample_chips(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chips: int = 8,
    patch_size: int = 256,
    seed: int = 0,
) -> Path:
    """A picture of ``chips`` random chips of accepted scenes: RGB above, mask below."""
    root = Path(root)
    frame = read_manifest(root)
    accepted = frame[frame["curation"] == "accepted"]
    available = set.intersection(*(set(b.split()) for b in accepted["bands"]))
    shown = RGB_BANDS if set(RGB_BANDS) <= available else common_bands(accepted)[:1]
    records = scene_records(root, accepted, shown)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(records), size=min(chips, len(records)), replace=False)
    reader = SceneReader(cache=False)
    figure = Figure(figsize=(2.4 * len(picked), 5.2))
    axes = figure.subplots(2, len(picked), squeeze=False)
    for column, index in enumerate(picked):
        record = records[index]
        row = int(rng.integers(0, max(record.height - patch_size, 0) + 1))
        col = int(rng.integers(0, max(record.width - patch_size, 0) + 1))
        dn, mask = reader.read(record, row, col, patch_size)
        axes[0, column].imshow(_quicklook(dn_to_reflectance(dn, record.offset)))
        axes[0, column].set_title(f"{record.scene_id}\n{record.split or UNASSIGNED}", fontsize=7)
        axes[1, column].imshow(_colour_mask(mask), interpolation="nearest")
        for axis in axes[:, column]:  # ticks off, frame kept: white thick cloud stays visible
            axis.set_xticks([])
            axis.set_yticks([])
    legend = [
        Patch(facecolor=np.asarray(CLASS_COLORS[code]) / 255, edgecolor="black", label=name)
        for code, name in [*enumerate(CLASS_NAMES), (IGNORE_INDEX, "ignore")]
    ]
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    figure.suptitle(f"{root.name}: sample chips ({'RGB' if shown == RGB_BANDS else shown[0]})")
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="cloudfree-dataset-summary",
        description="Class balance per split, band statistics and sample chips of a dataset.",
    )
    parser.add_argument("root", help="dataset folder")
    parser.add_argument("--bands", nargs="+", help="bands for statistics (default: all shared)")
    parser.add_argument("--out", help="output folder (default: ROOT/summary)")
    parser.add_argument("--chips", type=int, default=8, help="sample chips in the picture")
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.root) / "summary"
    summary = summarize_dataset(args.root, args.bands)
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    picture = plot_sample_chips(
        args.root,
        out / "sample_chips.png",
        chips=args.chips,
        patch_size=args.patch_size,
        seed=args.seed,
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("Class balance (% of labeled pixels):")
        print(class_table(summary).to_string())
        for split in summary["splits"]:
            print(f"\nBand reflectance, {split}:")
            print(band_table(summary, split).to_string())
    for row in summary["not_accepted"]:
        print(f"not used: {row['scene_id']} ({row['curation']}) {row['reason']}")
    print(f"\nWrote {out / 'summary.json'} and {picture}")


if __name__ == "__main__":
    main()
