"""Real-scene evaluation plumbing on tiny scenes the test writes, with stand-in producers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine

from cloudseg.inference.real_scenes import discover_scenes, evaluate_real_scenes
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid

GRID = Grid("EPSG:32633", Affine(10, 0, 500000, 0, -10, 4000000), 16, 16)


class Stub:
    """A producer answering from the blue band: cloud above ``cloud``, shadow below ``dark``."""

    def __init__(self, name, required, cloud=0.3, dark=0.03, emits=None, fail_on=None):
        self.name, self.required, self.cloud, self.dark = name, tuple(required), cloud, dark
        self.emits = emits or ("clear", "thick_cloud", "thin_cloud", "cloud_shadow")
        self.fail_on = fail_on

    def missing(self, bands):
        return [band for band in self.required if band not in bands]

    def predict(self, scene):
        if self.fail_on and self.fail_on in scene.source:
            raise RuntimeError("stub broke here")
        blue = scene.read_reflectance(["B02"])[0]
        classes = np.full(blue.shape, CLEAR, dtype=np.uint8)
        classes[blue > self.cloud] = THICK_CLOUD
        if "cloud_shadow" in self.emits:
            classes[blue < self.dark] = CLOUD_SHADOW
        return classes


def write_scene(path, bands, blue):
    data = np.full((len(bands), *GRID.shape), 800, dtype=np.uint16)
    data[list(bands).index("B02")] = blue
    write_cog(path, data, GRID, nodata=0, band_names=list(bands))


@pytest.fixture
def scenes(tmp_path):
    root = tmp_path / "scenes"
    root.mkdir()
    blue = np.full(GRID.shape, 800, dtype=np.uint16)
    blue[:8] = 5000  # cloud on top
    blue[12:, :4] = 200  # a shadow
    write_scene(root / "full.tif", L1C_BANDS, blue)
    (root / "chips" / "a").mkdir(parents=True)
    for band in ("B02", "B03", "B04", "B08"):
        data = blue if band == "B02" else np.full(GRID.shape, 900, dtype=np.uint16)
        write_cog(root / "chips" / "a" / f"{band}.tif", data, GRID, nodata=0)
    write_cog(root / "not_a_scene.tif", np.zeros((2, *GRID.shape), np.uint16), GRID)
    return root


def test_discovery_finds_files_folders_and_says_what_is_not_a_scene(scenes, tmp_path):
    found, not_scenes = discover_scenes(scenes, tmp_path / "work")
    assert [scene.name for scene in found] == ["full", "chips/a"]
    assert list(not_scenes) == ["not_a_scene.tif"]
    assert "no description" in not_scenes["not_a_scene.tif"]


def test_skipped_and_failing_producers_do_not_lose_the_others(scenes, tmp_path):
    producers = {
        "model": Stub("model", ["B02", "B03"], cloud=0.45),
        "ukis": Stub("ukis", ["B02", "B03", "B04", "B08"]),
        "s2cloudless": Stub("s2cloudless", ["B01", "B02", "B10"], emits=("clear", "thick_cloud")),
        "scl": Stub("scl", ["SCL"]),
        "broken": Stub("broken", ["B02"], fail_on="full"),
    }
    messages = []
    report = evaluate_real_scenes(scenes, producers, tmp_path / "out", log=messages.append)
    by_name = {scene["name"]: scene for scene in report["scenes"]}
    chip = by_name["chips/a"]
    assert chip["skipped"]["s2cloudless"] == "lacks B01, B10"
    assert any("skip s2cloudless on chips/a: it lacks B01, B10" in m for m in messages)
    assert chip["detectors_run"] == ["ukis"]
    full = by_name["full"]
    assert full["failed"] == {"broken": "RuntimeError: stub broke here"}
    assert full["detectors_run"] == ["ukis", "s2cloudless"]
    assert "broken" in chip["producers"]  # it ran where it did not fail
    # ukis and s2cloudless agree on the cloud rows: the model (cloud at 0.45) too
    cloud = full["producers"]["model"]["views"]["cloud"]
    assert cloud["iou"] == 1.0 and cloud["scored_pixels"] == GRID.height * GRID.width
    # ukis is scored against s2cloudless only; on the chip nobody else judges it
    assert full["producers"]["ukis"]["reference_from"]["cloud"] == ["s2cloudless"]
    assert chip["producers"]["ukis"]["views"]["cloud"]["scored_pixels"] == 0
    assert full["producers"]["ukis"]["reference_from"]["shadow"] == []
    assert full["cloudy"] and full["coverage"]["cloud"]["cloud_pixels_share"] == 0.5
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["overall"]["model"]["views"]["cloud"]["iou"] == 1.0
    assert (tmp_path / "out" / "overlays" / "chips__a.png").stat().st_size > 1000
    text = (tmp_path / "out" / "metrics.md").read_text()
    assert "s2cloudless skipped: it lacks B01, B10." in text
    assert "broken failed: RuntimeError: stub broke here" in text


def test_detectors_must_be_producers(scenes, tmp_path):
    with pytest.raises(ValueError, match=r"Detectors \['scl'\] are not among the producers"):
        evaluate_real_scenes(
            scenes, {"ukis": Stub("ukis", ["B02"])}, tmp_path, detectors=("ukis", "scl")
        )


def test_the_record_script_writes_its_readme(scenes, tmp_path, load_experiment):
    """experiments/real_masks.py on the tiny scenes (no checkpoint): tables, overlays, README."""
    record = load_experiment("real_masks")
    out = tmp_path / "record"
    assert record.main(["--realdata", str(scenes), "--out", str(out)]) == 0
    readme = (out / "README.md").read_text()
    assert "experiments/real_masks.py --realdata" in readme and "CPU cores" in readme
    report = json.loads((out / "metrics.json").read_text())
    assert report["producers"] == ["ukis", "s2cloudless", "scl", "threshold"]
    assert (out / "metrics.md").is_file() and (out / "overlays" / "full.png").is_file()
