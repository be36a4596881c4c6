"""Quicklook PNGs and the offline map page (rendered in headless Chromium when it is installed)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from cloudseg.sentinel2 import Grid
from cloudseg.sentinel2.cog import write_cog
from composite.quicklook import png_bytes, rgba_image, stretch_to_uint8, write_quicklooks
from composite.webmap import MapLayer, map_layers_from_cog, render_map_page, write_map_page


@pytest.fixture()
def composite_cog(tmp_path):
    """A 4-band reflectance composite (as DN) with a bright square, a dark half and a nodata corner."""
    height, width = 120, 160
    reflectance = np.full((4, height, width), 0.05, np.float32)
    reflectance[:, 20:60, 30:90] = 0.25
    reflectance[2, :, width // 2 :] = 0.15  # red stronger on the right half
    dn = np.rint(reflectance * 10000).astype(np.uint16)
    dn[:, :10, :10] = 0
    grid = Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 5000040), height, width)
    return write_cog(
        tmp_path / "composite.tif", dn, grid, nodata=0, band_names=["B02", "B03", "B04", "B08"]
    )


def test_stretch_is_fixed_and_clipped():
    values = np.array([-0.1, 0.0, 0.15, 0.3, 0.9, np.nan], np.float32)
    assert stretch_to_uint8(values).tolist() == [0, 0, 128, 255, 255, 0]


def test_rgba_marks_nodata_transparent():
    rgb = np.full((3, 2, 2), 0.1, np.float32)
    rgb[:, 0, 0] = np.nan
    rgba = rgba_image(rgb)
    assert rgba.shape == (2, 2, 4)
    assert rgba[0, 0, 3] == 0 and rgba[1, 1, 3] == 255


def test_quicklooks_show_the_composite(composite_cog, tmp_path):
    paths = write_quicklooks(composite_cog, tmp_path / "out", max_size=80)
    rgb = np.asarray(Image.open(paths["rgb"]))
    gray = np.asarray(Image.open(paths["gray"]))
    assert rgb.shape == (60, 80, 4) and gray.shape == (60, 80, 4)
    assert rgb[2, 2, 3] == 0, "nodata corner must be transparent"
    bright, dark = rgb[20, 30, :3].astype(int), rgb[50, 10, :3].astype(int)
    assert bright.min() > dark.max()
    assert rgb[50, 70, 0] > rgb[50, 10, 0], "red channel must follow B04"
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert not list((tmp_path / "out").glob("*.partial*"))


def test_quicklook_names_missing_band(tmp_path):
    grid = Grid("EPSG:32631", Affine(10, 0, 0, 0, -10, 0), 8, 8)
    path = write_cog(tmp_path / "nir.tif", np.ones((1, 8, 8), np.uint16), grid, band_names=["B08"])
    with pytest.raises(ValueError, match=r"no band B04.*\['B08'\]"):
        write_quicklooks(path, tmp_path)


def test_map_page_is_self_contained(composite_cog, tmp_path):
    layer, bounds = map_layers_from_cog(composite_cog, name="composite p25", visible=True)
    west, south, east, north = bounds
    with rasterio.open(composite_cog) as src:
        expected = Grid.from_dataset(src).bounds_in("EPSG:4326")
    assert np.allclose(bounds, expected, atol=2e-4)  # ~1.7°E 45.1°N, 1.6 x 1.2 km
    page = render_map_page([layer], bounds, title="test", info={"dates": 3})
    remote_loads = (
        r"<script[^>]*\ssrc=",
        r"<link[^>]*\shref=",
        r"url\(\s*['\"]?https?:",
        r"<img[^>]*\ssrc=.https?:",
    )  # Leaflet's own attribution link to its website is text, not a load
    for pattern in remote_loads:
        assert not re.search(pattern, page), f"page must not load remote assets ({pattern})"
    assert "url(images/" not in page, "Leaflet icons must be inlined"
    assert "data:image/png;base64," in page
    with pytest.raises(ValueError, match="west<east"):
        render_map_page([layer], (east, south, west, north), title="bad")


def test_map_page_renders_in_headless_chromium(composite_cog, chromium, tmp_path):
    composite_layer, bounds = map_layers_from_cog(composite_cog, name="composite", visible=True)
    gray = np.full((4, 4), 0.2, np.float32)
    baseline = MapLayer("baseline", png_bytes(rgba_image(gray)))
    page = write_map_page(tmp_path / "map.html", [composite_layer, baseline], bounds, title="demo")
    dom = chromium.dom(page)
    assert 'data-map-ready="true"' in dom, "the map script did not run"
    drawn = re.findall(r"<img[^>]*composite-layer", dom)
    assert len(drawn) == 1, "exactly the visible layer is drawn"
    assert "leaflet-control-layers" in dom and "leaflet-control-scale" in dom
    shot = chromium.screenshot(page, tmp_path / "shot.png")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    center = pixels[250:350, 350:450]
    assert center.std() > 5, "the composite picture should be visible in the middle of the page"
