"""The scene reader on real Sentinel-2 samples (../shared/realdata) and on tiny files built here."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from cloudseg.sentinel2 import L1C_BANDS, L2A_BANDS, Grid, SceneError, open_scene
from cloudseg.sentinel2.cog import write_cog

L1C_FOLDER = "l1c-T31TDH-20150726"
L2A_FOLDER = "l2a-29RKH-20200219"
SCL_CODES = set(range(12))


@pytest.fixture(scope="module")
def l1c(realdata: Path):
    with open_scene(realdata / L1C_FOLDER) as scene:
        yield scene


@pytest.fixture(scope="module")
def l2a_stac(realdata: Path):
    with open_scene(realdata / L2A_FOLDER / "item.json") as scene:
        yield scene


def read_file(path: str) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def file_grid(path: str) -> Grid:
    with rasterio.open(path) as dataset:
        return Grid.from_dataset(dataset)


# --- L1C: per-band JP2 at 10/20/60 m ------------------------------------------------------------


def test_l1c_folder_has_13_bands_and_metadata_from_file_names(l1c) -> None:
    assert l1c.bands == L1C_BANDS
    assert l1c.layers["B8A"].path.endswith("T31TDH_20150726T105026_B8A.jp2")
    assert l1c.metadata["tile_id"] == "31TDH"
    assert l1c.metadata["datetime"] == dt.datetime(2015, 7, 26, 10, 50, 26, tzinfo=dt.UTC)
    assert l1c.metadata["date"] == dt.date(2015, 7, 26)
    assert l1c.offset == 0.0


def test_l1c_native_grid_is_the_10m_band_grid(l1c) -> None:
    grid = l1c.grid()
    assert grid == file_grid(l1c.layers["B02"].path)
    assert grid.crs.to_epsg() == 32631 and grid.shape == (300, 300) and grid.resolution == 10
    coarse = l1c.grid(60)
    assert coarse == file_grid(l1c.layers["B01"].path)
    assert coarse.transform == Affine(60, 0, 399960, 0, -60, 4693200)


def test_l1c_all_bands_on_the_10m_grid(l1c) -> None:
    dn = l1c.read(L1C_BANDS)
    assert dn.shape == (13, 300, 300) and dn.dtype == np.uint16
    assert dn.min() > 0, "the clip has no nodata, and resampling must not invent any"
    for name in ("B02", "B03", "B04", "B08"):
        np.testing.assert_array_equal(dn[L1C_BANDS.index(name)], read_file(l1c.layers[name].path))


def test_l1c_all_bands_on_the_60m_grid(l1c) -> None:
    dn = l1c.read(L1C_BANDS, grid=l1c.grid(60))
    assert dn.shape == (13, 50, 50)
    for name in ("B01", "B09", "B10"):
        np.testing.assert_array_equal(dn[L1C_BANDS.index(name)], read_file(l1c.layers[name].path))
    # a 10 m band brought to 60 m follows the 6x6 block means and stays within nearby values
    b04 = read_file(l1c.layers["B04"].path).astype(float)
    block_means = b04.reshape(50, 6, 50, 6).mean(axis=(1, 3))
    coarse = dn[L1C_BANDS.index("B04")].astype(float)
    assert np.corrcoef(coarse.ravel(), block_means.ravel())[0, 1] > 0.95
    lowest = ndimage.minimum_filter(b04, size=18)[3::6, 3::6]
    highest = ndimage.maximum_filter(b04, size=18)[3::6, 3::6]
    assert np.all((lowest <= coarse) & (coarse <= highest))


@pytest.mark.parametrize(("name", "factor"), [("B05", 2), ("B12", 2), ("B01", 6)])
def test_bilinear_upsampling_stays_between_neighbours(l1c, name: str, factor: int) -> None:
    """Each 10 m value lies within the range of the source pixel and its 8 neighbours, and is
    interpolated (not a copy of the containing pixel, as nearest neighbour would give)."""
    source = read_file(l1c.layers[name].path)
    upsampled = l1c.read([name])[0]
    lowest = np.kron(ndimage.minimum_filter(source, size=3), np.ones((factor, factor)))
    highest = np.kron(ndimage.maximum_filter(source, size=3), np.ones((factor, factor)))
    assert np.all((lowest <= upsampled) & (upsampled <= highest))
    nearest = np.kron(source, np.ones((factor, factor), dtype=source.dtype))
    assert np.mean(upsampled != nearest) > 0.5
    assert abs(float(upsampled.mean()) - float(source.mean())) < 0.01 * float(source.mean())


@pytest.mark.parametrize("resolution", [None, 20, 60])
def test_l1c_window_equals_the_region_of_a_full_read(l1c, resolution) -> None:
    grid = l1c.grid(resolution)
    bands = ["B02", "B05", "B01", "B8A"]
    full = l1c.read(bands, grid=grid)
    window = Window(col_off=7, row_off=3, width=grid.width // 2, height=grid.height // 3)
    part = l1c.read(bands, grid=grid, window=window)
    rows = slice(window.row_off, window.row_off + window.height)
    cols = slice(window.col_off, window.col_off + window.width)
    np.testing.assert_array_equal(part, full[:, rows, cols])


def test_reading_onto_a_grid_in_another_crs(l1c) -> None:
    """A 20 m grid in UTM zone 32 over the middle of the clip: reprojected, fully covered."""
    west, south, east, north = l1c.grid().bounds_in("EPSG:32632")
    centre_x, centre_y = (west + east) / 2, (south + north) / 2
    grid = Grid("EPSG:32632", Affine(20, 0, centre_x - 500, 0, -20, centre_y + 500), 50, 50)
    dn = l1c.read(["B04", "B11"], grid=grid)
    assert dn.shape == (2, 50, 50) and dn.min() > 0
    for index, name in enumerate(["B04", "B11"]):
        source = read_file(l1c.layers[name].path)
        assert source.min() <= dn[index].min() and dn[index].max() <= source.max()


# --- L2A: COGs at 100/200/600 m, via the STAC item and as a folder ------------------------------


def test_l2a_stac_item_bands_metadata_and_offset(l2a_stac) -> None:
    assert l2a_stac.bands == (*L2A_BANDS, "SCL", "AOT", "WVP")
    assert l2a_stac.layers["B8A"].path.endswith("B8A.tif")  # asset key "nir08"
    metadata = l2a_stac.metadata
    assert metadata["datetime"] == dt.datetime(2020, 2, 19, 11, 34, 25, 405000, tzinfo=dt.UTC)
    assert metadata["tile_id"] == "29RKH"
    assert metadata["processing_baseline"] == "02.14"
    assert metadata["sun_azimuth"] == pytest.approx(147.671041914385)
    assert metadata["sun_elevation"] == pytest.approx(48.293248430895)
    assert l2a_stac.offset == 0.0
    assert l2a_stac.grid() == file_grid(l2a_stac.layers["B02"].path)
    assert l2a_stac.grid().shape == (1098, 1098)


def test_l2a_folder_reads_the_same_values_as_the_stac_item(realdata: Path, l2a_stac) -> None:
    bands = ["B02", "B8A", "B01", "SCL", "AOT"]
    with open_scene(realdata / L2A_FOLDER) as folder:
        assert folder.bands == l2a_stac.bands
        assert folder.grid() == l2a_stac.grid()
        for grid in (folder.grid(), folder.grid(60)):
            np.testing.assert_array_equal(
                folder.read(bands, grid=grid), l2a_stac.read(bands, grid=grid)
            )


def test_scl_is_read_with_nearest_neighbour(l2a_stac) -> None:
    native = l2a_stac.read(["SCL"], grid=l2a_stac.grid(200))[0]
    codes, counts = np.unique(native, return_counts=True)
    counts_by_code = dict(zip(codes.tolist(), counts.tolist(), strict=True))
    assert counts_by_code[5] == 289159 and counts_by_code[10] == 10434  # as the README lists
    assert 1500 < counts_by_code[8] + counts_by_code[9] < 2100
    upsampled = l2a_stac.read(["SCL"])[0]  # 100 m: each 200 m class pixel becomes 2x2
    up_codes, up_counts = np.unique(upsampled, return_counts=True)
    np.testing.assert_array_equal(up_codes, codes)
    np.testing.assert_array_equal(up_counts, 4 * counts)
    odd_grid = l2a_stac.read(["SCL"], grid=l2a_stac.grid(150))[0]  # non-integer ratio
    assert set(np.unique(odd_grid).tolist()) <= set(codes.tolist()) <= SCL_CODES


@pytest.mark.parametrize("resolution", [None, 60, 300])
def test_l2a_window_equals_the_region_of_a_full_read(l2a_stac, resolution) -> None:
    grid = l2a_stac.grid(resolution)
    bands = ["B02", "B8A", "B01", "SCL"]
    full = l2a_stac.read(bands, grid=grid)
    window = Window(col_off=grid.width // 3, row_off=grid.height // 5, width=97, height=61)
    part = l2a_stac.read(bands, grid=grid, window=window)
    rows = slice(window.row_off, window.row_off + 61)
    cols = slice(window.col_off, window.col_off + 97)
    np.testing.assert_array_equal(part, full[:, rows, cols])


def test_window_past_the_scene_edge_is_nodata_outside(l2a_stac) -> None:
    grid = l2a_stac.grid()
    window = Window(col_off=grid.width - 10, row_off=-5, width=30, height=20)
    part = l2a_stac.read(["B02", "B8A"], window=window)
    assert part.shape == (2, 20, 30)
    assert np.all(part[:, :5, :] == 0) and np.all(part[:, :, 10:] == 0)
    full = l2a_stac.read(["B02", "B8A"])
    np.testing.assert_array_equal(part[:, 5:, :10], full[:, :15, -10:])


def test_l2a_cross_check_with_odc_stac(realdata: Path, l2a_stac) -> None:
    odc_stac = pytest.importorskip("odc.stac")
    from odc.geo.geobox import GeoBox

    grid = l2a_stac.grid()
    item = pystac.Item.from_file(realdata / L2A_FOLDER / "item.json")
    loaded = odc_stac.load(
        [item],
        bands=["blue", "nir08", "scl"],
        geobox=GeoBox(grid.shape, grid.transform, grid.crs.to_string()),
        resampling={"*": "bilinear", "scl": "nearest"},
    )
    ours = l2a_stac.read(["B02", "B8A", "SCL"])
    np.testing.assert_array_equal(ours[0], loaded["blue"].values[0])
    np.testing.assert_array_equal(ours[2], loaded["scl"].values[0])
    difference = np.abs(ours[1].astype(int) - loaded["nir08"].values[0].astype(int))
    assert difference.max() <= 1, "bilinear values differ at most by rounding"
    assert np.mean(difference == 0) > 0.95


def test_read_reflectance_on_the_l2a_item(l2a_stac) -> None:
    window = Window(0, 0, 64, 64)
    dn = l2a_stac.read(["B04", "B11"], window=window)
    reflectance = l2a_stac.read_reflectance(["B04", "B11"], window=window)
    assert reflectance.dtype == np.float32
    np.testing.assert_allclose(reflectance, dn / np.float32(10000), rtol=1e-6)
    with pytest.raises(SceneError, match=r"\['SCL'\] .* are not reflectance bands"):
        l2a_stac.read_reflectance(["B04", "SCL"], window=window)


def test_scene_pickles_without_open_files_and_reads_after(l2a_stac) -> None:
    window = Window(10, 10, 32, 32)
    expected = l2a_stac.read(["B02", "SCL"], window=window)
    clone = pickle.loads(pickle.dumps(l2a_stac))
    np.testing.assert_array_equal(clone.read(["B02", "SCL"], window=window), expected)
    clone.close()


# --- STAC items built here: Earth Search and Planetary Computer conventions ----------------------

REMOTE = "https://example.com/S2B_31TDH_20220301_0_L2A"


def stac_item(assets: dict[str, dict], **properties) -> pystac.Item:
    item = pystac.Item(
        id="S2B_31TDH_20220301_0_L2A",
        geometry=None,
        bbox=None,
        datetime=dt.datetime(2022, 3, 1, 10, 40, 11, tzinfo=dt.UTC),
        properties={"proj:epsg": 32631, **properties},
    )
    for key, fields in assets.items():
        fields = dict(fields)
        href, media_type = fields.pop("href"), fields.pop("type", None)
        item.add_asset(key, pystac.Asset(href, media_type=media_type, extra_fields=fields))
    return item


def earth_search_asset(file_name: str, band: str, scale: float = 0.0001, offset: float = -0.1):
    cog = pystac.MediaType.COG
    return {
        "href": f"{REMOTE}/{file_name}", "type": cog, "eo:bands": [{"name": band}],
        "proj:shape": [10980, 10980], "proj:transform": [10, 0, 399960, 0, -10, 4800000],
        "raster:bands": [{"nodata": 0, "scale": scale, "offset": offset}],
    }  # fmt: skip


def test_earth_search_style_item_with_remote_hrefs() -> None:
    """Keys such as ``blue``/``nir08``/``scl``, JP2 twins of the COGs, a 3-band visual asset and
    the offset in ``raster:bands``; remote hrefs pass through, and the declared ``proj:*`` grid
    means nothing is fetched to know the scene grid."""
    assets = {
        "blue": earth_search_asset("B02.tif", "blue"),
        "blue-jp2": {**earth_search_asset("B02.jp2", "blue"), "type": "image/jp2"},
        "nir08": {**earth_search_asset("B8A.tif", "nir08"), "proj:shape": [5490, 5490],
                  "proj:transform": [20, 0, 399960, 0, -20, 4800000]},
        "scl": {**earth_search_asset("SCL.tif", "scl"), "eo:bands": [], "raster:bands": [{}]},
        "visual": {"href": f"{REMOTE}/TCI.tif", "eo:bands": [{"name": "red"}, {"name": "green"}]},
        "thumbnail": {"href": f"{REMOTE}/thumbnail.jpg", "type": "image/jpeg"},
    }  # fmt: skip
    item = stac_item(
        assets,
        **{"s2:processing_baseline": "05.09", "grid:code": "MGRS-31TDH", "platform": "sentinel-2b"},
    )
    scene = open_scene(item)
    assert scene.bands == ("B02", "B8A", "SCL")
    assert scene.layers["B02"].path == f"{REMOTE}/B02.tif"  # the COG, not its JP2 twin
    assert scene.offset == -1000.0
    assert scene.metadata["tile_id"] == "31TDH" and scene.metadata["spacecraft"] == "sentinel-2b"
    assert scene.grid() == Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 4800000), 10980, 10980)
    item.properties["earthsearch:boa_offset_applied"] = True  # DN already harmonised
    assert open_scene(item).offset == 0.0


def test_planetary_computer_style_item_with_local_relative_hrefs(tmp_path) -> None:
    dn = small_dn(2)
    for index, name in enumerate(["B02", "B03"]):
        write_cog(tmp_path / f"{name}.tif", dn[index], SMALL_GRID, nodata=0)
    item = stac_item(
        {name: {"href": f"./{name}.tif", "eo:bands": [{"name": name}]} for name in ["B02", "B03"]},
        **{"s2:processing_baseline": "04.00", "s2:mgrs_tile": "31TDH"},
    )
    item.set_self_href(str(tmp_path / "item.json"))
    item.save_object()
    with open_scene(tmp_path / "item.json") as scene:
        assert scene.bands == ("B02", "B03")
        assert scene.layers["B03"].path == str(tmp_path / "B03.tif")
        assert scene.offset == -1000.0 and scene.metadata["tile_id"] == "31TDH"
        assert scene.grid() == SMALL_GRID  # no proj:* fields: read from the file
        np.testing.assert_array_equal(scene.read(["B03", "B02"]), dn[[1, 0]])


def test_stac_item_without_band_assets_is_refused() -> None:
    item = stac_item({"thumbnail": {"href": f"{REMOTE}/thumbnail.jpg"}})
    with pytest.raises(
        SceneError, match=r"has no Sentinel-2 band assets \(assets: \['thumbnail'\]"
    ):
        open_scene(item)


# --- multi-band GeoTIFF (write_cog) -------------------------------------------------------------

SMALL_GRID = Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 4693200), 48, 40)
SIMULATED_TAGS = {
    "SENSING_TIME": "2022-03-01T10:30:21Z",
    "PROCESSING_BASELINE": "04.00",
    "TILE_ID": "T31TDH",
    "SPACECRAFT": "Sentinel-2B",
    "SUN_AZIMUTH": "160.5",
    "SUN_ELEVATION": "38.25",
}


def small_dn(bands: int, seed: int = 0) -> np.ndarray:
    dn = np.random.default_rng(seed).integers(1, 6000, size=(bands, 48, 40), dtype=np.uint16)
    dn[:, :3, :3] = 0  # a nodata corner
    dn[:, 10, 10] = 500  # darker than the -1000 offset: negative reflectance
    return dn


def test_multiband_geotiff_names_bands_from_descriptions_and_metadata_from_tags(tmp_path) -> None:
    dn = small_dn(4)
    path = write_cog(
        tmp_path / "scene.tif", dn, SMALL_GRID, nodata=0,
        band_names=["B02", "B03", "B04", "B08"], tags=SIMULATED_TAGS,
    )  # fmt: skip
    with open_scene(path) as scene:
        assert scene.bands == ("B02", "B03", "B04", "B08")
        assert scene.grid() == SMALL_GRID
        assert scene.offset == -1000.0
        assert scene.metadata == {
            "datetime": dt.datetime(2022, 3, 1, 10, 30, 21, tzinfo=dt.UTC),
            "date": dt.date(2022, 3, 1),
            "tile_id": "31TDH",
            "processing_baseline": "04.00",
            "spacecraft": "Sentinel-2B",
            "sun_azimuth": 160.5,
            "sun_elevation": 38.25,
        }
        np.testing.assert_array_equal(scene.read(["B08", "B02"]), dn[[3, 0]])
        exact = scene.read_reflectance(["B02"], harmonize=False)[0]
        expected = (dn[0].astype(np.float32) - 1000) / 10000
        expected[dn[0] == 0] = np.nan
        np.testing.assert_allclose(exact, expected, rtol=1e-6)
        assert exact[10, 10] == pytest.approx(-0.05)
        harmonized = scene.read_reflectance(["B02"])[0]
        assert harmonized[10, 10] == pytest.approx(0.0001)  # clipped to DN 1, not negative
        assert np.isnan(harmonized[0, 0])
        bright = dn[0] > 1000
        np.testing.assert_allclose(harmonized[bright], expected[bright], rtol=1e-6)
    with open_scene(path, offset=0) as explicit:
        assert explicit.offset == 0.0
        assert explicit.read_reflectance(["B02"])[0][10, 10] == pytest.approx(0.05)


def test_geotiff_without_descriptions_needs_band_names(tmp_path) -> None:
    dn = small_dn(3)
    path = write_cog(tmp_path / "plain.tif", dn, SMALL_GRID, nodata=0)
    with pytest.raises(
        SceneError, match=r"plain.tif: bands \[1, 2, 3\] have no description.*band_names="
    ):
        open_scene(path)
    with open_scene(path, band_names=["b4", "b3", "b2"]) as scene:
        assert scene.bands == ("B02", "B03", "B04")
        np.testing.assert_array_equal(scene.read(["B04"])[0], dn[0])
        assert scene.offset == 0.0 and scene.metadata == {}
    with pytest.raises(SceneError, match=r"plain.tif has 3 bands but band_names lists 2"):
        open_scene(path, band_names=["B02", "B03"])
    with pytest.raises(
        SceneError, match=r"band_names for .*plain.tif: Unknown Sentinel-2 band 'B2X'"
    ):
        open_scene(path, band_names=["B02", "B03", "B2X"])


def test_float_geotiff_is_refused_when_read(tmp_path) -> None:
    path = write_cog(
        tmp_path / "refl.tif", np.ones((1, 48, 40), np.float32), SMALL_GRID, band_names=["B02"]
    )
    with (
        open_scene(path) as scene,
        pytest.raises(SceneError, match=r"refl.tif holds float32 .*uint16"),
    ):
        scene.read(["B02"])


# --- a SAFE built here --------------------------------------------------------------------------

TILE_METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">S2B_OPER_MSI_L2A_TL_2BPS_20220301T134517_A026036_T31TDH_N04.00</TILE_ID>
    <SENSING_TIME metadataLevel="Standard">2022-03-01T10:40:11.024Z</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Angles>
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">51.5</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">158.25</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
    </Tile_Angles>
  </n1:Geometric_Info>
</n1:Level-2A_Tile_ID>
"""


def product_metadata(level: str, baseline: str, offset: int | None) -> str:
    tag = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = "" if offset is None else "".join(
        f'<{tag} band_id="{band_id}">{offset}</{tag}>' for band_id in range(13)
    )  # fmt: skip
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level[1:]}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>2022-03-01T10:40:09.024Z</PRODUCT_START_TIME>
      <PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Datatake datatakeIdentifier="GS2B_20220301T104009_026036_N04.00">
        <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
      </Datatake>
    </Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
      <Offsets>{offsets}</Offsets>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-{level[1:]}_User_Product>
"""


def write_jp2(path: Path, data: np.ndarray, resolution: int) -> None:
    """A lossless JPEG2000 band file on the clip's grid at ``resolution`` m."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "JP2OpenJPEG", "width": data.shape[1], "height": data.shape[0], "count": 1,
        "dtype": data.dtype, "crs": "EPSG:32631",
        "transform": Affine(resolution, 0, 399960, 0, -resolution, 4693200),
        "QUALITY": 100, "REVERSIBLE": "YES",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data, 1)


def build_safe(root: Path, level: str = "L2A", baseline: str = "04.00", offset: int | None = -1000):
    """A tiny SAFE: B02 at 10 m (plus 20/60 m copies in L2A), B05 at 20 m, B01 at 60 m, SCL in L2A,
    product and tile metadata, and a QI_DATA mask whose name ends like a band (must be ignored)."""
    safe = root / f"S2B_MSI{level}_20220301T104009_N0400_R008_T31TDH_20220301T134517.SAFE"
    granule = safe / "GRANULE" / f"{level}_T31TDH_A026036_20220301T104011"
    prefix = "T31TDH_20220301T104009"
    rng = np.random.default_rng(1)
    bands = {
        "B02": (rng.integers(1000, 5000, (60, 60), dtype=np.uint16), 10),
        "B05": (rng.integers(1000, 5000, (30, 30), dtype=np.uint16), 20),
        "B01": (rng.integers(1000, 5000, (10, 10), dtype=np.uint16), 60),
    }
    if level == "L2A":
        bands["SCL"] = (rng.integers(0, 12, (30, 30), dtype=np.uint8), 20)
        for name, (data, resolution) in bands.items():
            write_jp2(
                granule / "IMG_DATA" / f"R{resolution}m" / f"{prefix}_{name}_{resolution}m.jp2",
                data,
                resolution,
            )
        decoy = np.full((30, 30), 9999, np.uint16)  # the 20 m copy of B02 must not be chosen
        write_jp2(granule / "IMG_DATA" / "R20m" / f"{prefix}_B02_20m.jp2", decoy, 20)
    else:
        for name, (data, resolution) in bands.items():
            write_jp2(granule / "IMG_DATA" / f"{prefix}_{name}.jp2", data, resolution)
    (granule / "QI_DATA").mkdir(parents=True)
    (granule / "QI_DATA" / "MSK_DETFOO_B02.jp2").write_bytes(b"not a raster")
    (safe / f"MTD_MSI{level}.xml").write_text(product_metadata(level, baseline, offset))
    (granule / "MTD_TL.xml").write_text(TILE_METADATA)
    return safe, granule, {name: data for name, (data, _) in bands.items()}


@pytest.mark.parametrize("level", ["L2A", "L1C"])
def test_safe_finds_band_files_metadata_and_offset(tmp_path, level: str) -> None:
    safe, granule, data = build_safe(tmp_path, level=level)
    with open_scene(safe) as scene:
        assert scene.bands == tuple(name for name in ("B01", "B02", "B05", "SCL") if name in data)
        assert scene.layers["B02"].path.endswith("_B02_10m.jp2" if level == "L2A" else "_B02.jp2")
        assert scene.offset == -1000.0
        assert scene.metadata["processing_baseline"] == "04.00"
        assert scene.metadata["tile_id"] == "31TDH"
        assert scene.metadata["datetime"] == dt.datetime(
            2022, 3, 1, 10, 40, 11, 24000, tzinfo=dt.UTC
        )
        assert scene.metadata["sun_elevation"] == pytest.approx(38.5)
        assert scene.metadata["sun_azimuth"] == pytest.approx(158.25)
        assert scene.metadata["spacecraft"] == "Sentinel-2B"
        assert scene.grid().shape == (60, 60) and scene.grid(60).shape == (10, 10)
        np.testing.assert_array_equal(scene.read(["B02"])[0], data["B02"])
        np.testing.assert_array_equal(scene.read(["B01"], grid=scene.grid(60))[0], data["B01"])
        reflectance = scene.read_reflectance(["B02", "B05"], harmonize=False)
        np.testing.assert_allclose(
            reflectance[0], (data["B02"].astype(np.float32) - 1000) / 10000, rtol=1e-6
        )
        if level == "L2A":
            scl = scene.read(["SCL"])[0]
            np.testing.assert_array_equal(scl, np.kron(data["SCL"], np.ones((2, 2), np.uint8)))
    with open_scene(
        granule
    ) as from_granule:  # a granule folder works and finds the SAFE's metadata
        assert from_granule.bands == scene.bands and from_granule.offset == -1000.0
        assert from_granule.metadata == scene.metadata


@pytest.mark.parametrize(("baseline", "expected"), [("04.00", -1000.0), ("02.14", 0.0)])
def test_safe_without_offset_values_uses_the_baseline(
    tmp_path, baseline: str, expected: float
) -> None:
    safe, _, _ = build_safe(tmp_path, baseline=baseline, offset=None)
    assert open_scene(safe).offset == expected
    assert open_scene(safe, offset=-500).offset == -500.0


# --- errors -------------------------------------------------------------------------------------


def test_unreadable_raster_errors_name_the_file(tmp_path, realdata: Path) -> None:
    garbage = tmp_path / "scene.tif"
    garbage.write_bytes(b"II*\x00 this is not a tiff" * 10)
    with pytest.raises(SceneError, match=r"Cannot open raster .*scene.tif"):
        open_scene(garbage)
    folder = tmp_path / "bands"
    folder.mkdir()
    source = realdata / L2A_FOLDER / "B02.tif"
    (folder / "B02.tif").write_bytes(source.read_bytes())
    (folder / "B03.tif").write_bytes(source.read_bytes()[:150_000])  # truncated download
    (folder / "B04.tif").write_bytes(b"garbage")
    with open_scene(folder) as scene:  # files open lazily: the good band reads
        grid = scene.layer_grid("B02")
        assert scene.read(["B02"], grid=grid).shape == (1, 1098, 1098)
        with pytest.raises(SceneError, match=r"Cannot read .*B03.tif \(band B03 of .*damaged"):
            scene.read(["B03"], grid=grid)
        with pytest.raises(SceneError, match=r"Cannot open .*B04.tif \(band B04 of"):
            scene.read(["B04"], grid=grid)


def test_missing_band_names_it_and_what_exists(l2a_stac) -> None:
    with pytest.raises(SceneError, match=r"item.json has no band B10; it has \['B01', .*'SCL'"):
        l2a_stac.read(["B02", "B10"])


def test_band_typo_lists_valid_names(l2a_stac) -> None:
    with pytest.raises(SceneError, match=r"Unknown Sentinel-2 band 'B2x'. Valid names: B01, B02"):
        l2a_stac.read(["B2x"])


def test_grid_outside_the_scene_names_both_extents(l2a_stac) -> None:
    elsewhere = Grid("EPSG:32629", Affine(100, 0, 600000, 0, -100, 2800020), 100, 100)
    with pytest.raises(
        SceneError,
        match=r"requested grid \(bounds \(600000.0, 2790020.0, 610000.0, 2800020.0\) in EPSG:32629\) "
        r"does not overlap band B02 of .*item.json \(bounds \(199980.0, 2690220.0, 309780.0, 2800020.0\)",
    ):
        l2a_stac.read(["B02"], grid=elsewhere)


def test_bad_sources_are_clear_errors(tmp_path) -> None:
    with pytest.raises(SceneError, match=r"nowhere.tif does not exist"):
        open_scene(tmp_path / "nowhere.tif")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SceneError, match=r"No Sentinel-2 band files found in .*empty"):
        open_scene(tmp_path / "empty")
    with pytest.raises(SceneError, match=r"Cannot read a STAC item from .*item.json"):
        open_scene(tmp_path / "item.json")
    with pytest.raises(SceneError, match=r"band_names= names the bands of a single raster file"):
        open_scene(tmp_path / "empty", band_names=["B02"])


def test_ambiguous_band_files_and_several_granules_are_refused(tmp_path) -> None:
    folder = tmp_path / "two"
    for name in ("B02.tif", "T31TDH_20220301T104009_B02.jp2"):
        write_jp2(folder / name, np.ones((4, 4), np.uint16), 10)
    with pytest.raises(SceneError, match=r"Several files could hold band B02"):
        open_scene(folder)
    safe, granule, _ = build_safe(tmp_path / "safe")
    (granule.parent / "L2A_T31TDH_second" / "IMG_DATA").mkdir(parents=True)
    with pytest.raises(SceneError, match=r"holds 2 granules .*open one of them"):
        open_scene(safe)


@pytest.mark.parametrize(
    ("source", "is_item"),
    [("https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2A_X", True),
     ("https://example.com/item.json?token=1", True), ("https://example.com/B02.tif", False),
     ("s3://bucket/tile/B02.TIF", False), ("/vsicurl/https://example.com/B02", False),
     ("/data/items/S2A_X", False)],
)  # fmt: skip
def test_remote_stac_item_urls_are_told_from_remote_rasters(source: str, is_item: bool) -> None:
    from cloudseg.sentinel2.reader import _is_remote_item

    assert _is_remote_item(source) is is_item
