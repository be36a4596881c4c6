"""Hand labels: rasters in any coding (mapped by config) and polygons rasterized on the image."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from cloudseg.data.importers.cli import main
from cloudseg.data.importers.hand import ClassMapping, import_hand_labels
from cloudseg.data.manifest import DatasetWriter, read_manifest
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import Grid
from helpers.cloudmask_factory import BANDS, scene_arrays, scene_grid

SIZE = 32
GRID = scene_grid(0, SIZE)
MAPPING_YAML = """
classes:
  0: ignore        # unlabeled
  10: clear
  20: thick_cloud
  21: thin_cloud
  30: cloud_shadow
"""


@pytest.fixture
def image(tmp_path):
    dn, _ = scene_arrays(BANDS, SIZE, seed=0)
    path = tmp_path / "T32TMS_20210614_scene.tif"
    write_cog(
        path, dn, GRID, nodata=0, band_names=BANDS, tags={"SENSING_TIME": "2021-06-14T10:30:00Z"}
    )
    return path


@pytest.fixture
def mapping(tmp_path):
    path = tmp_path / "coding.yaml"
    path.write_text(MAPPING_YAML)
    return ClassMapping.read(path)


def _coded_labels() -> np.ndarray:
    labels = np.full((SIZE, SIZE), 10, dtype=np.uint8)
    labels[:8, :8] = 20
    labels[8:12, :] = 21
    labels[-4:, -4:] = 30
    labels[20:24, :4] = 0
    return labels


def _read_mask(root, scene_id):
    row = read_manifest(root).set_index("scene_id").loc[scene_id]
    with rasterio.open(root / row["mask_path"]) as src:
        return src.read(1), row


def test_raster_labels_in_their_own_coding_are_mapped(tmp_path, image, mapping):
    labels_path = tmp_path / "labels.tif"
    write_cog(labels_path, _coded_labels(), GRID, categorical=True)
    with DatasetWriter(tmp_path / "ds") as writer:
        import_hand_labels(writer, image, labels_path, mapping)
    mask, row = _read_mask(tmp_path / "ds", image.stem)
    assert (row["label_source"], row["site"], row["date"], row["curation"]) == (
        "hand", "32TMS", "2021-06-14", "accepted",
    )  # fmt: skip
    assert row["bands"].split() == list(BANDS)
    expected = np.select(
        [_coded_labels() == v for v in (10, 20, 21, 30, 0)],
        [CLEAR, THICK_CLOUD, THIN_CLOUD, CLOUD_SHADOW, IGNORE_INDEX],
    )
    np.testing.assert_array_equal(mask, expected)


def test_unknown_label_value_names_value_and_file(tmp_path, image, mapping):
    labels = _coded_labels()
    labels[3, 3] = 99
    labels_path = tmp_path / "labels.tif"
    write_cog(labels_path, labels, GRID, categorical=True)
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(ValueError, match=r"labels.tif: label value 99"),
    ):
        import_hand_labels(writer, image, labels_path, mapping)


def test_unmapped_values_can_be_ignored_and_nodata_is_ignore(tmp_path, image):
    mapping = ClassMapping({1: "clear", 2: "thick_cloud"}, unmapped="ignore")
    labels = np.ones((SIZE, SIZE), dtype=np.uint8)
    labels[0, :] = 2
    labels[1, :] = 7  # unmapped
    labels[2, :] = 250  # the raster's nodata
    path = tmp_path / "labels.tif"
    write_cog(path, labels, GRID, nodata=250, categorical=True)
    with DatasetWriter(tmp_path / "ds") as writer:
        import_hand_labels(writer, image, path, mapping)
    mask, _ = _read_mask(tmp_path / "ds", image.stem)
    assert (mask[0] == THICK_CLOUD).all() and (mask[1:3] == IGNORE_INDEX).all()
    assert (mask[3:] == CLEAR).all()


def test_label_raster_on_another_grid_is_an_error_naming_both(tmp_path, image, mapping):
    shifted = Grid(GRID.crs, GRID.transform @ Affine.translation(1, 0), SIZE, SIZE)
    path = tmp_path / "labels_shifted.tif"
    write_cog(path, _coded_labels(), shifted, categorical=True)
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(
            ValueError,
            match=r"labels_shifted.tif is not on the grid of image .*T32TMS_20210614_scene.tif",
        ),
    ):
        import_hand_labels(writer, image, path, mapping)


def _polygons(crs: str = "EPSG:32632") -> gpd.GeoDataFrame:
    left, bottom, right, top = GRID.bounds
    pixel = GRID.resolution
    shapes = [
        (box(left, bottom, right, top - 8 * pixel), "clear"),  # rows 8.. clear
        (box(left, top - 4 * pixel, left + 6 * pixel, top), "cloud"),  # rows 0-3, cols 0-5
        (box(left, top - 12 * pixel, right, top - 10 * pixel), "cirrus"),  # rows 10-11, on clear
    ]
    frame = gpd.GeoDataFrame(
        {"label": [s[1] for s in shapes]}, geometry=[s[0] for s in shapes], crs="EPSG:32632"
    )
    return frame.to_crs(crs)


POLYGON_MAPPING = {"clear": "clear", "cloud": "thick_cloud", "cirrus": "thin_cloud"}


@pytest.mark.parametrize(("suffix", "crs"), [(".geojson", "EPSG:4326"), (".gpkg", "EPSG:32632")])
def test_polygons_are_rasterized_and_uncovered_pixels_are_ignore(tmp_path, image, suffix, crs):
    path = tmp_path / f"polygons{suffix}"
    _polygons(crs).to_file(path)
    with DatasetWriter(tmp_path / "ds") as writer:
        import_hand_labels(writer, image, path, ClassMapping(POLYGON_MAPPING), attribute="label")
    mask, _ = _read_mask(tmp_path / "ds", image.stem)
    assert (mask[:4, :6] == THICK_CLOUD).all()
    assert (mask[:4, 6:] == IGNORE_INDEX).all() and (mask[4:8] == IGNORE_INDEX).all()
    assert (mask[8:10] == CLEAR).all() and (mask[12:] == CLEAR).all()
    assert (mask[10:12] == THIN_CLOUD).all()  # the later polygon wins


def test_polygon_errors_name_the_file(tmp_path, image):
    path = tmp_path / "polygons.geojson"
    _polygons().to_file(path)
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(ValueError, match=r"no attribute 'class'.*\['label'\]"),
    ):
        import_hand_labels(writer, image, path, ClassMapping(POLYGON_MAPPING))
    far = _polygons()
    far["geometry"] = far.translate(xoff=50_000)
    far_path = tmp_path / "far.geojson"
    far.to_file(far_path)
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(ValueError, match="None of the 3 polygons in .*far.geojson"),
    ):
        import_hand_labels(
            writer, image, far_path, ClassMapping(POLYGON_MAPPING), attribute="label"
        )


def test_unnamed_bands_need_band_names(tmp_path, mapping):
    dn, _ = scene_arrays(BANDS, SIZE, seed=0)
    path = tmp_path / "T32TMS_20210614_noname.tif"
    write_cog(path, dn, GRID, nodata=0)
    labels_path = tmp_path / "labels.tif"
    write_cog(labels_path, _coded_labels(), GRID, categorical=True)
    with DatasetWriter(tmp_path / "ds") as writer:
        with pytest.raises(ValueError, match="no description"):
            import_hand_labels(writer, path, labels_path, mapping)
        row = import_hand_labels(writer, path, labels_path, mapping, band_names=list(BANDS))
    assert row.bands.split() == list(BANDS)


def test_cli_pairs_folders_by_name_and_applies_curation(tmp_path, mapping):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for index, name in enumerate(["T32TMS_20210101_a", "T32TMS_20210201_b"]):
        dn, _ = scene_arrays(BANDS, SIZE, seed=index)
        write_cog(images / f"{name}.tif", dn, GRID, nodata=0, band_names=BANDS)
        write_cog(labels / f"{name}.tif", _coded_labels(), GRID, categorical=True)
    (tmp_path / "coding.yaml").write_text(MAPPING_YAML)
    curation = tmp_path / "curation.csv"
    curation.write_text(
        "scene_id,decision,reason\nT32TMS_20210201_b,reject,labels drawn on the wrong date\n"
    )
    main([
        "hand", str(images), str(labels), "--mapping", str(tmp_path / "coding.yaml"),
        "--out", str(tmp_path / "ds"), "--curation", str(curation),
    ])  # fmt: skip
    frame = read_manifest(tmp_path / "ds").set_index("scene_id")
    assert frame.loc["T32TMS_20210101_a", "curation"] == "accepted"
    assert frame.loc["T32TMS_20210201_b", "curation"] == "rejected"
    assert frame.loc["T32TMS_20210201_b", "curation_reason"] == "labels drawn on the wrong date"
    assert frame.loc["T32TMS_20210201_b", "date"] == "2021-02-01"
    (labels / "T32TMS_20210101_a.tif").rename(labels / "other.tif")
    with pytest.raises(ValueError, match="no partner"):
        main(["hand", str(images), str(labels), "--out", str(tmp_path / "ds2")])


def test_mapping_rejects_targets_that_are_not_classes():
    with pytest.raises(ValueError, match="'haze' is not a class"):
        ClassMapping({1: "haze"})
