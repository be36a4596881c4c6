"""The simulator's products on disk: the labeled set, the time-series stack with its truth, the
overlapping tiles and the command line, read back with rasterio and the manifest reader."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio

from cloudseg.data.manifest import read_manifest
from cloudseg.data.simulate import (
    get_site,
    labeled_set_plan,
    write_labeled_set,
    write_overlapping_tiles,
    write_stack,
)
from cloudseg.data.simulate.cli import main
from cloudseg.labels import CLEAR, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.radiometry import dn_to_reflectance, offset_from_metadata

SCENE_TAGS = {"SENSING_TIME", "PROCESSING_BASELINE", "TILE_ID", "SPACECRAFT", "SUN_AZIMUTH",
              "SUN_ELEVATION"}  # fmt: skip


def read(path):
    """(pixels, tags, file facts) of a GeoTIFF."""
    with rasterio.open(path) as dataset:
        facts = SimpleNamespace(
            crs=dataset.crs,
            transform=dataset.transform,
            nodata=dataset.nodata,
            dtypes=dataset.dtypes,
            descriptions=dataset.descriptions,
        )
        return dataset.read(), dataset.tags(), facts


# -- labeled set -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labeled")
    write_labeled_set(root, n_scenes=20, size=96, seed=0, progress=False)
    return root, read_manifest(root)


def test_labeled_set_is_a_valid_dataset_of_georeferenced_scenes(labeled):
    root, manifest = labeled
    assert len(manifest) == 20
    assert set(manifest["label_source"]) == {"simulated"}
    assert manifest["site"].nunique() == 8
    assert set(manifest["bands"]) == {" ".join(L1C_BANDS)}
    for row in manifest.head(5).itertuples():
        dn, tags, image = read(root / row.image_path)
        mask, _, mask_file = read(root / row.mask_path)
        site = get_site(row.site)
        assert image.crs == site.crs and image.dtypes[0] == "uint16" and image.nodata == 0
        assert image.descriptions == L1C_BANDS
        assert mask_file.transform == image.transform and mask_file.nodata == IGNORE_INDEX
        # the grid is a window of the site's tile on its 10 m lattice
        assert (image.transform.c - site.tile_origin[0]) % 10 == 0
        assert (site.tile_origin[1] - image.transform.f) % 10 == 0
        assert set(tags) >= SCENE_TAGS and tags["PROCESSING_BASELINE"] == row.processing_baseline
        assert tags["SENSING_TIME"].startswith(row.date) and tags["TILE_ID"] == site.tile_id
        assert set(np.unique(mask)) <= {0, 1, 2, 3, IGNORE_INDEX}
        np.testing.assert_array_equal(dn[0] == 0, mask[0] == IGNORE_INDEX)


def test_labeled_set_plan_replays_the_written_scenes(labeled):
    root, manifest = labeled
    plan = labeled_set_plan(n_scenes=20, size=96, seed=0)
    assert sorted(planned.scene_id for planned in plan) == sorted(manifest["scene_id"])
    for planned in plan[:3]:
        row = manifest.set_index("scene_id").loc[planned.scene_id]
        mask, _, facts = read(root / row["mask_path"])
        scene = planned.render()
        assert facts.transform == scene.grid.transform
        np.testing.assert_array_equal(mask[0], scene.mask)
    with pytest.raises(ValueError, match="exceeds"):
        labeled_set_plan(n_scenes=1, size=100_000)


def test_a_set_without_b10_labels_ignores_only_the_cirrus_only_pixels(labeled, tmp_path):
    root, manifest = labeled
    main(["labeled", "--out", str(tmp_path), "--n-scenes", "20", "--size", "96",
          "--ignore-cirrus-only", "--no-progress"])  # fmt: skip
    plan = {planned.scene_id: planned for planned in labeled_set_plan(20, 96, 0)}
    ignored = 0
    for row in manifest.itertuples():
        image, _, _ = read(root / row.image_path)
        np.testing.assert_array_equal(read(tmp_path / row.image_path)[0], image)
        labels, changed = read(root / row.mask_path)[0][0], read(tmp_path / row.mask_path)[0][0]
        planned = plan[row.scene_id]
        cirrus_only = planned.world.cirrus_only(planned.render())
        np.testing.assert_array_equal(changed[~cirrus_only], labels[~cirrus_only])
        assert (changed[cirrus_only] == IGNORE_INDEX).all()
        assert (labels[cirrus_only] == THIN_CLOUD).all()
        ignored += int(cirrus_only.sum())
    assert ignored > 0


def test_labeled_set_mixes_baselines_with_their_dn_offset(labeled):
    root, manifest = labeled
    baselines = set(manifest["processing_baseline"])
    assert "04.00" in baselines and len(baselines) >= 3
    for row in manifest.itertuples():
        dn, _, _ = read(root / row.image_path)
        valid_dn = dn[dn > 0]
        if row.processing_baseline == "04.00":
            assert valid_dn.min() >= 1000  # reflectance 0 is stored as DN 1000
        else:
            assert valid_dn.min() < 1000  # dark bands (B10, water) sit far below 0.1


def test_labeled_set_has_a_realistic_cloud_fraction_distribution(labeled):
    root, manifest = labeled
    cloud_fractions, nodata_fractions = [], []
    for row in manifest.itertuples():
        mask, _, _ = read(root / row.mask_path)
        valid = mask != IGNORE_INDEX
        cloud_fractions.append(float(np.isin(mask[valid], [THICK_CLOUD, THIN_CLOUD]).mean()))
        nodata_fractions.append(float((~valid).mean()))
    fractions = np.array(cloud_fractions)
    assert (fractions < 0.02).sum() >= 3  # clear scenes (15 %)
    assert (fractions > 0.8).sum() >= 3  # overcast scenes (20 %)
    assert ((fractions > 0.02) & (fractions < 0.8)).sum() >= 8  # mostly partly cloudy
    assert max(nodata_fractions) < 0.8 and sum(f > 0 for f in nodata_fractions) >= 2


# -- stack -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    path = write_stack(root, n_dates=6, size=64, seed=0, start="2021-10-01", end="2022-05-31",
                       progress=False)  # fmt: skip
    return root, json.loads(path.read_text())


def test_stack_describes_and_writes_every_date(stack):
    root, description = stack
    site = get_site(description["site"])
    assert len(description["dates"]) == 6 and description["tile_id"] == site.tile_id
    assert description["grid"]["crs"] == site.crs.to_string()
    dates = [entry["date"] for entry in description["dates"]]
    assert dates == sorted(dates) and len(set(dates)) == 6
    for entry in description["dates"]:
        dn, tags, scene = read(root / entry["scene"])
        mask, _, _ = read(root / entry["mask"])
        surface, surface_tags, _ = read(root / entry["surface"])
        assert entry["scene"] == f"scenes/{entry['date']}.tif"
        assert dn.shape == surface.shape == (13, 64, 64) and mask.shape == (1, 64, 64)
        assert set(tags) >= SCENE_TAGS and scene.descriptions == L1C_BANDS
        assert list(scene.transform)[:6] == description["grid"]["transform"]
        assert offset_from_metadata(surface_tags) == 0.0
        assert entry["nodata_fraction"] == pytest.approx((mask == IGNORE_INDEX).mean(), abs=1e-4)


def test_stack_offsets_must_be_harmonised_to_match_the_truth(stack):
    """Scenes from 2022-01-25 on carry baseline 04.00 and its -1000 DN offset: reading their
    offset from the tags recovers the true surface on clear pixels; ignoring it is 0.1 off."""
    root, description = stack
    baselines = {entry["processing_baseline"] for entry in description["dates"]}
    assert "04.00" in baselines and len(baselines) > 1
    nir = L1C_BANDS.index("B08")
    checked = set()
    for entry in description["dates"]:
        dn, tags, _ = read(root / entry["scene"])
        surface, _, _ = read(root / entry["surface"])
        mask, _, _ = read(root / entry["mask"])
        clear = mask[0] == CLEAR
        if clear.sum() < 100:
            continue
        truth = dn_to_reflectance(surface[nir])[clear]
        harmonised = dn_to_reflectance(dn[nir], offset_from_metadata(tags))[clear]
        raw = dn_to_reflectance(dn[nir])[clear]
        assert abs(np.median(harmonised - truth)) < 0.02
        expected_bias = 0.1 if tags["PROCESSING_BASELINE"] == "04.00" else 0.0
        assert np.median(raw - truth) == pytest.approx(expected_bias, abs=0.02)
        checked.add(tags["PROCESSING_BASELINE"] == "04.00")
    assert checked == {True, False}, "need clear pixels on dates of both kinds of baseline"


# -- overlapping tiles -----------------------------------------------------------------------


def test_overlapping_tiles_are_identical_on_their_overlap(tmp_path):
    path = write_overlapping_tiles(tmp_path, n_dates=2, size=48, overlap=18, seed=0,
                                   progress=False)  # fmt: skip
    description = json.loads(path.read_text())
    row_a, col_a, height, width = description["overlap_windows"]["tile_a"]
    row_b, col_b, _, _ = description["overlap_windows"]["tile_b"]
    stacks = {name: json.loads((tmp_path / tile["stack"]).read_text())
              for name, tile in description["tiles"].items()}  # fmt: skip
    assert stacks["tile_a"]["tile_id"] != stacks["tile_b"]["tile_id"]
    for entry_a, entry_b in zip(stacks["tile_a"]["dates"], stacks["tile_b"]["dates"], strict=True):
        assert entry_a["date"] == entry_b["date"]
        for kind in ("surface", "scene", "mask"):
            a, _, grid_a = read(tmp_path / "tile_a" / entry_a[kind])
            b, _, grid_b = read(tmp_path / "tile_b" / entry_b[kind])
            np.testing.assert_array_equal(
                a[:, row_a : row_a + height, col_a : col_a + width],
                b[:, row_b : row_b + height, col_b : col_b + width],
            )
            assert grid_b.transform.c - grid_a.transform.c == (48 - 18) * 10
            if kind == "surface":  # elsewhere the tiles show different ground
                assert not np.array_equal(a[:, :, :width], b[:, :, :width])


# -- determinism and the command line --------------------------------------------------------


def test_rewriting_a_stack_folder_leaves_no_scene_of_the_old_stack(tmp_path):
    write_stack(tmp_path, n_dates=3, size=16, seed=1, progress=False)
    path = write_stack(tmp_path, n_dates=2, size=16, seed=2, progress=False)
    dates = {entry["date"] for entry in json.loads(path.read_text())["dates"]}
    for folder in ("scenes", "truth/masks", "truth/surface"):
        assert {p.stem for p in (tmp_path / folder).glob("*.tif")} == dates


def test_same_seed_writes_identical_bytes(tmp_path):
    paths = [write_stack(tmp_path / name, n_dates=2, size=32, seed=seed, progress=False)
             for name, seed in (("a", 3), ("b", 3), ("c", 4))]  # fmt: skip
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tif"))
    assert len(files) == 6
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert paths[0].read_text() == paths[1].read_text() != paths[2].read_text()


def test_cli_writes_a_stack_and_reports_it(tmp_path, capsys):
    assert main(["stack", "--out", str(tmp_path), "--n-dates", "2", "--size", "24",
                 "--no-progress"]) == 0  # fmt: skip
    assert "stack.json" in capsys.readouterr().out
    assert len(list((tmp_path / "scenes").glob("*.tif"))) == 2
    with pytest.raises(SystemExit, match="Cannot pick 5000 dates"):
        main(["stack", "--out", str(tmp_path / "x"), "--n-dates", "5000", "--no-progress"])


def test_module_entry_point_lists_the_sites():
    result = subprocess.run([sys.executable, "-m", "cloudseg.data.simulate", "sites"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert "sim-site01" in result.stdout and "sim-site08" in result.stdout


def test_labeled_into_an_existing_set_is_refused_unless_merge(tmp_path, capsys):
    """Issue 19.8: `cloudfree-simulate labeled --out <existing set>` would merge into it."""
    out = tmp_path / "labeled"
    argv = ["labeled", "--out", str(out), "--n-scenes", "2", "--size", "32", "--no-progress"]
    assert main(argv) == 0
    before = (out / "manifest.csv").read_bytes()
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--seed", "1"])
    assert str(refused.value) == (
        f"cloudfree-simulate labeled: --out {out} already holds a labeled set "
        f"({out / 'manifest.csv'}, 2 scenes); the new scenes would be merged into it. Choose a "
        "new --out, delete the folder first, or pass --merge to add to it."
    )
    assert (out / "manifest.csv").read_bytes() == before
    assert main([*argv, "--seed", "1", "--n-scenes", "3", "--merge"]) == 0
    assert len(read_manifest(out)) == 5  # another seed: other dates, so other scene ids
