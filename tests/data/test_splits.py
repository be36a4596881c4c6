"""Spatial splits: whole sites per split, deterministic from the seed, stored, overridable."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudseg.data.manifest import read_manifest
from cloudseg.data.splits import assign_splits, main, split_table
from helpers.cloudmask_factory import build_dataset


def _frame(scenes_per_site: dict[str, int], rejected: tuple[str, ...] = ()) -> pd.DataFrame:
    rows = []
    for site, count in scenes_per_site.items():
        for day in range(count):
            scene_id = f"{site}_{day}"
            rows.append(
                {
                    "scene_id": scene_id,
                    "site": site,
                    "curation": "rejected" if scene_id in rejected else "accepted",
                    "split": "",
                }
            )
    return pd.DataFrame(rows)


def _sites_by_split(frame: pd.DataFrame) -> dict[str, set[str]]:
    accepted = frame[frame["curation"] == "accepted"]
    return {split: set(group["site"]) for split, group in accepted.groupby("split")}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=25),
    seed=st.integers(0, 2**16),
)
def test_every_accepted_scene_gets_one_split_and_no_site_is_shared(sizes, seed):
    frame = assign_splits(_frame({f"s{i}": n for i, n in enumerate(sizes)}), seed=seed)
    assert set(frame["split"]) <= {"train", "val", "test"}
    assert (frame.groupby("site")["split"].nunique() == 1).all()
    if len(sizes) >= 3:  # enough sites: every split gets at least one
        assert set(frame["split"]) == {"train", "val", "test"}


def test_deterministic_from_the_seed_and_roughly_proportional():
    frame = _frame({f"site{i:02d}": 1 + i % 4 for i in range(40)})
    first = assign_splits(frame, seed=3)
    assert first["split"].tolist() == assign_splits(frame, seed=3)["split"].tolist()
    assert first["split"].tolist() != assign_splits(frame, seed=4)["split"].tolist()
    shares = first["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.06)
    assert shares["val"] == pytest.approx(0.15, abs=0.06)
    assert shares["test"] == pytest.approx(0.15, abs=0.06)


def test_existing_splits_and_overrides_are_kept():
    frame = _frame({"a": 2, "b": 2, "c": 2, "d": 2, "e": 2})
    frame.loc[frame["site"] == "a", "split"] = "test"
    out = assign_splits(frame, seed=0, overrides={"b": "val"})
    sites = _sites_by_split(out)
    assert "a" in sites["test"] and "b" in sites["val"]
    reassigned = assign_splits(frame, seed=0, reassign=True)
    assert (reassigned.groupby("site")["split"].nunique() == 1).all()


def test_rejected_scenes_get_no_split():
    frame = assign_splits(_frame({"a": 2, "b": 1, "c": 1}, rejected=("a_1",)), seed=0)
    assert frame.loc[frame["scene_id"] == "a_1", "split"].item() == ""


def test_a_site_already_split_across_is_an_error_naming_it():
    frame = _frame({"a": 2, "b": 1})
    frame.loc[frame["scene_id"] == "a_0", "split"] = "train"
    frame.loc[frame["scene_id"] == "a_1", "split"] = "val"
    with pytest.raises(ValueError, match=r"site 'a' has scenes in splits \['train', 'val'\]"):
        assign_splits(frame)


def test_bad_override_and_fractions_are_errors():
    frame = _frame({"a": 1, "b": 1})
    with pytest.raises(ValueError, match="'nowhere'"):
        assign_splits(frame, overrides={"nowhere": "val"})
    with pytest.raises(ValueError, match="'holdout'"):
        assign_splits(frame, overrides={"a": "holdout"})
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(frame, fractions=(1.0, -0.5, 0.5))


def test_cli_stores_splits_in_the_manifest(tmp_path, capsys):
    root = build_dataset(tmp_path / "ds", {"a": 2, "b": 1, "c": 1, "d": 1}, size=16)
    main([str(root), "--seed", "1", "--set", "a=test"])
    frame = read_manifest(root)
    assert set(frame.loc[frame["site"] == "a", "split"]) == {"test"}
    assert (frame["split"] != "").all()
    printed = capsys.readouterr().out
    assert "train" in printed and "scenes" in printed
    assert split_table(frame)["scenes"].sum() == 5


def test_fractions_that_do_not_sum_to_one_are_normalised_with_a_warning(tmp_path, caplog):
    """Issue 19.8: `--fractions 0.5 0.5 0.5` becomes thirds, and says so."""
    root = build_dataset(tmp_path / "ds", {"a": 1, "b": 1, "c": 1}, size=16)
    main([str(root), "--fractions", "0.5", "0.5", "0.5"])
    assert (
        "Split fractions [0.5, 0.5, 0.5] sum to 1.5, not 1: using them as relative shares, "
        "train/val/test = 0.333 / 0.333 / 0.333" in caplog.text
    )
    caplog.clear()
    main([str(root), "--fractions", "0.33", "0.33", "0.33", "--reassign"])  # thirds, rounded
    main([str(root), "--fractions", "0.6", "0.2", "0.2", "--reassign"])
    assert "Split fractions" not in caplog.text
