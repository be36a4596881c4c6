"""ukis-csmask as a pure function: band sets, its traps, windowed runs, a real scene."""

from __future__ import annotations

import numpy as np
import pytest

from cloudseg.detectors import ukis
from cloudseg.detectors.windows import run_windowed, window_tiles
from cloudseg.labels import CLEAR, CLOUD_SHADOW, THICK_CLOUD


def test_band_sets_follow_what_the_scene_has():
    assert ukis.band_names_for(["B02", "B03", "B04", "B08", "B11", "B12"]) == ukis.UKIS_6_BAND_NAMES
    assert ukis.band_names_for(["B02", "B03", "B04", "B08", "B11"]) == ukis.UKIS_4_BAND_NAMES
    assert ukis.band_names_for(["B02", "B03", "B04", "B8A"]) is None
    assert ukis.missing_bands(["B02", "B03", "B04", "B8A"]) == ["B08"]
    assert ukis.UKIS_BANDS["nir"] == "B08"


def test_bad_product_level_and_band_order_are_named():
    image = np.zeros((8, 8, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="product_level='toa'"):
        ukis.classify(image, ukis.UKIS_4_BAND_NAMES, "toa")
    with pytest.raises(ValueError, match="band_order"):
        ukis.classify(image, ["blue", "green", "red", "swir16"], "l1c")


def test_classify_keeps_nodata_out_of_the_network():
    """NaN pixels: no prediction, and the rest still a real answer: with ukis-csmask's own
    invalid_buffer=0 or a nodata_value other than 0 the whole image would come back invalid."""
    image = np.full((64, 64, 4), [0.05, 0.07, 0.05, 0.3], dtype=np.float32)
    image[0:4] = np.nan
    classes = ukis.classify(image, ukis.UKIS_4_BAND_NAMES, "l2a")
    assert classes.dtype == np.uint8 and classes.shape == (64, 64)
    assert (classes[0:4] == ukis.CLASS_NODATA).all()
    assert set(np.unique(classes[4:])) <= {CLEAR, THICK_CLOUD, CLOUD_SHADOW}
    assert (classes[4:] == CLEAR).mean() > 0.9
    all_nodata = np.full((8, 8, 4), np.nan, dtype=np.float32)
    assert (ukis.classify(all_nodata, ukis.UKIS_4_BAND_NAMES, "l1c") == ukis.CLASS_NODATA).all()


def test_real_cumulus_agree_with_s2cloudless(realdata):
    """Betsiboka (real L1C, cumulus fields): ukis-csmask's cloud against s2cloudless's own mask."""
    import rasterio
    from rasterio.windows import Window

    from cloudseg.sentinel2 import open_scene

    folder = realdata / "l1c-betsiboka-s2cloudless"
    window = Window(0, 0, 256, 256)
    bands = [ukis.UKIS_BANDS[name] for name in ukis.UKIS_6_BAND_NAMES]
    with open_scene(folder / "image.tif") as scene:
        reflectance = scene.read_reflectance(bands, window=window)
    with rasterio.open(folder / "s2cloudless_mask.tif") as dataset:
        s2cloudless = dataset.read(1, window=window) > 0
    classes = ukis.classify(np.moveaxis(reflectance, 0, -1), ukis.UKIS_6_BAND_NAMES, "l1c")
    cloud = classes == THICK_CLOUD
    assert (cloud & s2cloudless).sum() / (cloud | s2cloudless).sum() > 0.8  # measured 0.91


def test_windowed_runs_cover_the_image_once():
    shape = (70, 45)
    tiles = list(window_tiles(shape, 32, 5))
    covered = np.zeros(shape, dtype=int)
    for tile in tiles:
        covered[tile.outer] += 1
    assert (covered == 1).all()
    image = np.random.default_rng(1).random((1, *shape)).astype(np.float32)

    def read(window):
        return image[:, window.row_off : window.row_off + window.height,
                     window.col_off : window.col_off + window.width]  # fmt: skip

    def threshold(block):
        return (block[0] > 0.5).astype(np.uint8)

    windowed = run_windowed(read, shape, threshold, window=32, margin=5, fill=255)
    assert np.array_equal(windowed, threshold(image))


def test_a_real_clear_scene_is_mostly_clear(realdata):
    from cloudseg.sentinel2 import open_scene
    from cloudseg.sentinel2.grid import processing_grid

    with open_scene(realdata / "l1c-T31TDH-20150726") as scene:
        grid = processing_grid(scene.grid(), 30)
        bands = [ukis.UKIS_BANDS[name] for name in ukis.UKIS_6_BAND_NAMES]
        reflectance = scene.read_reflectance(bands, grid=grid)
    classes = ukis.classify(np.moveaxis(reflectance, 0, -1), ukis.UKIS_6_BAND_NAMES, "l1c")
    assert grid.shape == (100, 100)
    assert (classes == CLEAR).mean() > 0.9
