"""`make demo-data`: the default training mix, prepared idempotently, with and without real
scenes; a band subset trains on it (scenes lacking a band left out)."""

from __future__ import annotations

import shutil

import pytest

from cloudseg.data.datamodule import CloudMaskDataModule
from cloudseg.data.manifest import read_manifest
from cloudseg.data.realdata import demo

#: every part switched on (the default recipe uses some), shrunk
SMALL = {"library": True, "gsds": (10, 30), "backgrounds": True, "curated": True,
         "n_scenes": 4, "size": 96, "renders": 1}  # fmt: skip


@pytest.fixture
def small_recipe(monkeypatch):
    monkeypatch.setattr(demo, "DEMO_RECIPE", SMALL)


def test_demo_data_is_idempotent_and_mixes_real_sources(realdata, small_recipe, tmp_path, capsys):
    curation = tmp_path / "curation.csv"
    curation.write_text("scene_id,decision,reason\neolearn-5dates-0,accept,overcast\n")
    mix = demo.prepare_demo_data(tmp_path / "demo", realdata / "eolearn-5dates", 0, curation)
    frame = read_manifest(mix.parent)
    sources = set(frame["label_source"])
    assert sources == {"simulated", "real_background", "consensus"}
    assert (tmp_path / "demo" / "library.npz").exists()
    first = capsys.readouterr().out
    assert "1/5" in first and "4/5" in first
    again = demo.prepare_demo_data(tmp_path / "demo", realdata / "eolearn-5dates", 0, curation)
    assert "1/5" not in capsys.readouterr().out  # finished steps are skipped
    assert read_manifest(again.parent).equals(frame)
    module = CloudMaskDataModule(mix.parent, ["B02", "B03", "B04", "B08", "B11", "B12"],
                                 patch_size=32, skip_scenes_without_bands=True)  # fmt: skip
    module.setup("fit")
    assert module.records["train"]


def test_demo_data_without_real_scenes_is_simulated_only(small_recipe, tmp_path, capsys):
    mix = demo.prepare_demo_data(tmp_path / "demo", tmp_path / "absent", 0)
    assert set(read_manifest(mix.parent)["label_source"]) == {"simulated"}
    assert "simulated only" in capsys.readouterr().out


def test_demo_data_rebuilds_a_step_whose_setting_changed(realdata, monkeypatch, tmp_path, capsys):
    """More renders per background (6 -> 24 in the real recipe) rebuild the backgrounds, never
    reuse the old ones; the unchanged simulated step is kept."""
    recipe = {**SMALL, "library": False, "curated": False}
    monkeypatch.setattr(demo, "DEMO_RECIPE", recipe)
    out = tmp_path / "demo"
    mix = demo.prepare_demo_data(out, realdata / "eolearn-5dates", 0)
    backgrounds = read_manifest(out / "backgrounds")
    assert (out / "backgrounds.recipe.json").exists()
    capsys.readouterr()
    monkeypatch.setattr(demo, "DEMO_RECIPE", {**recipe, "renders": 2})
    demo.prepare_demo_data(out, realdata / "eolearn-5dates", 0)
    printed = capsys.readouterr().out
    assert "backgrounds was built with" in printed and "building it again" in printed
    assert "2/5" not in printed  # the simulated scenes did not change
    again = read_manifest(out / "backgrounds")
    assert len(again) == 2 * len(backgrounds)
    assert set(read_manifest(mix.parent)["scene_id"]) >= set(again["scene_id"])


def test_default_renders_are_the_ablation_winner_in_the_recipe_and_the_command():
    from cloudseg.data.realdata.backgrounds import DEFAULT_RENDERS
    from cloudseg.data.realdata.cli import build_parser

    assert demo.DEMO_RECIPE["renders"] == DEFAULT_RENDERS == 24  # +backgrounds-r24
    args = build_parser().parse_args(["backgrounds", "--source", "s", "--out", "o"])
    assert args.renders == DEFAULT_RENDERS


def test_demo_data_keys_the_real_scenes_by_content(realdata, monkeypatch, tmp_path, capsys):
    """The same real scenes in another folder reuse the backgrounds; a changed file rebuilds
    them (a path would miss the change and rebuild on a mere move)."""
    monkeypatch.setattr(demo, "DEMO_RECIPE", {**SMALL, "library": False, "curated": False})
    first, second = tmp_path / "a" / "eolearn-5dates", tmp_path / "b" / "eolearn-5dates"
    shutil.copytree(realdata / "eolearn-5dates", first)
    out = tmp_path / "demo"
    demo.prepare_demo_data(out, first, 0)
    second.parent.mkdir()
    first.rename(second)
    capsys.readouterr()
    demo.prepare_demo_data(out, second, 0)
    assert "building it again" not in capsys.readouterr().out
    with (second / "timestamps.json").open("a") as file:
        file.write("\n")
    demo.prepare_demo_data(out, second, 0)
    assert "backgrounds was built with" in capsys.readouterr().out
