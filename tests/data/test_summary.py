"""The dataset summary: class balance per split, band statistics, a picture of sample chips."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from PIL import Image

from cloudseg.data.manifest import read_manifest
from cloudseg.data.summary import class_table, main, summarize_dataset
from cloudseg.labels import CLASS_NAMES, IGNORE_INDEX
from helpers.cloudmask_factory import BANDS, build_dataset

SPLITS = {"a": "train", "b": "train", "c": "val", "d": "test"}


def test_class_counts_and_band_stats_match_the_masks(tmp_path):
    root = build_dataset(
        tmp_path / "ds",
        {"a": 2, "b": 1, "c": 1, "d": 1},
        size=24,
        splits=SPLITS,
        rejected=("a_20210102",),
    )
    summary = summarize_dataset(root)
    assert set(summary["splits"]) == {"train", "val", "test"}
    assert summary["bands"] == list(BANDS)
    frame = read_manifest(root)
    train = frame[(frame["split"] == "train") & (frame["curation"] == "accepted")]
    counts = np.zeros(256, dtype=np.int64)
    blue = []
    for path in train["mask_path"]:
        with rasterio.open(root / path) as src:
            counts += np.bincount(src.read(1).ravel(), minlength=256)
    for path in train["image_path"]:
        with rasterio.open(root / path) as src:
            dn = src.read(1).astype(float)
        blue.append(dn[dn > 0] / 1e4)
    split = summary["splits"]["train"]
    assert (split["scenes"], split["sites"]) == (2, 2)
    for code, name in enumerate(CLASS_NAMES):
        assert split["classes"][name]["pixels"] == counts[code]
    assert split["classes"]["ignore"]["pixels"] == counts[IGNORE_INDEX]
    labeled = counts[: len(CLASS_NAMES)].sum()
    assert abs(sum(split["classes"][n]["fraction_of_labeled"] for n in CLASS_NAMES) - 1) < 1e-9
    assert split["classes"]["thick_cloud"]["fraction_of_labeled"] == counts[1] / labeled
    np.testing.assert_allclose(
        split["bands"]["B02"]["mean"], np.concatenate(blue).mean(), rtol=1e-6
    )
    assert summary["not_accepted"] == [
        {"scene_id": "a_20210102", "curation": "rejected", "reason": "test rejection"}
    ]
    table = class_table(summary)
    assert list(table.index) == ["test", "train", "val"] and "ignore % of all" in table.columns


def test_command_writes_json_and_picture(tmp_path, capsys):
    root = build_dataset(tmp_path / "ds", {"a": 1, "b": 1, "c": 1}, size=40)
    main([str(root), "--chips", "3", "--patch-size", "32"])
    out = root / "summary"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["splits"]) == {"unassigned"}  # no split stored yet
    with Image.open(out / "sample_chips.png") as picture:
        assert picture.size[0] > 300 and picture.size[1] > 300
    printed = capsys.readouterr().out
    assert "Class balance" in printed and "thick_cloud" in printed
