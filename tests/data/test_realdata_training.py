"""Training data from real scenes: the spectral library, clouds rendered on real backgrounds,
coarser ground sampling distances and training mixes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
from affine import Affine

from cloudseg.data.importers.curation import CurationList
from cloudseg.data.manifest import DatasetWriter, read_manifest
from cloudseg.data.mix import write_mixed_dataset
from cloudseg.data.realdata import cli
from cloudseg.data.realdata.backgrounds import (
    CLOUD_TILT,
    HUMID_VEIL_B10_GAIN,
    RenderExtras,
    path_reflectance,
    random_atmosphere,
    render_on_background,
    write_background_set,
)
from cloudseg.data.realdata.build_library import build_library, classify_land
from cloudseg.data.realdata.curated import consensus_labels, write_curated_set
from cloudseg.data.realdata.detectors import run_detectors
from cloudseg.data.realdata.scenes import LoadedScene, ProducerScene, find_real_scenes
from cloudseg.data.simulate import simulate_scene
from cloudseg.data.simulate.atmosphere import RAYLEIGH_PATH, Atmosphere, CloudLayer
from cloudseg.data.simulate.library import LAND_TYPES, SpectralLibrary
from cloudseg.data.simulate.products import write_labeled_set
from cloudseg.data.simulate.scale import block_mean, block_mode, coarser_grid
from cloudseg.data.simulate.scene import World
from cloudseg.data.simulate.surface import SPECTRA
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD, THIN_CLOUD
from cloudseg.sentinel2.bands import L1C_BANDS
from cloudseg.sentinel2.errors import SceneError
from cloudseg.sentinel2.grid import Grid, processing_grid

GRID = Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 4800000), 12, 12)


def tiny_library() -> SpectralLibrary:
    rng = np.random.default_rng(0)
    land = np.repeat([LAND_TYPES.index("crops"), LAND_TYPES.index("red_soil")], 40)
    spectra = np.where(land[:, None] == land[0], SPECTRA[0], SPECTRA[2]) * 1.3
    spectra = spectra + rng.normal(0, 0.005, spectra.shape)
    return SpectralLibrary(spectra.astype(np.float32), land.astype(np.int16),
                           np.repeat([0, 1], 40).astype(np.int16), ("a", "b"), {})  # fmt: skip


def test_block_mean_mode_and_grid():
    values = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert block_mean(values, 3).tolist() == [[7.0, 10.0], [25.0, 28.0]]
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = [[1, 1], [1, 0]]
    mask[:2, 2:] = IGNORE_INDEX  # ignore only where it is the majority
    mask[2:, :2] = [[3, 3], [255, 255]]  # a tie goes to the lower code
    assert block_mode(mask, 2).tolist() == [[1, 255], [3, 0]]
    coarse = coarser_grid(GRID, 3)
    assert coarse.shape == (4, 4) and coarse.resolution == 30 and coarse.bounds == GRID.bounds


def test_producer_scene_reads_block_means_on_whole_multiple_grids():
    values = np.arange(2 * 7 * 7, dtype=np.float32).reshape(2, 7, 7) / 1000
    values[1, 0, 0] = np.nan  # nodata in one band: that block is NaN
    grid = Grid("EPSG:32631", Affine(10, 0, 399960, 0, -10, 4800000), 7, 7)
    loaded = LoadedScene("tiny", ("B02", "B03"), values, grid, 10.0, "l2a")
    scene = ProducerScene(loaded)
    assert scene.read_reflectance(["B02"]).tolist() == values[:1].tolist()
    coarse = processing_grid(grid, 30.0)
    assert coarse.shape == (3, 3)
    read = scene.read_reflectance(["B02", "B03"], grid=coarse)
    assert np.allclose(read[0, :2, :2], block_mean(values[0], 3))  # whole blocks: block means
    assert np.isclose(read[0, 2, 2], values[0, 6, 6])  # past the edge: the pixels it covers
    assert np.isclose(read[0, 0, 2], values[0, 0:3, 6].mean())
    assert np.isnan(read[1, 0, 0]) and np.isfinite(read[1, 0, 1])
    dn = scene.read(["B03"])[0]
    assert dn[0, 0] == 0 and dn[0, 1] == round(values[1, 0, 1] * 10000)
    with pytest.raises(SceneError, match="whole multiple"):
        scene.read_reflectance(["B02"], grid=grid.with_resolution(25.0))
    with pytest.raises(SceneError, match="no band"):
        scene.read(["SCL"])


def test_detectors_run_as_registry_producers_on_a_real_scene(realdata):
    (scene,) = find_real_scenes(realdata / "l1c-T31TDH-20150726", verbose=False)
    masks = run_detectors(scene)
    assert sorted(masks) == ["s2cloudless", "ukis"]
    for mask in masks.values():
        assert mask.shape == scene.grid.shape and mask.dtype == np.uint8
    # each works at whole blocks: ukis-csmask 3 x 3 (30 m), s2cloudless 6 x 6 (60 m) pixels
    assert (
        masks["ukis"].reshape(100, 3, 100, 3) == masks["ukis"][::3, ::3][:, None, :, None]
    ).all()
    s2 = masks["s2cloudless"]
    assert (s2.reshape(50, 6, 50, 6) == s2[::6, ::6][:, None, :, None]).all()


def test_library_draw_is_deterministic_real_and_randomised(tmp_path):
    library = tiny_library()
    path = library.save(tmp_path / "library.npz")
    loaded = SpectralLibrary.load(path)
    first = loaded.draw(SPECTRA, np.random.default_rng(5))
    assert np.array_equal(first, loaded.draw(SPECTRA, np.random.default_rng(5)))
    assert not np.array_equal(first, loaded.draw(SPECTRA, np.random.default_rng(6)))
    # vegetation comes from the library (1.3 x the built-in, within gain and haze), snow does not
    assert abs(first[0, 7] / SPECTRA[0, 7] - 1.3) < 0.3
    assert abs(first[6, 2] - SPECTRA[6, 2]) < 0.15
    with pytest.raises(FileNotFoundError, match="cloudseg.data.realdata library"):
        SpectralLibrary.load(tmp_path / "missing.npz")


def test_simulator_with_library_is_deterministic_and_keeps_labels():
    library = tiny_library()
    grid = World("sim-site01").site.window_grid(0, 0, 48, 48)
    renders = [World("sim-site01", 0, library).render(grid, "2021-06-11") for _ in range(2)]
    builtin = simulate_scene("sim-site01", "2021-06-11", grid=grid)
    assert np.array_equal(renders[0].reflectance, renders[1].reflectance, equal_nan=True)
    assert not np.allclose(renders[0].surface, builtin.surface)
    assert np.array_equal(renders[0].mask, builtin.mask)  # same atmosphere, same truth


def test_labeled_set_cycles_over_ground_sampling_distances(tmp_path):
    write_labeled_set(tmp_path, n_scenes=2, size=96, gsds=(10, 60), progress=False)
    frame = read_manifest(tmp_path).set_index("scene_id")
    sizes = {}
    for scene_id, row in frame.iterrows():
        with rasterio.open(tmp_path / row["image_path"]) as image:
            sizes[scene_id.rsplit("_", 1)[1]] = (image.shape, image.res[0])
    assert sizes == {"10m": ((96, 96), 10.0), "60m": ((16, 16), 60.0)}


def test_background_labels_match_what_was_rendered():
    surface = np.tile(SPECTRA[2][:, None, None], (1, 64, 96)).astype(np.float32)
    surface[5:8] = np.nan  # bands a 4- or 6-band scene lacks stay missing
    clear = np.ones((64, 96), bool)
    clear[:, :10] = False  # a real cloud in the background
    cloud = CloudLayer("cumulus", coverage=0.3, height_km=1.5, optical_depth=40.0, key=7)
    atmosphere = Atmosphere("partly", clouds=(cloud,))
    toa, mask = render_on_background(surface, clear, 30.0, atmosphere, 140.0, 40.0)
    again = render_on_background(surface, clear, 30.0, atmosphere, 140.0, 40.0)
    assert np.array_equal(toa, again[0], equal_nan=True) and np.array_equal(mask, again[1])
    assert np.isnan(toa[5:8]).all() and np.isfinite(toa[:5]).all()
    cols = (np.arange(96) + 0.5) * 3.0
    rows = (np.arange(64) + 0.5) * 3.0
    depth = cloud.optical_depth_field(cols, rows)
    known = clear & (depth == 0)
    untouched = known & np.isclose(toa[3], surface[3])  # no cloud above, no shadow on it
    assert untouched.any() and (mask[untouched] == CLEAR).all()
    assert (mask[clear & (depth >= 5)] == THICK_CLOUD).all()
    assert (mask[(depth > 0) & (depth < 0.5) & clear] != THICK_CLOUD).all()
    assert set(np.unique(mask[~clear])) <= {THICK_CLOUD, IGNORE_INDEX}
    assert (mask == CLOUD_SHADOW).any() and (mask == THICK_CLOUD).any()
    assert THIN_CLOUD in mask  # soft cumulus fringes


def test_shadows_on_top_of_atmosphere_backgrounds_keep_the_path_reflectance():
    surface = (
        np.tile(SPECTRA[2][:, None, None], (1, 64, 96)).astype(np.float32)
        + RAYLEIGH_PATH[:, None, None]
    )
    clear = np.ones((64, 96), bool)
    cloud = CloudLayer("cumulus", coverage=0.3, height_km=1.5, optical_depth=40.0, key=7)
    atmosphere = Atmosphere("partly", clouds=(cloud,))
    l1c = LoadedScene(
        "toa", L1C_BANDS, surface, Grid("EPSG:32631", GRID.transform, 64, 96), 30.0, "l1c"
    )
    path = path_reflectance(l1c, surface, clear)
    np.testing.assert_allclose(path, RAYLEIGH_PATH)  # below the scene's darkest pixels
    np.testing.assert_array_equal(
        path_reflectance(replace(l1c, product_level="l2a"), surface, clear), 0.0
    )
    dark = surface.copy()
    dark[1] = 0.02  # a blue darker than the nominal path bounds it
    assert path_reflectance(l1c, dark, clear)[1] == np.float32(0.02)
    whole, mask = render_on_background(surface, clear, 30.0, atmosphere, 140.0, 40.0)
    kept, mask_kept = render_on_background(surface, clear, 30.0, atmosphere, 140.0, 40.0, path=path)
    np.testing.assert_array_equal(mask, mask_kept)
    depth = cloud.optical_depth_field((np.arange(96) + 0.5) * 3.0, (np.arange(64) + 0.5) * 3.0)
    shadow = (mask == CLOUD_SHADOW) & (depth == 0)  # no cloud between it and the sensor
    assert shadow.sum() > 50
    ground = (surface - path[:, None, None])[1][shadow]
    # the ground's part is darkened alike; the path's is not
    np.testing.assert_allclose(
        (kept[1][shadow] - path[1]) / ground, whole[1][shadow] / surface[1][shadow], rtol=1e-4
    )
    assert (kept[1][shadow] > whole[1][shadow] + 0.014).all()  # >= 0.05 x half blocked x 0.58
    lit = (mask == CLEAR) & np.isclose(whole[3], surface[3])
    np.testing.assert_allclose(kept[:, lit], whole[:, lit], rtol=1e-5)


def test_random_atmospheres_are_deterministic_by_key():
    assert random_atmosphere(3) == random_atmosphere(3)
    assert random_atmosphere(3) != random_atmosphere(4)


VEIL = RenderExtras(veil_share=1.0)


def test_a_veil_is_added_on_its_own_stream_and_rendered_as_thin_cloud():
    plain = [random_atmosphere(key) for key in range(40)]
    veiled = [random_atmosphere(key, RenderExtras(veil_share=1.0)) for key in range(40)]
    assert random_atmosphere(5, VEIL) == random_atmosphere(5, VEIL)
    for (atmosphere, *sun), (with_veil, *sun_too) in zip(plain, veiled, strict=True):
        assert sun == sun_too  # everything else drawn as without a veil
        (veil,) = set(with_veil.clouds) - set(atmosphere.clouds)
        assert veil.kind == "stratus" and 1.0 <= veil.optical_depth <= 5.0
    assert [random_atmosphere(key, RenderExtras(veil_share=0.0)) for key in range(40)] == plain
    # rendered alone over clear ground: a flat, B10-dim veil labelled thin cloud where it lies
    (drawn,) = set(veiled[0][0].clouds) - set(plain[0][0].clouds)
    veil = replace(drawn, coverage=1.0, optical_depth=3.0)
    surface = np.tile(SPECTRA[2][:, None, None], (1, 64, 64)).astype(np.float32)
    toa, mask = render_on_background(
        surface, np.ones((64, 64), bool), 10.0, Atmosphere("overcast", clouds=(veil,)), 140.0, 40.0
    )
    covered = veil.optical_depth_field((np.arange(64) + 0.5), (np.arange(64) + 0.5)) >= 0.5
    assert covered.mean() > 0.5 and (mask[covered] == THIN_CLOUD).all()
    added = (toa - surface)[:, covered].mean(axis=1)
    assert added[1] > 0.1 and added[10] < 0.1 * added[1]  # bright in the blue, dim in B10
    # a humid veil: its B10 gain drawn from the range given, not from its height
    humid = [random_atmosphere(key, RenderExtras(1.0, HUMID_VEIL_B10_GAIN))[0] for key in range(40)]
    gains = [c.b10_gain for a in humid for c in a.clouds if c.b10_gain is not None]
    assert len(gains) == 40 and all(0.0 <= g <= 0.02 for g in gains) and len(set(gains)) == 40
    assert all(c.b10_gain is None for a, *_ in veiled for c in a.clouds)
    dry = replace(veil, b10_gain=None).spectrum()
    assert replace(veil, b10_gain=0.001).spectrum()[10] == np.float32(0.001) < dry[10]


def test_dense_haze_is_drawn_on_its_own_stream_and_labelled_clear():
    plain = [random_atmosphere(key, RenderExtras(veil_share=0.5)) for key in range(30)]
    hazy = [
        random_atmosphere(key, RenderExtras(veil_share=0.5, haze_share=1.0)) for key in range(30)
    ]
    for (atmosphere, *rest), (with_haze, *rest_too) in zip(plain, hazy, strict=True):
        assert rest == rest_too and with_haze.clouds == atmosphere.clouds
        assert 0.04 <= with_haze.haze.strength <= 0.12
    surface = np.tile(SPECTRA[2][:, None, None], (1, 64, 64)).astype(np.float32)
    toa, mask = render_on_background(
        surface, np.ones((64, 64), bool), 10.0, replace(hazy[0][0], clouds=(), cirrus=None),
        140.0, 40.0,
    )  # fmt: skip
    assert (mask == CLEAR).all()
    added = (toa - surface).mean(axis=(1, 2))
    assert added[1] > 0.02 and added[1] > 2 * added[7] > 0  # the blue far more than the NIR


def test_faint_cirrus_is_drawn_on_its_own_stream_and_labelled_thin_from_its_threshold():
    plain = [random_atmosphere(key, RenderExtras(veil_share=0.5)) for key in range(30)]
    cirrus = [
        random_atmosphere(key, RenderExtras(veil_share=0.5, cirrus_share=1.0)) for key in range(30)
    ]
    for (atmosphere, *rest), (with_cirrus, *rest_too) in zip(plain, cirrus, strict=True):
        assert rest == rest_too and with_cirrus.clouds == atmosphere.clouds
        assert with_cirrus.haze == atmosphere.haze
        assert 0.03 <= with_cirrus.cirrus.reflectance <= 0.08
    surface = np.tile(SPECTRA[2][:, None, None], (1, 96, 96)).astype(np.float32)
    alone = replace(cirrus[0][0], clouds=(), haze=None)
    toa, mask = render_on_background(surface, np.ones((96, 96), bool), 10.0, alone, 140.0, 40.0)
    field = alone.cirrus.reflectance_field(np.arange(96) + 0.5, np.arange(96) + 0.5)
    assert (field >= 0.02).any() and (field < 0.02).any()
    np.testing.assert_array_equal(mask, np.where(field >= 0.02, THIN_CLOUD, CLEAR))
    with pytest.raises(ValueError, match="cirrus_share"):
        RenderExtras(cirrus_share=1.5)


def test_cloud_colour_is_drawn_on_its_own_stream_and_keeps_the_labels():
    plain = [random_atmosphere(key, RenderExtras(veil_share=0.5)) for key in range(30)]
    tilted = [
        random_atmosphere(key, RenderExtras(veil_share=0.5, tilt_share=1.0)) for key in range(30)
    ]
    tilts = []
    for (atmosphere, *rest), (with_tilt, *rest_too) in zip(plain, tilted, strict=True):
        assert rest == rest_too and (with_tilt.haze, with_tilt.cirrus) == (
            atmosphere.haze,
            atmosphere.cirrus,
        )
        assert [replace(c, tilt=0.0) for c in with_tilt.clouds] == list(atmosphere.clouds)
        tilts += [c.tilt for c in with_tilt.clouds]
    assert len(set(tilts)) == len(tilts) > 20 and all(
        CLOUD_TILT[0] <= t <= CLOUD_TILT[1] for t in tilts
    )
    # rendered over clear ground: the same labels, a redder or bluer cloud, B10 as it was
    layer = CloudLayer("stratus", 1.0, 1.5, 30.0, key=7)
    surface = np.tile(SPECTRA[2][:, None, None], (1, 64, 64)).astype(np.float32)
    renders = {}
    for tilt in (-0.3, 0.0, 0.3):
        atmosphere = Atmosphere("partly", clouds=(replace(layer, tilt=tilt),))
        renders[tilt] = render_on_background(
            surface, np.ones((64, 64), bool), 10.0, atmosphere, 140.0, 40.0
        )
    np.testing.assert_array_equal(renders[-0.3][1], renders[0.0][1])
    np.testing.assert_array_equal(renders[0.3][1], renders[0.0][1])
    cloud = renders[0.0][1] == THICK_CLOUD
    assert cloud.mean() > 0.05
    nir_over_blue = {t: (toa[7][cloud] / toa[1][cloud]).mean() for t, (toa, _) in renders.items()}
    assert nir_over_blue[-0.3] < 0.9 * nir_over_blue[0.0] < 0.81 * nir_over_blue[0.3]
    np.testing.assert_array_equal(renders[0.3][0][[1, 10]], renders[0.0][0][[1, 10]])  # B02, B10
    with pytest.raises(ValueError, match="tilt_share"):
        RenderExtras(tilt_share=-0.1)


def test_backgrounds_command_passes_its_render_options(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "load_sources", lambda sources: ["scene"])
    monkeypatch.setattr(
        cli, "write_background_set", lambda *args, **kwargs: calls.append(kwargs) or tmp_path / "m"
    )
    options = ["--veil-share", "0.25", "--cirrus-share", "0.5", "--tilt-share", "0.75"]
    cli.main(["backgrounds", "--source", "s", "--out", "o", *options, "--keep-path"])
    cli.main(["backgrounds", "--source", "s", "--out", "o"])
    assert calls[0]["extras"] == RenderExtras(veil_share=0.25, cirrus_share=0.5, tilt_share=0.75)
    assert calls[0]["keep_path"] is True
    assert calls[1]["extras"] == RenderExtras() and calls[1]["keep_path"] is False


def test_land_types_follow_the_rules():
    pixels = np.stack([SPECTRA[0], SPECTRA[3], SPECTRA[4], SPECTRA[6]], axis=1)[:, None, :]
    codes = classify_land(pixels.astype(np.float32), gsd_m=60.0)[0]
    assert [LAND_TYPES[c] for c in codes] == ["forest", "desert", "dark_water", "snow"]


def test_library_and_backgrounds_from_real_scenes(realdata, tmp_path):
    scenes = find_real_scenes(realdata / "eolearn-5dates")[1:3]  # one cloudy, one clear date
    first, second = build_library(scenes, verbose=False), build_library(scenes, verbose=False)
    assert np.array_equal(first.spectra, second.spectra) and first.scenes == ("eolearn-5dates/2",)
    assert first.counts()["forest"] > 0
    manifest = write_background_set(scenes, tmp_path, renders_per_view=1, verbose=False)
    frame = read_manifest(manifest.parent)
    assert frame["scene_id"].tolist() == ["eolearn-5dates-2_10m_00"]
    assert (frame["split"] == "train").all() and (frame["label_source"] == "real_background").all()


def write_dataset(root, names, bands):
    with DatasetWriter(root) as writer:
        for index, name in enumerate(names):
            writer.add(name, np.full((len(bands), 12, 12), 1000 + index, np.uint16),
                       np.zeros((12, 12), np.uint8), GRID, bands, site=f"{name}-site",
                       date="2021-01-01", label_source="simulated")  # fmt: skip


def test_mix_lists_sources_with_their_own_splits_and_bands(tmp_path):
    write_dataset(tmp_path / "sim", [f"s{i}" for i in range(6)], ("B02", "B03", "B04", "B08"))
    write_dataset(tmp_path / "real", ["r0"], ("B02", "B03"))
    mix = write_mixed_dataset(tmp_path / "mix", [tmp_path / "sim", tmp_path / "real"])
    frame = read_manifest(mix.parent)
    assert len(frame) == 7 and frame["image_path"].str.startswith("../").all()
    assert set(frame["split"]) == {"train", "val", "test"}
    only4 = write_mixed_dataset(tmp_path / "mix4", [tmp_path / "sim", tmp_path / "real"],
                                bands=["B02", "B08"])  # fmt: skip
    assert "r0" not in read_manifest(only4.parent)["scene_id"].tolist()
    with pytest.raises(ValueError, match="repeat"):
        write_mixed_dataset(tmp_path / "mix2", [tmp_path / "sim", tmp_path / "sim"])


def test_consensus_labels_ignore_disagreement():
    ukis = np.array([[CLEAR, THICK_CLOUD, CLEAR, CLOUD_SHADOW, IGNORE_INDEX]], np.uint8)
    s2cloudless = np.array([[CLEAR, THICK_CLOUD, THICK_CLOUD, CLEAR, CLEAR]], np.uint8)
    labels = consensus_labels({"ukis": ukis, "s2cloudless": s2cloudless})
    # agreement kept; cloud vs clear disputed; s2cloudless cannot say shadow, so ukis decides it
    assert labels.tolist() == [[CLEAR, THICK_CLOUD, IGNORE_INDEX, CLOUD_SHADOW, IGNORE_INDEX]]


def test_curated_set_follows_the_curation_list(realdata, tmp_path):
    scenes = [s for s in find_real_scenes(realdata) if s.name in (
        "eolearn-5dates/0", "eolearn-5dates/2", "l2a-cloudcover-chips/akny")]  # fmt: skip
    listed = tmp_path / "curation.csv"
    listed.write_text("scene_id,decision,reason\neolearn-5dates-0,accept,overcast\n")
    manifest = write_curated_set(scenes, tmp_path / "curated", CurationList.read(listed), False)
    frame = read_manifest(manifest.parent).set_index("scene_id")
    assert frame["curation"].to_dict() == {
        "eolearn-5dates-0": "accepted",
        "eolearn-5dates-2": "pending",
    }  # chip: one detector
    with rasterio.open(manifest.parent / frame.loc["eolearn-5dates-0", "mask_path"]) as mask:
        assert mask.shape == (101, 50) and (mask.read(1) == THICK_CLOUD).mean() > 0.9
