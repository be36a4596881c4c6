"""Unit tests of the Sentinel-2 basics: band registry, DN scaling, grids and the COG writer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.io import MemoryFile
from rasterio.windows import Window

from cloudseg.sentinel2.bands import (
    BANDS,
    L1C_BANDS,
    L2A_BANDS,
    S2CLOUDLESS_BANDS,
    band_indices,
    canonical_band_name,
    is_categorical,
    resolution_of,
    resolve_bands,
)
from cloudseg.sentinel2.cog import partial_path, write_cog
from cloudseg.sentinel2.grid import Grid, reproject_nearest
from cloudseg.sentinel2.radiometry import (
    dn_to_reflectance,
    harmonize_dn,
    offset_for_baseline,
    offset_from_metadata,
    parse_baseline,
    reflectance_to_dn,
)

UTM31 = "EPSG:32631"


def make_grid(height: int = 300, width: int = 200, resolution: float = 10.0) -> Grid:
    return Grid(UTM31, Affine(resolution, 0, 399960, 0, -resolution, 4693200), height, width)


# --- bands -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("B02", "B02"), ("b2", "B02"), ("B2", "B02"), (" b12 ", "B12"), ("b8a", "B8A"),
     ("B08A", "B8A"), ("B8", "B08"), ("scl", "SCL"), ("aot", "AOT")],
)  # fmt: skip
def test_canonical_band_name_accepts_common_spellings(spelling: str, canonical: str) -> None:
    assert canonical_band_name(spelling) == canonical


@pytest.mark.parametrize("typo", ["B13", "B00", "B2X", "blue", ""])
def test_unknown_band_names_list_the_valid_ones(typo: str) -> None:
    with pytest.raises(ValueError, match=r"Unknown Sentinel-2 band .*Valid names: B01, B02"):
        canonical_band_name(typo)


def test_band_sets_and_presets() -> None:
    assert len(L1C_BANDS) == 13 and L1C_BANDS[8] == "B8A"
    assert tuple(name for name in L1C_BANDS if name != "B10") == L2A_BANDS
    assert set(S2CLOUDLESS_BANDS) <= set(L1C_BANDS) and len(S2CLOUDLESS_BANDS) == 10
    assert resolve_bands(None) == L1C_BANDS
    assert resolve_bands("l2a") == L2A_BANDS
    assert resolve_bands("RGB") == ("B04", "B03", "B02")
    assert resolve_bands("b4") == ("B04",)
    assert resolve_bands(["b8a", "B2"]) == ("B8A", "B02")
    centres = [band.center_nm for band in BANDS]
    assert centres == sorted(centres), "canonical order is by wavelength"


def test_resolve_bands_rejects_empty_and_duplicated_lists() -> None:
    with pytest.raises(ValueError, match="empty"):
        resolve_bands([])
    with pytest.raises(ValueError, match=r"\['B02'\] more than once"):
        resolve_bands(["B02", "b2", "B03"])


def test_band_indices_and_missing_bands() -> None:
    assert band_indices(["B04", "B02"], ["B02", "B03", "B04"]) == [2, 0]
    with pytest.raises(ValueError, match=r"Bands \['B08'\] are not available.*'B02', 'B03'"):
        band_indices(["B08"], ["B02", "B03"])


def test_resolution_and_categorical_layers() -> None:
    assert [resolution_of(name) for name in ("B02", "B05", "B01", "SCL")] == [10, 20, 60, 20]
    assert is_categorical("scl") and not is_categorical("B02") and not is_categorical("AOT")


# --- radiometry --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("04.00", 4.0), ("N0400", 4.0), ("0400", 4.0), ("02.14", 2.14), ("N0509", 5.09), (4, 4.0),
     (None, None)],
)  # fmt: skip
def test_parse_baseline(text, value) -> None:
    assert parse_baseline(text) == value


def test_parse_baseline_rejects_garbage() -> None:
    with pytest.raises(ValueError, match=r"Cannot parse processing baseline 'abc'"):
        parse_baseline("abc")


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [(None, 0.0), ("02.14", 0.0), ("03.01", 0.0), ("04.00", -1000.0), ("N0509", -1000.0)],
)
def test_offset_for_baseline(baseline, offset) -> None:
    assert offset_for_baseline(baseline) == offset


def test_offset_from_metadata_prefers_explicit_offsets_to_baselines() -> None:
    assert offset_from_metadata({}) is None
    assert offset_from_metadata({"s2:processing_baseline": "05.09"}) == -1000.0
    assert offset_from_metadata({"PROCESSING_BASELINE": "02.14"}) == 0.0
    both = {"BOA_ADD_OFFSET": "-500", "PROCESSING_BASELINE": "04.00"}
    assert offset_from_metadata(both) == -500.0
    assert offset_from_metadata({"RADIO_ADD_OFFSET": -1000}) == -1000.0


def test_dn_to_reflectance_values_and_nodata() -> None:
    dn = np.array([[0, 1000, 1234], [10000, 65535, 1]], dtype=np.uint16)
    reflectance = dn_to_reflectance(dn, offset=-1000)
    assert reflectance.dtype == np.float32
    assert np.isnan(reflectance[0, 0])
    np.testing.assert_allclose(reflectance[0, 1:], [0.0, 0.0234], rtol=1e-6)
    np.testing.assert_allclose(reflectance[1], [0.9, 6.4535, -0.0999], rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    dn=st.lists(st.integers(0, 65535), min_size=1, max_size=50),
    offset=st.sampled_from([0.0, -1000.0]),
)
def test_reflectance_dn_round_trip(dn: list[int], offset: float) -> None:
    """Every DN, nodata included, comes back exactly through float32 reflectance."""
    dn_array = np.array(dn, dtype=np.uint16)
    back = reflectance_to_dn(dn_to_reflectance(dn_array, offset), offset)
    np.testing.assert_array_equal(back, dn_array)


def test_reflectance_to_dn_clips_and_keeps_nan_as_nodata() -> None:
    reflectance = np.array([np.nan, -0.5, 0.0, 0.5, 7.0], dtype=np.float32)
    np.testing.assert_array_equal(
        reflectance_to_dn(reflectance, offset=-1000), [0, 1, 1000, 6000, 65535]
    )


def test_harmonize_dn_shifts_clips_and_keeps_nodata() -> None:
    dn = np.array([0, 500, 1000, 1001, 3000], dtype=np.uint16)
    harmonized = harmonize_dn(dn, offset=-1000)
    np.testing.assert_array_equal(harmonized, [0, 1, 1, 1, 2000])
    assert harmonized.dtype == np.uint16
    assert harmonize_dn(dn, offset=0) is dn


# --- grid --------------------------------------------------------------------------------------


def test_grid_bounds_shape_and_resolution() -> None:
    grid = make_grid(height=300, width=200)
    assert grid.shape == (300, 200)
    assert grid.resolution == 10
    assert grid.bounds == (399960.0, 4690200.0, 401960.0, 4693200.0)


def test_grid_rejects_empty_shapes() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_grid(height=0)


def test_window_grid_is_the_windows_pixels() -> None:
    grid = make_grid()
    sub = grid.window_grid(Window(col_off=20, row_off=10, width=50, height=30))
    assert sub.shape == (30, 50)
    assert sub.bounds == (400160.0, 4692800.0, 400660.0, 4693100.0)
    assert sub.crs == grid.crs


def test_with_resolution_keeps_the_extent() -> None:
    grid = make_grid(height=300, width=300)
    coarse = grid.with_resolution(60)
    assert coarse.shape == (50, 50)
    assert coarse.bounds == grid.bounds
    # 109800 m is 1098 px at 100 m, 549 at 200 m and 183 at 600 m (as the downsampled L2A tile)
    tile = Grid(UTM31, Affine(100, 0, 199980, 0, -100, 2800020), 1098, 1098)
    assert tile.with_resolution(600).shape == (183, 183)
    assert tile.with_resolution(600).bounds == tile.bounds
    # an extent that is not a whole number of coarse pixels rounds up (covers it all)
    assert make_grid(height=305, width=301).with_resolution(60).shape == (51, 51)


def test_overlaps_in_the_same_and_in_another_crs() -> None:
    grid = make_grid()
    assert grid.overlaps(grid.window_grid(Window(190, 290, 50, 50)))
    far = Grid(UTM31, Affine(10, 0, 500000, 0, -10, 4693200), 100, 100)
    assert not grid.overlaps(far)
    touching = Grid(UTM31, Affine(10, 0, 401960, 0, -10, 4693200), 100, 100)
    assert not grid.overlaps(touching)
    # the same ground in WGS 84 overlaps; a box on the other side of the world does not
    west, south, east, north = grid.bounds_in("EPSG:4326")
    geographic = Grid(
        "EPSG:4326", Affine((east - west) / 10, 0, west, 0, -(north - south) / 10, north), 10, 10
    )
    assert grid.overlaps(geographic) and geographic.overlaps(grid)
    antipode = Grid("EPSG:4326", Affine(0.01, 0, -178, 0, -0.01, -40), 10, 10)
    assert not grid.overlaps(antipode)


def test_grid_from_dataset_and_profile_round_trip() -> None:
    grid = make_grid(height=20, width=30)
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", **grid.to_profile()}
    with MemoryFile() as memory, memory.open(**profile) as dataset:
        assert Grid.from_dataset(dataset) == grid
    no_crs = {**profile, "crs": None}
    with (
        MemoryFile() as memory,
        memory.open(**no_crs) as dataset,
        pytest.raises(ValueError, match="has no CRS"),
    ):
        Grid.from_dataset(dataset)


def test_reproject_nearest_repeats_classes_and_keeps_nodata() -> None:
    coarse = make_grid(height=3, width=3, resolution=20.0)
    classes = np.array([[0, 1, 2], [3, 255, 1], [2, 2, 0]], dtype=np.uint8)
    # 10 m pixels from the coarse grid's second column on, two columns and a row past its edges
    fine = Grid(UTM31, Affine(10, 0, 399980, 0, -10, 4693200), 7, 6)
    out = reproject_nearest(classes, coarse, fine, nodata=255)
    expected = np.full((7, 6), 255, dtype=np.uint8)
    expected[:6, :4] = np.repeat(np.repeat(classes, 2, axis=0), 2, axis=1)[:, 2:]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)  # 255 in the source stays nodata, not spread
    np.testing.assert_array_equal(reproject_nearest(out, fine, fine, nodata=255), out)


def test_reproject_nearest_reads_a_dataset_band_as_it_warps_an_array() -> None:
    grid = make_grid(height=40, width=30)
    rng = np.random.default_rng(0)
    classes = np.kron(rng.integers(0, 4, (8, 6)), np.ones((5, 5))).astype(np.uint8)
    classes[:5, :5] = 255
    west, south, east, north = grid.bounds_in("EPSG:32630")  # the neighbouring UTM zone
    other = Grid("EPSG:32630", Affine(7, 0, west - 50, 0, -7, north + 50), 70, 60)
    from_array = reproject_nearest(classes, grid, other, nodata=255)
    profile = {"driver": "GTiff", "count": 1, "dtype": "uint8", "nodata": 255}
    with MemoryFile() as memory, memory.open(**profile, **grid.to_profile()) as dataset:
        dataset.write(classes, 1)
        from_band = reproject_nearest(rasterio.band(dataset, 1), grid, other, nodata=255)
    np.testing.assert_array_equal(from_band, from_array)
    assert set(np.unique(from_array)) == {0, 1, 2, 3, 255}
    assert (from_array[:5, :] == 255).all()  # 50 m north of the source: outside, nodata


# --- COG writer --------------------------------------------------------------------------------


def assert_cloud_optimized(path: Path) -> None:
    """The COG layout checks of GDAL's validator: tiled, overviews, IFDs before data, and
    overview data before full-resolution data (so a reader fetches the header in one request)."""
    with rasterio.open(path) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dataset.profile["tiled"]
        assert dataset.overviews(1), "a COG larger than one block has overviews"
    with tifffile.TiffFile(path) as tiff:
        pages = list(tiff.pages)
        ifd_offsets = [page.offset for page in pages]
        first_data = min(min(page.dataoffsets) for page in pages)
        assert max(ifd_offsets) < first_data, "all IFDs come before the image data"
        full_resolution, *overviews = pages
        assert all(page.is_tiled for page in pages)
        for overview in overviews:
            assert max(overview.dataoffsets) < min(full_resolution.dataoffsets)
    assert b"LAYOUT=IFDS_BEFORE_DATA" in path.read_bytes()[:400]


def test_write_cog_writes_a_valid_cog_with_names_tags_and_nodata(tmp_path: Path) -> None:
    grid = make_grid(height=700, width=600)
    data = np.random.default_rng(0).integers(1, 10000, size=(3, 700, 600), dtype=np.uint16)
    path = write_cog(
        tmp_path / "scene.tif",
        data,
        grid,
        nodata=0,
        band_names=["B02", "B03", "B04"],
        blocksize=256,
        tags={"PROCESSING_BASELINE": "04.00", "SUN_ELEVATION": 41.5},
    )
    assert path == tmp_path / "scene.tif"
    assert_cloud_optimized(path)
    with rasterio.open(path) as dataset:
        np.testing.assert_array_equal(dataset.read(), data)
        assert Grid.from_dataset(dataset) == grid
        assert dataset.descriptions == ("B02", "B03", "B04")
        assert dataset.nodata == 0
        assert dataset.block_shapes[0] == (256, 256)
        assert dataset.tags()["PROCESSING_BASELINE"] == "04.00"
        assert dataset.tags()["SUN_ELEVATION"] == "41.5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_write_cog_categorical_overviews_only_hold_existing_classes(tmp_path: Path) -> None:
    grid = make_grid(height=1024, width=1024)
    classes = np.zeros((1024, 1024), dtype=np.uint8)
    classes[:, 1::2] = 3  # averaging would produce 1 or 2, which never occur
    write_cog(tmp_path / "mask.tif", classes, grid, categorical=True, blocksize=256)
    with rasterio.open(tmp_path / "mask.tif") as dataset:
        overview = dataset.read(1, out_shape=(256, 256))
        assert set(np.unique(overview)) <= {0, 3}


def test_write_cog_float_data_round_trips(tmp_path: Path) -> None:
    grid = make_grid(height=40, width=30)
    data = np.linspace(-1, 1, 1200, dtype=np.float32).reshape(40, 30)
    write_cog(tmp_path / "float.tif", data, grid, nodata=math.nan)
    with rasterio.open(tmp_path / "float.tif") as dataset:
        np.testing.assert_array_equal(dataset.read(1), data)
        assert dataset.count == 1


@pytest.mark.parametrize(
    ("shape", "names", "message"),
    [((2, 5, 5), None, r"does not match the grid"), ((2, 40, 30), ["B02"], r"1 band names for 2"),
     ((1, 1, 40, 30), None, r"expects \(bands, y, x\)")],
)  # fmt: skip
def test_write_cog_rejects_bad_shapes(tmp_path: Path, shape, names, message) -> None:
    with pytest.raises(ValueError, match=message):
        write_cog(
            tmp_path / "bad.tif", np.ones(shape, np.uint16), make_grid(40, 30), band_names=names
        )
    assert list(tmp_path.iterdir()) == []


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("disk full (simulated)")


def test_write_cog_leaves_nothing_on_error_and_keeps_an_existing_file(tmp_path: Path) -> None:
    grid = make_grid(height=40, width=30)
    target = tmp_path / "scene.tif"
    write_cog(target, np.full((1, 40, 30), 7, np.uint16), grid, band_names=["B02"])
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        # fails after the temporary file was created, while describing the band
        write_cog(target, np.ones((1, 40, 30), np.uint16), grid, band_names=[_Unprintable()])
    assert not partial_path(target).exists()
    assert target.read_bytes() == before
    with pytest.raises(RuntimeError, match="disk full"):
        write_cog(
            tmp_path / "new.tif", np.ones((1, 40, 30), np.uint16), grid, band_names=[_Unprintable()]
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
