"""The ukis and ocm producers of the registry, and the importer label source built on them."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from cloudseg.data.importers.cli import main as import_main
from cloudseg.data.manifest import read_manifest
from cloudseg.inference.producers import build_producer
from cloudseg.labels import CLEAR, THICK_CLOUD
from cloudseg.sentinel2 import open_scene
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid

GRID = Grid("EPSG:32633", Affine(20, 0, 500000, 0, -20, 4000000), 48, 64)


def write_scene(path, bands, value=1000):
    data = np.full((len(bands), *GRID.shape), value, dtype=np.uint16)
    data[:, :, 32:] = 6000  # a bright right half
    return write_cog(path, data, GRID, nodata=0, band_names=list(bands))


def test_ukis_needs_the_four_band_minimum_and_a_known_level(tmp_path):
    producer = build_producer("ukis")
    assert producer.missing(["B02", "B03", "B04", "B8A", "B11"]) == ["B08"]
    assert producer.emits == ("clear", "thick_cloud", "cloud_shadow")
    assert build_producer("ukis", resolution=60).cache_key() != producer.cache_key()
    path = write_scene(tmp_path / "scene.tif", ["B02", "B03", "B04", "B08"])
    with open_scene(path) as scene, pytest.raises(ValueError, match="set the producer's product"):
        producer.predict(scene)
    with pytest.raises(ValueError, match="product_level='toa'"):
        build_producer("ukis", product_level="toa")


def test_ukis_on_a_real_scene_runs_at_30_m_and_answers_on_the_scene_grid(realdata):
    with open_scene(realdata / "l1c-T31TDH-20150726") as scene:
        classes = build_producer("ukis").predict(scene)
        assert classes.shape == scene.grid().shape == (300, 300)
    assert (classes == CLEAR).mean() > 0.9


def test_ocm_runs_a_given_model_and_names_its_option_without_one(tmp_path, ocm_tiny_weights):
    with pytest.raises(ValueError, match="masks.producer_options.ocm.weights"):
        build_producer("ocm")
    producer = build_producer("ocm", weights=str(ocm_tiny_weights))
    assert producer.missing(["B02", "B03", "B04", "B08"]) == ["B8A"]
    path = write_scene(tmp_path / "scene.tif", ["B03", "B04", "B8A"])
    with open_scene(path) as scene:
        classes = producer.predict(scene)  # 20 m pixels: run at their own size
    assert classes.shape == GRID.shape
    assert (classes[:, 34:] == THICK_CLOUD).all() and (classes[:, :30] == CLEAR).all()


def test_importers_take_detector_labels(realdata, tmp_path, ocm_tiny_weights):
    out = tmp_path / "dataset"
    chip = realdata / "l2a-cloudcover-chips" / "adwp"
    import_main(["ukis", str(chip), "--out", str(out), "--site", "chifunfu"])
    scene = str(write_scene(tmp_path / "T33UVP_20210601_scene.tif", ["B03", "B04", "B8A"]))
    import_main(["ocm", scene, "--ocm-weights", str(ocm_tiny_weights), "--out", str(out)])
    manifest = read_manifest(out).set_index("scene_id")
    assert manifest.loc["adwp", "label_source"] == "ukis"
    assert manifest.loc["adwp", "curation"] == "pending"
    assert manifest.loc["33UVP_20210601", "label_source"] == "ocm"  # <tile>_<date> from the name
    with rasterio.open(out / manifest.loc["adwp", "mask_path"]) as dataset:
        mask = dataset.read(1)
        assert dataset.shape == (256, 256)  # the chip at 20 m, the default import resolution
    assert set(np.unique(mask)) <= {0, 1, 3, 255} and (mask == THICK_CLOUD).mean() > 0.2
    with pytest.raises(SystemExit):
        import_main(["ocm", scene, "--out", str(out)])  # --ocm-weights is required
