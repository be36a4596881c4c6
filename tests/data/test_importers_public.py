"""Public datasets in their published layouts: Copernicus-Bench cloud_s2 and the Catalogue."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from torchgeo.datasets import DatasetNotFoundError

from cloudseg.data.importers.cli import main
from cloudseg.data.importers.public import (
    import_cloud_mask_catalogue,
    import_copernicus_cloud_s2,
    utm_crs_for_tile,
)
from cloudseg.data.manifest import DatasetWriter, read_manifest
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from helpers.public_layouts import (
    catalogue_mask,
    cloud_s2_mask,
    write_cloud_mask_catalogue,
    write_cloud_s2,
)

ROI1_A = "ROI_00001__20200422T141729_20200422T142243_T19GDN"
ROI1_B = "ROI_00001__20200517T141731_20200517T142245_T19GDN"
ROI2 = "ROI_00002__20210101T101010_20210101T102020_T19GDN"
ROI3 = "ROI_00003__20210202T101010_20210202T102020_T19GEN"
PATCHES = {"train": [ROI1_A, ROI1_B], "val": [ROI2], "test": [ROI3]}


def test_cloud_s2_patches_keep_classes_bands_and_roi_sites(tmp_path):
    source = write_cloud_s2(tmp_path / "bench", PATCHES)
    with DatasetWriter(tmp_path / "ds") as writer:
        rows = import_copernicus_cloud_s2(writer, source)
    frame = read_manifest(tmp_path / "ds").set_index("scene_id")
    assert len(rows) == 4 and set(frame.index) == {ROI1_A, ROI1_B, ROI2, ROI3}
    assert frame.loc[ROI1_A, "site"] == frame.loc[ROI1_B, "site"] == "ROI_00001"
    assert frame.loc[ROI1_B, "date"] == "2020-05-17"
    assert frame.loc[ROI1_A, "bands"].split() == list(L1C_BANDS)
    assert (frame["label_source"] == "import").all() and (frame["split"] == "").all()
    stems = sorted({ROI1_A, ROI1_B, ROI2, ROI3})
    for index, stem in enumerate(stems):
        with rasterio.open(tmp_path / "ds" / frame.loc[stem, "mask_path"]) as src:
            np.testing.assert_array_equal(src.read(1), cloud_s2_mask(16, index))
        with rasterio.open(tmp_path / "ds" / frame.loc[stem, "image_path"]) as src:
            assert src.dtypes[0] == "uint16" and src.count == 13
            blue = src.read(2)
        mask = cloud_s2_mask(16, index)
        assert (blue[mask == 1] == 7000).all() and (blue[mask != 1] == 1100).all()


def test_cloud_s2_published_split_kept_on_request(tmp_path):
    source = write_cloud_s2(tmp_path / "bench", PATCHES)
    main(["cloud-s2", str(source), "--out", str(tmp_path / "ds"), "--keep-published-split"])
    frame = read_manifest(tmp_path / "ds").set_index("scene_id")
    assert frame.loc[ROI2, "split"] == "val" and frame.loc[ROI1_B, "split"] == "train"


def test_cloud_s2_mask_on_another_grid_names_both_files(tmp_path):
    source = write_cloud_s2(tmp_path / "bench", {"train": [ROI2]}, mask_shift_m=30.0)
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(
            ValueError, match=rf"cloud/{ROI2}.tif is not on the grid of image .*s2_toa/{ROI2}.tif"
        ),
    ):
        import_copernicus_cloud_s2(writer, source, splits=("train",))


def test_cloud_s2_missing_split_file_is_torchgeos_clear_error(tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer, pytest.raises(DatasetNotFoundError):
        import_copernicus_cloud_s2(writer, tmp_path / "nothing_here")


PRODUCT = "S2A_MSIL1C_20180125T101311_N0206_R022_T32TQM_20180125T121813"
PRODUCT_SOUTH = "S2B_MSIL1C_20180610T073609_N0206_R092_T36JTT_20180610T112217"


def test_catalogue_one_hot_masks_become_classes(tmp_path):
    source = write_cloud_mask_catalogue(tmp_path / "cat", [PRODUCT, PRODUCT_SOUTH])
    with DatasetWriter(tmp_path / "ds") as writer:
        import_cloud_mask_catalogue(writer, source)
    frame = read_manifest(tmp_path / "ds").set_index("scene_id")
    row = frame.loc[PRODUCT]
    assert (row["site"], row["date"], row["processing_baseline"]) == (
        "32TQM",
        "2018-01-25",
        "02.06",
    )
    with rasterio.open(tmp_path / "ds" / row["mask_path"]) as src:
        mask = src.read(1)
        assert src.crs.to_epsg() == 32632 and src.res == (20.0, 20.0)
    expected = np.select(
        [catalogue_mask(16)[..., i] for i in range(3)],
        [CLEAR, THICK_CLOUD, CLOUD_SHADOW],
        IGNORE_INDEX,
    )
    np.testing.assert_array_equal(mask, expected)
    assert mask[0, 0] == IGNORE_INDEX
    with rasterio.open(tmp_path / "ds" / row["image_path"]) as src:
        assert src.read(1)[5, 0] == 1000 and src.read(13)[5, 0] == 2200  # 0.10 and 0.22 reflectance
    with rasterio.open(tmp_path / "ds" / frame.loc[PRODUCT_SOUTH, "mask_path"]) as src:
        assert src.crs.to_epsg() == 32736  # band J is south of the equator


def test_catalogue_bad_names_and_missing_masks_are_clear_errors(tmp_path):
    source = write_cloud_mask_catalogue(tmp_path / "cat", ["subscene_0001"])
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(ValueError, match="subscene_0001.npy: name is not"),
    ):
        import_cloud_mask_catalogue(writer, source)
    source = write_cloud_mask_catalogue(tmp_path / "cat2", [PRODUCT])
    (source / "masks" / f"{PRODUCT}.npy").unlink()
    with (
        DatasetWriter(tmp_path / "ds2") as writer,
        pytest.raises(FileNotFoundError, match="has no mask"),
    ):
        import_cloud_mask_catalogue(writer, source)


def test_utm_zone_from_tile():
    assert utm_crs_for_tile("31UFT").to_epsg() == 32631
    assert utm_crs_for_tile("19GDN").to_epsg() == 32719
