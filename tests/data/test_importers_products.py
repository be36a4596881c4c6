"""Curated labels from product masks: SCL (real L2A item), s2cloudless (real eo-learn series,
real L1C JP2 clip, EOPatch layout, probability rasters) and the curation list."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cloudseg.data.importers.cli import main
from cloudseg.data.importers.curation import CurationList, apply_curation
from cloudseg.data.importers.s2cloudless_labels import (
    S2CloudlessConfig,
    cloud_mask_to_classes,
    grid_from_bbox,
    import_reflectance_series,
    import_s2cloudless_product,
    import_s2cloudless_scene,
)
from cloudseg.data.importers.scl import SCL_TO_CLASS, import_scl_product, scl_to_mask
from cloudseg.data.importers.sources import SceneImage
from cloudseg.data.manifest import DatasetWriter, read_manifest
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS, L2A_BANDS
from cloudseg.sentinel2.grid import Grid
from helpers.cloudmask_factory import build_dataset

L2A_ITEM = "l2a-29RKH-20200219/item.json"
EOLEARN = "eolearn-5dates"


def _mask_of(root, scene_id) -> np.ndarray:
    row = read_manifest(root).set_index("scene_id").loc[scene_id]
    with rasterio.open(root / row["mask_path"]) as src:
        return src.read(1)


def _curation(tmp_path, rows: list[tuple[str, str, str]]) -> CurationList:
    path = tmp_path / "curation.csv"
    path.write_text("scene_id,decision,reason\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return CurationList.read(path)


# -- SCL ---------------------------------------------------------------------------------------


def test_scl_mapping_follows_the_issue():
    scl = np.arange(12, dtype=np.uint8).reshape(3, 4)
    mask = scl_to_mask(scl)
    assert mask.ravel().tolist() == [
        IGNORE_INDEX, IGNORE_INDEX, CLEAR, CLOUD_SHADOW, CLEAR, CLEAR, CLEAR, CLEAR,
        THICK_CLOUD, THICK_CLOUD, THIN_CLOUD, CLEAR,
    ]  # fmt: skip
    assert sorted(SCL_TO_CLASS) == list(range(12))
    with pytest.raises(ValueError, match=r"values \[12\] are not SCL classes"):
        scl_to_mask(np.array([[12]], dtype=np.uint8))


def test_real_l2a_item_with_scl_labels(realdata, tmp_path):
    curation = _curation(tmp_path, [("29RKH_20200219", "accept", "SCL cirrus matches the image")])
    with DatasetWriter(tmp_path / "ds") as writer:
        row = import_scl_product(writer, realdata / L2A_ITEM, resolution=200, curation=curation)
    assert (row.scene_id, row.site, row.date, row.processing_baseline) == (
        "29RKH_20200219", "29RKH", "2020-02-19", "02.14",
    )  # fmt: skip
    assert (row.label_source, row.curation, row.curation_reason) == (
        "scl", "accepted", "SCL cirrus matches the image",
    )  # fmt: skip
    assert row.bands.split() == list(L2A_BANDS)
    mask = _mask_of(tmp_path / "ds", row.scene_id)
    # the SCL file is natively at 200 m here: count its classes independently
    with rasterio.open(realdata / "l2a-29RKH-20200219" / "SCL.tif") as src:
        counts = np.bincount(src.read(1).ravel(), minlength=12)
    assert mask.shape == (549, 549)
    assert (mask == THIN_CLOUD).sum() == counts[10] == 10434
    assert (mask == THICK_CLOUD).sum() == counts[8] + counts[9]
    assert (mask == CLOUD_SHADOW).sum() == counts[3]
    assert (mask == IGNORE_INDEX).sum() == counts[0] + counts[1]
    assert (mask == CLEAR).sum() == counts[[2, 4, 5, 6, 7, 11]].sum()
    with rasterio.open(tmp_path / "ds" / row.image_path) as src:
        assert src.count == 12 and src.dtypes[0] == "uint16" and src.res == (200.0, 200.0)
        assert 1000 < np.median(src.read(2)) < 6000  # bright desert B02 DN


def test_scl_scenes_wait_for_curation(realdata, tmp_path):
    main(["scl", str(realdata / L2A_ITEM), "--resolution", "600", "--out", str(tmp_path / "ds")])
    frame = read_manifest(tmp_path / "ds")
    assert frame["curation"].tolist() == ["pending"]


# -- s2cloudless -------------------------------------------------------------------------------


def test_real_eolearn_series_labeled_by_s2cloudless(realdata, tmp_path):
    folder = realdata / EOLEARN
    reflectance = np.load(folder / "REFERENCE_SCENES.npy")
    timestamps = json.loads((folder / "timestamps.json").read_text())[: len(reflectance)]
    grid = grid_from_bbox(folder / "bbox.geojson", reflectance.shape[1:3])
    assert grid.crs.to_epsg() == 32633 and round(grid.resolution) == 10
    curation = _curation(
        tmp_path,
        [("slovenia_20150731", "reject", "haze: s2cloudless calls thin haze thick cloud")]
        + [
            (f"slovenia_{d}", "accept", "checked")
            for d in ("20150711", "20150820", "20150830", "20150909")
        ],
    )
    with DatasetWriter(tmp_path / "ds") as writer:
        rows = import_reflectance_series(
            writer, reflectance, timestamps, grid, site="slovenia", curation=curation
        )
    assert [r.scene_id for r in rows] == [
        "slovenia_20150711", "slovenia_20150731", "slovenia_20150820", "slovenia_20150830",
        "slovenia_20150909",
    ]  # fmt: skip
    assert [r.curation for r in rows] == [
        "accepted",
        "rejected",
        "accepted",
        "accepted",
        "accepted",
    ]
    assert rows[1].curation_reason.startswith("haze")
    cloud_share = [(_mask_of(tmp_path / "ds", r.scene_id) == THICK_CLOUD).mean() for r in rows]
    # frame 0 is bright cloud/haze everywhere, frames 2-4 are clear vegetation
    assert cloud_share[0] > 0.9
    assert max(cloud_share[2:]) < 0.05
    assert all(r.label_source == "s2cloudless" and r.bands.split() == list(L1C_BANDS) for r in rows)
    assert curation.unused() == []


def test_real_l1c_jp2_folder_runs_s2cloudless(realdata, tmp_path):
    with DatasetWriter(tmp_path / "ds") as writer:
        row = import_s2cloudless_product(writer, realdata / "l1c-T31TDH-20150726", resolution=60)
    assert (row.scene_id, row.site, row.date, row.curation) == (
        "31TDH_20150726", "31TDH", "2015-07-26", "pending",
    )  # fmt: skip
    mask = _mask_of(tmp_path / "ds", row.scene_id)
    assert mask.shape == (50, 50) and set(np.unique(mask)) <= {CLEAR, THICK_CLOUD}


def _tiny_image(size: int = 24) -> SceneImage:
    grid = Grid("EPSG:32633", rasterio.Affine(10, 0, 465_000, 0, -10, 5_080_000), size, size)
    dn = np.full((len(L1C_BANDS), size, size), 800, dtype=np.uint16)
    return SceneImage(dn=dn, grid=grid, bands=L1C_BANDS, date="2020-01-01", tile="33TVM")


def test_probability_rasters_are_thresholded_with_their_scale(tmp_path):
    image = _tiny_image()
    probability = np.full(image.grid.shape, 10, dtype=np.uint8)
    probability[:12, :12] = 90
    config = S2CloudlessConfig(threshold=0.4, average_over_10m=1, dilation_size_10m=1)
    with DatasetWriter(tmp_path / "ds") as writer:
        with pytest.raises(ValueError, match="probability_max"):
            import_s2cloudless_scene(
                writer, image, scene_id="p", probability=probability, config=config
            )
        import_s2cloudless_scene(
            writer, image, scene_id="p", probability=probability, probability_max=100, config=config
        )
    mask = _mask_of(tmp_path / "ds", "p")
    assert (mask[:10, :10] == THICK_CLOUD).all() and (mask[15:, 15:] == CLEAR).all()


def test_given_masks_must_be_on_the_image_grid(tmp_path):
    image = _tiny_image()
    with (
        DatasetWriter(tmp_path / "ds") as writer,
        pytest.raises(ValueError, match=r"scene x: cloud mask shape \(5, 5\)"),
    ):
        import_s2cloudless_scene(writer, image, scene_id="x", cloud_mask=np.zeros((5, 5), np.uint8))


def test_eopatch_folder_with_cloud_masks(tmp_path):
    patch = tmp_path / "patch"
    (patch / "data").mkdir(parents=True)
    (patch / "mask").mkdir()
    rng = np.random.default_rng(0)
    bands = rng.uniform(0.02, 0.3, (3, 10, 12, 13)).astype(np.float32)
    clm = rng.integers(0, 2, (3, 10, 12, 1)).astype(np.uint8)
    np.save(patch / "data" / "BANDS.npy", bands)
    np.save(patch / "mask" / "CLM.npy", clm)
    (patch / "timestamps.json").write_text(
        json.dumps(["2019-05-01T10:00:00", "2019-05-01T10:05:00", "2019-05-11T10:00:00"])
    )
    bbox = {
        "type": "Polygon",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
        "coordinates": [[[0, 0], [0, 100], [120, 100], [120, 0], [0, 0]]],
    }
    (patch / "bbox.geojson").write_text(json.dumps(bbox))
    main(["eopatch", str(patch), "--site", "alps", "--out", str(tmp_path / "ds")])
    frame = read_manifest(tmp_path / "ds")
    assert frame["scene_id"].tolist() == [
        "alps_20190501_100000",
        "alps_20190501_100500",
        "alps_20190511",
    ]
    for index, scene_id in enumerate(frame["scene_id"]):
        np.testing.assert_array_equal(
            _mask_of(tmp_path / "ds", scene_id), cloud_mask_to_classes(clm[index, ..., 0])
        )
    with pytest.raises(FileNotFoundError, match="no mask feature 'CLP'"):
        main(
            [
                "eopatch",
                str(patch),
                "--site",
                "alps",
                "--mask-feature",
                "CLP",
                "--out",
                str(tmp_path / "x"),
            ]
        )


# -- curation ----------------------------------------------------------------------------------


def test_curation_list_errors_name_the_line(tmp_path):
    path = tmp_path / "curation.csv"
    path.write_text("scene_id,decision,reason\na,accept,ok\nb,maybe,unsure\n")
    with pytest.raises(ValueError, match=r"line 3 \(scene b\): decision 'maybe'"):
        CurationList.read(path)
    path.write_text("scene_id,verdict\na,accept\n")
    with pytest.raises(ValueError, match=r"lacks columns \['decision'\]"):
        CurationList.read(path)


def test_curate_an_existing_dataset(tmp_path):
    root = build_dataset(tmp_path / "ds", {"a": 2, "b": 1}, size=16)
    curation = tmp_path / "curation.csv"
    curation.write_text(
        "scene_id,decision,reason\na_20210102,reject,smoke plume labeled as cloud\n"
    )
    main(["curate", str(root), "--curation", str(curation)])
    frame = read_manifest(root).set_index("scene_id")
    assert frame.loc["a_20210102", "curation"] == "rejected"
    assert frame.loc["a_20210101", "curation"] == "accepted"
    unknown = _curation(tmp_path, [("zzz", "accept", "")])
    with pytest.raises(ValueError, match=r"names scenes not in .*\['zzz'\]"):
        apply_curation(root, unknown)


def test_accepting_a_scene_without_mask_is_an_error(tmp_path):
    image = _tiny_image()
    with DatasetWriter(tmp_path / "ds") as writer:
        writer.add(
            "nomask", image.dn, None, image.grid, image.bands, site="x", date="2020-01-01",
            label_source="hand", curation="rejected", curation_reason="no labels yet",
        )  # fmt: skip
    with pytest.raises(ValueError, match="Scene nomask cannot be accepted: it has no mask"):
        apply_curation(tmp_path / "ds", _curation(tmp_path, [("nomask", "accept", "")]))
