"""The mask-producer registry, and the producers on textbook spectra and real Sentinel-2 samples."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
from affine import Affine

from cloudseg.inference.producers import build_producer, lacking_bands, producer_names
from cloudseg.inference.producers.s2cloudless import S2CloudlessProducer
from cloudseg.inference.producers.scl import SCLProducer
from cloudseg.inference.producers.threshold import SpectralThresholdProducer
from cloudseg.inference.spec import CLASS_NODATA, InferenceSpec, MaskRule
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.grid import Grid
from cloudseg.sentinel2.reader import open_scene

#: TOA reflectance (B02, B03, B8A, B10, B11) from SENTINEL2.md's table -> expected class.
TEXTBOOK = {
    "dense vegetation": ((0.07, 0.07, 0.30, 0.005, 0.17), CLEAR),
    "bare soil": ((0.10, 0.12, 0.24, 0.005, 0.32), CLEAR),
    "bright desert sand": ((0.18, 0.24, 0.42, 0.01, 0.55), CLEAR),
    "water": ((0.08, 0.06, 0.02, 0.002, 0.01), CLEAR),
    "snow (high, bright at 1.375 um)": ((0.85, 0.85, 0.75, 0.05, 0.10), CLEAR),
    "urban": ((0.12, 0.13, 0.20, 0.005, 0.25), CLEAR),
    "low thick cloud": ((0.70, 0.70, 0.65, 0.03, 0.50), THICK_CLOUD),
    "high thick cloud": ((0.70, 0.70, 0.65, 0.20, 0.50), THICK_CLOUD),
    "cirrus over vegetation": ((0.12, 0.12, 0.35, 0.05, 0.19), THIN_CLOUD),
    "shadow on vegetation": ((0.042, 0.035, 0.105, 0.002, 0.06), CLOUD_SHADOW),
}


def test_threshold_rule_on_textbook_spectra():
    names = list(TEXTBOOK)
    values = np.array([TEXTBOOK[name][0] for name in names], dtype=np.float32).T
    reflectance = dict(zip(("B02", "B03", "B8A", "B10", "B11"), values[:, None, :], strict=True))
    classes = SpectralThresholdProducer().classify(reflectance)[0]
    assert dict(zip(names, classes.tolist(), strict=True)) == {
        name: expected for name, (_, expected) in TEXTBOOK.items()
    }
    without_cirrus_band = {k: v for k, v in reflectance.items() if k != "B10"}
    classes = SpectralThresholdProducer().classify(without_cirrus_band)[0]
    assert classes[names.index("cirrus over vegetation")] == CLEAR  # L2A: no B10, no cirrus test


@pytest.fixture
def eolearn_scene(realdata, write_scene):
    """``eolearn_scene(date)``: one of the five real L1C dates as a 13-band 10 m GeoTIFF."""
    folder = realdata / "eolearn-5dates"
    scenes = np.load(folder / "REFERENCE_SCENES.npy")
    ring = json.loads((folder / "bbox.geojson").read_text())["coordinates"][0]
    west, north = min(x for x, _ in ring), max(y for _, y in ring)
    grid = Grid("EPSG:32633", Affine(10, 0, west, 0, -10, north), *scenes.shape[1:3])

    def make(date: int):
        return write_scene(f"eolearn_{date}", np.moveaxis(scenes[date], -1, 0), L1C_BANDS, grid)

    return make


@pytest.mark.parametrize(("date", "cloudy"), [(0, True), (3, False)])
def test_s2cloudless_and_threshold_on_real_l1c_dates(eolearn_scene, date, cloudy):
    """Date 0 is overcast, date 3 clear (s2cloudless's mean probability 0.97 vs 0.02)."""
    with open_scene(eolearn_scene(date)) as scene:
        s2cloudless = S2CloudlessProducer().predict(scene)
        threshold = SpectralThresholdProducer().predict(scene)
    assert s2cloudless.shape == threshold.shape == (101, 100)
    assert set(np.unique(s2cloudless)) <= {CLEAR, THICK_CLOUD}
    cloud_fraction = np.isin(s2cloudless, [THICK_CLOUD]).mean()
    threshold_cloud = np.isin(threshold, [THICK_CLOUD, THIN_CLOUD]).mean()
    if cloudy:
        assert cloud_fraction > 0.9 and threshold_cloud > 0.9
    else:
        assert cloud_fraction < 0.1 and threshold_cloud < 0.1


def test_s2cloudless_keeps_nodata_and_runs_at_its_resolution(write_scene, realdata):
    scenes = np.load(realdata / "eolearn-5dates" / "REFERENCE_SCENES.npy")
    reflectance = np.moveaxis(scenes[0], -1, 0).copy()
    reflectance[:, :, :13] = np.nan
    with open_scene(write_scene("holes", reflectance, L1C_BANDS)) as scene:
        producer = S2CloudlessProducer()
        assert producer.processing_grid(scene).resolution == 160
        classes = producer.predict(scene)
    assert (classes[:, :13] == CLASS_NODATA).all()
    assert (classes[:, 13:] != CLASS_NODATA).all()


def test_scl_producer_maps_the_real_l2a_classes(realdata):
    with open_scene(realdata / "l2a-29RKH-20200219" / "item.json") as scene:
        producer = SCLProducer()
        assert producer.missing(scene.bands) == []
        classes = producer.predict(scene)
        scl = scene.read(["SCL"])[0]
    assert classes.shape == scl.shape == (1098, 1098)
    assert (classes == THIN_CLOUD).sum() == (scl == 10).sum() > 0
    assert (classes == THICK_CLOUD).sum() == np.isin(scl, [8, 9]).sum() > 0
    assert (classes[np.isin(scl, [2, 4, 5, 6, 7, 11])] == CLEAR).all()


def test_producers_say_what_a_scene_lacks(realdata):
    with open_scene(realdata / "l2a-29RKH-20200219" / "item.json") as l2a:
        assert S2CloudlessProducer().missing(l2a.bands) == ["B10"]
        assert SpectralThresholdProducer().missing(l2a.bands) == []
    with open_scene(realdata / "l1c-T31TDH-20150726") as l1c:
        assert SCLProducer().missing(l1c.bands) == ["SCL"]


def test_registry_names_one_producer_per_module_and_checks_options(tmp_path):
    assert {"model", "scl", "s2cloudless", "threshold", "none"} <= set(producer_names())
    for name in producer_names():
        if name not in ("model", "ocm"):  # those two need a checkpoint / weights
            assert build_producer(name).name == name
    with pytest.raises(ValueError, match="ocm mask producer needs weights"):
        build_producer("ocm")
    with pytest.raises(ValueError, match=r"Unknown mask producer 'fmask'; choose from \['model'"):
        build_producer("fmask")
    with pytest.raises(ValueError, match="needs a checkpoint: pass ckpt="):
        build_producer("model")
    with pytest.raises(FileNotFoundError, match="best.ckpt does not exist"):
        build_producer("model", checkpoint=str(tmp_path / "best.ckpt"))
    with pytest.raises(ValueError, match=r"no options \['resolution'\]; it has \[\]"):
        build_producer("scl", resolution=60)
    assert build_producer("s2cloudless", resolution=60).resolution == 60


def test_cache_keys_follow_the_options():
    assert build_producer("scl").cache_key() == "scl"
    assert build_producer("none").cache_key() == "none"
    default = build_producer("s2cloudless").cache_key()
    assert (
        default.startswith("s2cloudless-") and default == build_producer("s2cloudless").cache_key()
    )
    assert build_producer("s2cloudless", threshold=0.5).cache_key() != default


def test_model_cache_key_is_the_checkpoint_hash_and_what_changes_the_classes(tmp_path):
    checkpoint = tmp_path / "a.ckpt"
    checkpoint.write_bytes(b"not read for the key")
    key = build_producer("model", checkpoint=str(checkpoint)).cache_key
    plain = key()
    assert plain.split("-")[0] == hashlib.sha256(b"not read for the key").hexdigest()[:16]
    # device, batch size and AMP do not change the mask; the rule and the windows do
    assert (
        build_producer(
            "model", checkpoint=str(checkpoint), inference=InferenceSpec(device="cpu", batch_size=2)
        ).cache_key()
        == plain
    )
    stricter = InferenceSpec(rule=MaskRule(clear_threshold=0.9))
    assert (
        build_producer("model", checkpoint=str(checkpoint), inference=stricter).cache_key() != plain
    )
    # masks made before clear_threshold existed keep their key: it is hashed only when set
    assert plain.endswith("-6f1751af")


def test_lacking_bands_lists_the_scenes_a_producer_does_not_apply_to():
    scenes = [
        SimpleNamespace(scene_id="a", bands=("B02", "SCL")),
        SimpleNamespace(scene_id="b", bands=("B02",)),
    ]
    assert lacking_bands(build_producer("scl"), scenes) == {"b": ["SCL"]}
    assert lacking_bands(build_producer("none"), scenes) == {}
