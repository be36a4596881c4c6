"""The DataModule: batch shapes, dtypes, values and class codes; splits by site; bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import torch

from cloudseg.data import normalization as normalization_module
from cloudseg.data.datamodule import CloudMaskDataModule
from cloudseg.data.manifest import read_manifest, write_manifest
from cloudseg.data.normalization import normalize
from cloudseg.labels import IGNORE_INDEX, NUM_CLASSES
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.sources import SceneError
from helpers.cloudmask_factory import BANDS, CLEAR_DN_BASE, build_dataset, scene_grid

SITES = {"siteA": 2, "siteB": 2, "siteC": 1, "siteD": 1, "siteE": 2}


@pytest.fixture
def dataset(tmp_path):
    return build_dataset(tmp_path / "ds", SITES)


def _module(root, **kwargs) -> CloudMaskDataModule:
    options = dict(
        bands=BANDS, patch_size=32, batch_size=4, train_chips_per_epoch=8, val_chips_per_scene=2
    )
    return CloudMaskDataModule(root, **(options | kwargs))


def test_train_batch_has_the_promised_shapes_dtypes_and_codes(dataset):
    dm = _module(dataset)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, len(BANDS), 32, 32)
    assert batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 32, 32)
    assert batch["mask"].dtype == torch.int64
    codes = set(torch.unique(batch["mask"]).tolist())
    assert codes <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    assert torch.isfinite(batch["image"]).all()
    # normalised: clear-sky values of a few std at most, clouds further out but bounded
    assert batch["image"].abs().max() < 50


def test_validation_batch_is_fixed_and_ignores_nodata(dataset):
    dm = _module(dataset, val_chips_per_scene=4)  # 48 px scenes: all four 32 px windows
    dm.setup("fit")
    first = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    assert torch.equal(first["image"], again["image"])
    assert torch.equal(first["mask"], again["mask"])
    # the factory's 2-pixel nodata strip on the right edge: ignore in the mask, 0 in the image
    val_scene = dm.records["val"][0]
    dataset_val = dm.datasets["val"]
    for index, (scene_index, _, col) in enumerate(dataset_val.windows):
        if dataset_val.records[scene_index] is val_scene and col + 32 == val_scene.width:
            sample = dataset_val[index]
            assert (sample["mask"][:, -2:] == IGNORE_INDEX).all()
            assert (sample["image"][:, :, -2:] == 0).all()
            break
    else:
        pytest.fail("no validation chip touches the right edge")


def test_no_site_in_two_splits_and_every_split_filled(dataset):
    dm = _module(dataset)
    dm.setup()
    sites = {split: {r.site for r in records} for split, records in dm.records.items()}
    assert all(sites[s] for s in ("train", "val", "test"))
    assert not (
        sites["train"] & sites["val"]
        or sites["train"] & sites["test"]
        or sites["val"] & sites["test"]
    )
    scenes = sum(len(r) for r in dm.records.values())
    assert scenes == sum(SITES.values())


def test_normalization_is_json_cached_and_matches_the_training_pixels(dataset, monkeypatch):
    dm = _module(dataset)
    dm.setup("fit")
    norm = dm.normalization
    assert norm["bands"] == list(BANDS) and set(norm) == {"bands", "mean", "std"}
    json.dumps(norm)
    # recompute by hand over the train scenes' valid pixels
    values = []
    for record in dm.records["train"]:
        with rasterio.open(record.image_path) as src:
            dn = src.read().astype(np.float64)
        values.append(np.where(dn == 0, np.nan, dn / 10000).reshape(len(BANDS), -1))
    expected = np.concatenate(values, axis=1)
    np.testing.assert_allclose(norm["mean"], np.nanmean(expected, axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm["std"], np.nanstd(expected, axis=1), rtol=1e-4)
    assert list((dataset / "normalization").glob("*.json"))

    def fail(*args, **kwargs):
        raise AssertionError("normalisation recomputed although it is cached")

    monkeypatch.setattr(normalization_module, "compute_normalization", fail)
    monkeypatch.setattr("cloudseg.data.datamodule.compute_normalization", fail)
    again = _module(dataset)
    again.setup("fit")
    assert again.normalization == norm


def test_band_subset_by_name_in_requested_order(dataset):
    dm = _module(dataset, bands=["B04", "B02"], augment=False)
    dm.setup("fit")
    assert dm.bands == ("B04", "B02")
    sample = dm.datasets["val"][0]
    mean = np.asarray(dm.normalization["mean"])[:, None, None]
    std = np.asarray(dm.normalization["std"])[:, None, None]
    reflectance = sample["image"].numpy() * std + mean
    clear = (sample["mask"] == 0).numpy()
    # clear DN = 1000 + 100 * band position in the file (+ 0..49): B04 is index 2, B02 index 0
    assert np.median(reflectance[0][clear]) == pytest.approx(
        (CLEAR_DN_BASE + 200 + 25) / 1e4, abs=3e-4
    )
    assert np.median(reflectance[1][clear]) == pytest.approx((CLEAR_DN_BASE + 25) / 1e4, abs=3e-4)


def test_processing_baseline_offset_is_applied(tmp_path):
    old = build_dataset(tmp_path / "old", SITES, processing_baseline="02.14")
    new = build_dataset(tmp_path / "new", SITES, processing_baseline="04.00")
    dm_old, dm_new = _module(old, augment=False), _module(new, augment=False)
    dm_old.setup("fit")
    dm_new.setup("fit")
    shift = np.asarray(dm_old.normalization["mean"]) - np.asarray(dm_new.normalization["mean"])
    np.testing.assert_allclose(shift, 0.1, atol=1e-6)


def test_augmented_and_cached_reads_keep_codes_and_agree_without_augmentation(dataset):
    cached = _module(dataset, augment=False, cache_scenes=True)
    windowed = _module(dataset, augment=False, cache_scenes=False)
    cached.setup("fit")
    windowed.setup("fit")
    a, b = next(iter(cached.val_dataloader())), next(iter(windowed.val_dataloader()))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    augmented = _module(
        dataset, augment={"scale_range": (0.5, 1.0), "radiometric_p": 1.0, "haze_p": 1.0}
    )
    augmented.setup("fit")
    batch = next(iter(augmented.train_dataloader()))
    assert set(torch.unique(batch["mask"]).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    assert torch.isfinite(batch["image"]).all()


def test_workers_draw_different_chips(dataset):
    dm = _module(dataset, num_workers=2, batch_size=2, train_chips_per_epoch=4)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    assert not torch.equal(batches[0]["image"], batches[1]["image"])


def test_state_dict_round_trip_and_band_mismatch(dataset):
    dm = _module(dataset)
    dm.setup("fit")
    fresh = _module(dataset)
    fresh.load_state_dict(dm.state_dict())
    assert fresh.normalization == dm.normalization
    with pytest.raises(ValueError, match="trained on bands"):
        _module(dataset, bands=["B02"]).load_state_dict(dm.state_dict())


def test_normalize_maps_nan_to_zero_and_checks_bands():
    norm = {"bands": ["B02", "B03"], "mean": [0.1, 0.2], "std": [0.05, 0.1]}
    reflectance = np.array([[[0.15, np.nan]], [[0.2, 0.3]]], dtype=np.float32)
    out = normalize(reflectance, norm)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[1.0, 0.0]], [[0.0, 1.0]]], atol=1e-6)
    with pytest.raises(ValueError, match="2 bands"):
        normalize(reflectance[:1], norm)


# -- bad input: each error names the row or file -----------------------------------------------


def test_missing_file_names_the_row(dataset):
    (dataset / "masks" / "siteB_20210102.tif").unlink()
    with pytest.raises(FileNotFoundError, match="siteB_20210102"):
        _module(dataset).setup("fit")


def test_unknown_class_values_name_the_mask_file(dataset):
    path = dataset / "masks" / "siteA_20210101.tif"
    with rasterio.open(path) as src:
        mask = src.read(1)
    mask[0, 0] = 7
    write_cog(path, mask, scene_grid(0, mask.shape[0]), nodata=IGNORE_INDEX, categorical=True)
    frame = read_manifest(dataset)
    frame["split"] = frame["site"].map({"siteA": "train"}).fillna("val")
    write_manifest(frame, dataset)
    with pytest.raises(ValueError, match=r"siteA_20210101.tif.*unknown class values \[7\]"):
        _module(dataset).setup("fit")


def test_mask_on_another_grid_is_an_error_naming_both_files(dataset):
    path = dataset / "masks" / "siteC_20210101.tif"
    with rasterio.open(path) as src:
        mask = src.read(1)
    write_cog(path, mask, scene_grid(5, mask.shape[0]), nodata=IGNORE_INDEX, categorical=True)
    with pytest.raises(ValueError, match=r"siteC_20210101.tif is not on the grid"):
        _module(dataset).setup()


def test_empty_split_is_an_error_naming_the_split(tmp_path):
    root = build_dataset(tmp_path / "ds", SITES, splits=dict.fromkeys(SITES, "train"))
    with pytest.raises(ValueError, match="val split .* has no accepted scenes"):
        _module(root).setup("fit")


def test_band_missing_from_a_scene_names_the_scene(tmp_path):
    root = build_dataset(tmp_path / "ds", SITES)
    build_dataset(root, {"siteZ": 1}, bands=("B02", "B03"))
    with pytest.raises(ValueError, match=r"siteZ_20210101.*\['B04', 'B08', 'B11'\]"):
        _module(root).setup()


def test_rejected_scenes_are_not_used(tmp_path):
    root = build_dataset(tmp_path / "ds", SITES, rejected=("siteA_20210101",))
    dm = _module(root)
    dm.setup()
    used = {r.scene_id for records in dm.records.values() for r in records}
    assert "siteA_20210101" not in used and "siteA_20210102" in used


def test_chip_shares_draw_each_label_source_its_share(dataset, caplog):
    frame = read_manifest(dataset)
    frame.loc[frame["site"] == "siteB", "label_source"] = "consensus"
    write_manifest(frame, dataset)
    by_area = _module(dataset)
    by_area.setup("fit")
    records = by_area.records["train"]
    is_consensus = torch.tensor([r.label_source == "consensus" for r in records])
    assert 0 < is_consensus.sum() < len(records)
    weights = by_area.datasets["train"].weights
    areas = torch.tensor([float(r.height * r.width) for r in records])
    torch.testing.assert_close(weights, (areas / areas.sum()).double())
    shared = _module(dataset, chip_shares={"consensus": 0.6})
    shared.setup("fit")
    weights = shared.datasets["train"].weights
    assert float(weights[is_consensus].sum()) == pytest.approx(0.6)
    assert float(weights.sum()) == pytest.approx(1.0)
    # the unnamed source keeps its scenes in proportion to their area
    others = weights[~is_consensus] / areas[~is_consensus]
    torch.testing.assert_close(others, others[:1].expand_as(others))
    for shares, message in (
        ({"consenus": 0.2}, "not label sources"),
        ({"consensus": 1.0}, "together < 1"),
    ):
        with pytest.raises(ValueError, match=message):
            _module(dataset, chip_shares=shares).setup("fit")
    # a source no scene has (a mix built without real scenes): a warning, then by area
    with caplog.at_level(logging.WARNING, logger="cloudseg.data.dataset"):
        absent = _module(dataset, chip_shares={"hand": 0.2})
        absent.setup("fit")
    assert "no training scene has label source ['hand']" in caplog.text
    torch.testing.assert_close(absent.datasets["train"].weights, by_area.datasets["train"].weights)


def test_seeded_runs_repeat_their_augmented_chips(dataset):
    batches = []
    for _ in range(2):
        torch.manual_seed(7)
        dm = _module(dataset, augment={"radiometric_p": 1.0})
        dm.setup("fit")
        batches.append(next(iter(dm.train_dataloader())))
    assert torch.equal(batches[0]["image"], batches[1]["image"])
    assert torch.equal(batches[0]["mask"], batches[1]["mask"])


@pytest.mark.parametrize("kept_bytes", [100, 600])  # header cut / tiles cut
def test_a_damaged_mask_names_its_full_path_and_that_it_is_the_mask(dataset, kept_bytes):
    """Issue 19.7: image and mask share their base name, so the error says which file it is."""
    path = dataset / "masks" / "siteA_20210101.tif"
    path.write_bytes(path.read_bytes()[:kept_bytes])
    with pytest.raises(SceneError) as error:
        dm = _module(dataset, cache_scenes=False)
        dm.setup("fit")
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            for _ in loader:
                pass
    message = str(error.value)
    assert f"Scene siteA_20210101: its mask file {path} cannot be read" in message
    assert "damaged or truncated" in message and "manifest.csv" in message
