"""The composite's evidence (composite/evidence/): baselines in the same run, metrics against the
simulator's truth, quicklooks, the offline map page, seam error and the offline W&B run.

One run on a small simulated stack (12 dates, 64 px; s2cloudless masks, a date-consistent
``lower`` composite, a tiny random checkpoint for the model's residual check, W&B offline) is
shared by most tests; the metrics are checked against numbers computed here from the rasters.
A second run composites the same stack with ``linear`` and the truth masks themselves as its
masks, so its residual cloud must be 0 where the unmasked baseline's is not.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from cloudseg.data.simulate.products import write_overlapping_tiles, write_stack
from cloudseg.inference.producers import build_producer
from cloudseg.sentinel2.grid import Grid
from composite.cluster import LocalExecutor
from composite.driver import CompositeSettings
from composite.evidence.baselines import plan_baselines
from composite.evidence.residuals import percentile_contamination
from composite.evidence.settings import EvaluationSettings, QuicklookSettings
from composite.evidence.truth import StackTruth, find_truth, truth_indices
from composite.evidence.view import metrics_grid, metrics_view
from composite.masking import MaskSettings, mask_path
from composite.metrics import seam_error
from composite.pipeline import CompositeResult, composite_stack
from composite.quicklook import NO_OBSERVATION_RGB, count_rgba
from composite.run import run_composite
from composite.stack import StackSettings, build_stack
from composite.temporal import TemporalTest
from helpers.composite import compose_composite, tiny_checkpoint
from helpers.training import read_wandb_records, wandb_history

MODEL_BANDS = ["B02", "B03", "B04", "B08", "B11"]  # the tiny checkpoint's bands


@pytest.fixture(scope="module")
def sim_stack(tmp_path_factory) -> Path:
    """A simulated 12-date, 64 px stack with its truth (``stack.json``, ``scenes/``, ``truth/``)."""
    folder = tmp_path_factory.mktemp("sim") / "stack"
    write_stack(folder, n_dates=12, size=64, progress=False)
    return folder


@pytest.fixture(scope="module")
def evidence_run(sim_stack, tmp_path_factory) -> CompositeResult:
    """``python composite.py`` on the simulated stack with every piece of evidence switched on."""
    tmp = tmp_path_factory.mktemp("evidence")
    checkpoint = tiny_checkpoint(tmp / "tiny.ckpt")
    overrides = [
        f"stack.source={sim_stack}", "masks.source=s2cloudless", "composite.method=lower",
        "composite.key_bands=[B02,B03,B04]", "composite.window_size=32", f"ckpt={checkpoint}",
        "masks.inference.device=cpu", "masks.inference.window_size=32", "logger=wandb",
    ]  # fmt: skip
    return run_composite(compose_composite(overrides, tmp))


@pytest.fixture(scope="module")
def truth_masked_run(sim_stack, tmp_path_factory) -> CompositeResult:
    """A ``linear`` composite of the simulated stack masked by its truth: the truth masks are
    put in the mask cache where the s2cloudless masks would go, so the run reuses them as its
    masks (and composites the unmasked baseline beside it)."""
    tmp = tmp_path_factory.mktemp("truth_masked")
    cache = tmp / "masks"
    entries = json.loads((sim_stack / "stack.json").read_text())["dates"]
    truth_masks = {(sim_stack / e["scene"]).resolve(): sim_stack / e["mask"] for e in entries}
    for scene in build_stack(StackSettings(source=str(sim_stack)), progress=False).scenes:
        target = mask_path(cache, build_producer("s2cloudless").cache_key(), scene)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(truth_masks[Path(scene.source).resolve()], target)
    overrides = [
        f"stack.source={sim_stack}", "masks.source=s2cloudless", f"masks.cache_dir={cache}",
        "composite.method=linear", "composite.window_size=32", "evaluation.baselines=[none]",
    ]  # fmt: skip
    return run_composite(compose_composite(overrides, tmp))


def read_band(path: Path, band: int = 1) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(band)


def evidence_of(result: CompositeResult) -> dict:
    return json.loads(result.outputs.run_json.read_text())["reports"]["evidence"]


def test_baselines_run_on_the_same_grid_and_skips_say_why(evidence_run):
    evidence = evidence_of(evidence_run)
    out = evidence_run.outputs.out_dir
    assert evidence["baselines"]["computed"] == {"none": str(out / "baselines" / "none")}
    skipped = evidence["baselines"]["skipped"]
    assert set(skipped) == {"scl", "s2cloudless", "temporal"}
    assert "12 of 12 scenes lack" in skipped["scl"] and "SCL" in skipped["scl"]
    assert skipped["s2cloudless"] == "the main composite uses these masks"
    assert "12 dates, fewer than masks.temporal_test.min_dates=15" in skipped["temporal"]

    for folder in (out / "baselines" / "none", out / "reference"):
        record = json.loads((folder / "run.json").read_text())
        assert record["masks"]["source"] == "none"
        assert record["grid"] == evidence_run.record["grid"]
        assert record["composite"]["bands"] == list(evidence_run.bands)
        assert record["composite"]["key_bands"] == ["B02", "B03", "B04"]
        assert record["reports"]["quicklooks"] == {
            "rgb": "composite_rgb.png",
            "gray": "composite_gray.png",
        }
        assert (folder / "composite_rgb.png").is_file()
    reference_scenes = json.loads((out / "reference" / "run.json").read_text())["stack"]
    assert all("/truth/surface/" in s["source"] for s in reference_scenes["scenes_used"])
    assert evidence["reference"] == {"kind": "truth", "path": str(out / "reference/composite.tif")}


def test_metrics_json_compares_every_composite(evidence_run):
    evidence = evidence_of(evidence_run)
    out = evidence_run.outputs.out_dir
    table = json.loads((out / "metrics.json").read_text())
    assert table == evidence["metrics"]
    assert list(table) == ["composite", "baseline_none", "reference"]
    assert evidence["metrics_grid"] == {
        "read": "full", "factor": 1, "shape": [64, 64], "max_pixels": 4096 * 4096,
        "footprint_pixels": 64 * 64,
    }  # fmt: skip
    composite, unmasked, reference = table["composite"], table["baseline_none"], table["reference"]
    # the plain percentile lets clouds through that the s2cloudless-masked one keeps out
    assert unmasked["residual_cloud"] > 0.02 > 10 * composite["residual_cloud"]
    assert unmasked["share_clear_obs_3plus"] == 1.0  # no mask: every date counts
    # the reference measured against itself; it has no residual cloud to look for
    assert reference["brighter_than_reference"] == reference["darker_than_reference"] == 0.0
    assert reference["mae_mean"] == 0.0 and reference["ssim_mean"] == pytest.approx(1.0)
    assert "residual_cloud" not in reference
    assert composite["mae_mean"] > 0.0
    for row in table.values():
        shares = [row[f"share_clear_obs_{k}"] for k in ("0", "1_2", "3plus")]
        assert sum(shares) == pytest.approx(1.0)
        assert {f"mae_{band}" for band in evidence_run.bands} <= set(row)
    assert evidence["not_computed"] == {
        "reference": {"residual": "the reference is the truth surfaces: none of it is cloud"}
    }
    markdown = (out / "metrics.md").read_text()
    assert "| metric | composite (s2cloudless) | baseline_none (none) | reference (none) |" in (
        markdown
    )
    assert f"| residual_cloud | {composite['residual_cloud']:.4g} |" in markdown

    count = read_band(out / "count.tif")
    assert composite["share_clear_obs_1_2"] == pytest.approx(np.mean((count >= 1) & (count <= 2)))
    assert composite["share_clear_obs_0"] == pytest.approx(np.mean(count == 0))


def test_residual_cloud_of_picked_dates_is_read_from_the_truth_masks(evidence_run, sim_stack):
    """residual_cloud/_shadow of a picking composite from provenance.tif and the truth masks,
    recomputed here: the share of pixels whose picked date is cloud / shadow there."""
    description = json.loads((sim_stack / "stack.json").read_text())
    masks_by_date = {
        int(entry["sensing_time"][:10].replace("-", "")): read_band(sim_stack / entry["mask"])
        for entry in description["dates"]
    }
    for name, folder in (("composite", "."), ("baseline_none", "baselines/none")):
        picked = read_band(evidence_run.outputs.out_dir / folder / "provenance.tif")
        classes = np.full(picked.shape, 255, np.uint8)
        for date, mask in masks_by_date.items():
            classes[picked == date] = mask[picked == date]
        table = evidence_of(evidence_run)["metrics"]
        assert table[name]["residual_cloud"] == pytest.approx(
            np.mean(np.isin(classes[picked != 0], (1, 2)))
        )
        assert table[name]["residual_shadow"] == pytest.approx(np.mean(classes[picked != 0] == 3))
    assert table["baseline_none"]["residual_cloud"] > 0.02


def test_a_linear_composite_masked_by_the_truth_has_no_residual_cloud(truth_masked_run):
    """``linear`` records no dates: the residual is found from the stack, the masks each
    composite used and the kernel's ranks. With the truth as masks nothing cloudy is used;
    without masks the percentile is made of cloudy dates on a share of pixels."""
    evidence = evidence_of(truth_masked_run)
    table = evidence["metrics"]
    assert list(table) == ["composite", "baseline_none", "reference"]
    assert table["composite"]["residual_cloud"] == table["composite"]["residual_shadow"] == 0.0
    unmasked = table["baseline_none"]
    assert unmasked["residual_cloud"] > 0.05 and unmasked["residual_shadow"] > 0.0
    assert unmasked["residual_cloud"] > table["composite"]["residual_cloud"]
    assert "residual" not in evidence["not_computed"]["composite"]  # only model_residual (no ckpt)


def test_residuals_of_a_temporal_composite_use_its_temporal_exclusion(sim_stack, tmp_path):
    """The residual of a ``linear`` composite redoes its exclusion: with the temporal test on,
    the test's verdicts too (masks ``none`` + ``union``: the test alone), not the masks alone."""
    stack = build_stack(StackSettings(source=str(sim_stack)), progress=False)
    masks = MaskSettings(
        source="none", cache_dir=str(tmp_path / "masks"), temporal="union",
        temporal_test=TemporalTest(min_dates=10, min_clear=3),
    )  # fmt: skip
    result = composite_stack(
        stack, masks, CompositeSettings(window_size=32), out_dir=tmp_path / "out",
        work_dir=tmp_path / "work", executor=LocalExecutor(), progress=False,
    )  # fmt: skip
    assert result.record["temporal"]["applied"]
    truth = find_truth(str(sim_stack), result.stack)
    view = metrics_view(result.grid, result.stack, "B02", 10**6, progress=False)
    tested = percentile_contamination(result, truth, view, tmp_path / "check")
    unmasked = percentile_contamination(
        dataclasses.replace(result, temporal=None), truth, view, tmp_path / "check"
    )
    assert unmasked["residual_cloud"] > 0.05
    assert tested["residual_cloud"] < 0.5 * unmasked["residual_cloud"]


def test_model_residual_is_the_checkpoint_run_on_each_composite(evidence_run):
    table = evidence_of(evidence_run)["metrics"]
    out = evidence_run.outputs.out_dir
    for name, folder in (("composite", out), ("baseline_none", out / "baselines" / "none"),
                         ("reference", out / "reference")):  # fmt: skip
        classes = read_band(folder / "model_check" / "composite_classes.tif")
        predicted = classes[classes != 255]
        assert predicted.size > 0
        assert table[name]["model_residual_cloud"] == pytest.approx(
            np.isin(predicted, (1, 2)).mean()
        )
        assert table[name]["model_residual_shadow"] == pytest.approx((predicted == 3).mean())
        with rasterio.open(folder / "model_check" / "composite_classes.tif") as dataset:
            assert dataset.tags()["MODEL_BANDS"] == " ".join(MODEL_BANDS)


def test_quicklooks_and_map_page_layers(evidence_run):
    out = evidence_run.outputs.out_dir
    rgb = np.asarray(Image.open(out / "composite_rgb.png"))
    gray = np.asarray(Image.open(out / "composite_gray.png"))
    assert rgb.shape == gray.shape == (64, 64, 4)
    assert rgb[..., :3].std() > 5 and (gray[..., 0] == gray[..., 2]).all()
    page = (out / "map.html").read_text()
    spec = json.loads(re.search(r"var spec = (\{.*?\});\n", page).group(1))
    layers = [(layer["name"], layer["visible"]) for layer in spec["layers"]]
    assert layers == [
        ("composite: s2cloudless masks", True),
        ("baseline: none masks", False),
        ("reference: truth surfaces, no masks", False),
        ("valid observations (0 red, 1..12 dark to bright)", False),
    ]
    first, last = evidence_run.stack.scenes[0], evidence_run.stack.scenes[-1]
    dates = f"12 scenes, {first.datetime.date()} to {last.datetime.date()}"
    for text in (dates, "q=25, lower", "s2cloudless", "residual_cloud", "baseline_none"):
        assert text in page


def test_map_page_renders_offline_in_headless_chromium(evidence_run, chromium):
    dom = chromium.dom(evidence_run.outputs.out_dir / "map.html")
    assert 'data-map-ready="true"' in dom, "the map script did not run"
    assert len(re.findall(r"<img[^>]*composite-layer", dom)) == 1, "only the composite is drawn"
    labels = re.findall(r'<input type="checkbox" class="leaflet-control-layers-selector"', dom)
    assert len(labels) == 4 and "baseline: none masks" in dom


def test_offline_wandb_run_holds_the_metrics_and_quicklooks(evidence_run):
    evidence = evidence_of(evidence_run)
    table = evidence["metrics"]
    info = evidence["wandb"]
    run_dir = Path(info["run_dir"])
    assert info["mode"] == "offline" and info["sync_command"] == f"wandb sync {run_dir}"
    assert run_dir.parent == evidence_run.outputs.out_dir / "wandb"

    records = read_wandb_records(run_dir)
    history = wandb_history(records)
    for name in table:
        for metric in ("residual_cloud", "share_clear_obs_0", "model_residual_cloud"):
            if metric in table[name]:  # the reference has no residual cloud
                assert history[f"{name}/{metric}"] == [pytest.approx(table[name][metric])]
    assert "reference/residual_cloud" not in history
    assert history["metrics/_type"] == ["table-file"]
    (table_file,) = (run_dir / "files" / "media" / "table").glob("metrics_*.table.json")
    logged = json.loads(table_file.read_text())
    assert logged["columns"][:3] == ["composite", "share_clear_obs_0", "share_clear_obs_1_2"]
    assert [row[0] for row in logged["data"]] == list(table)
    column = logged["columns"].index("residual_cloud")
    assert [row[column] for row in logged["data"]] == [
        pytest.approx(table["composite"]["residual_cloud"]),
        pytest.approx(table["baseline_none"]["residual_cloud"]),
        None,  # the reference
    ]
    images = run_dir / "files" / "media" / "images" / "quicklooks"
    names = {re.sub(r"_\d+_[0-9a-f]+\.png$", "", path.name) for path in images.glob("*.png")}
    assert names == {
        f"{name}_{kind}" for name in table for kind in ("rgb", "gray")
    }  # e.g. composite_rgb, baseline_none_gray, reference_rgb
    config_keys = {
        item.key
        for record in records
        if record.WhichOneof("record_type") == "config"
        for item in record.config.update
    }
    assert {"stack", "masks", "composite", "evaluation"} <= config_keys


def test_seam_error_of_two_overlapping_tiles_is_reported(tmp_path):
    write_overlapping_tiles(tmp_path / "tiles", n_dates=6, size=64, overlap=16, progress=False)
    common = [
        "masks.source=none", "evaluation.baselines=[]", "evaluation.truth=false",
        "composite.window_size=64",
    ]  # fmt: skip
    surface = sorted((tmp_path / "tiles" / "tile_a" / "truth" / "surface").glob("*.tif"))[0]
    west = run_composite(
        compose_composite(
            [
                *common,
                f"stack.source={tmp_path / 'tiles' / 'tile_a'}",
                f"evaluation.reference={surface}",
            ],
            tmp_path / "west",
        )  # fmt: skip
    )
    east = run_composite(
        compose_composite(
            [
                *common,
                f"stack.source={tmp_path / 'tiles' / 'tile_b'}",
                f"evaluation.compare_with={west.outputs.composite}",
                "evaluation.max_pixels=1024",
            ],
            tmp_path / "east",
        )  # fmt: skip
    )
    evidence = evidence_of(east)
    seam = evidence["metrics"]["composite"]
    assert seam["seam_overlap_px"] == 64 * 16 and seam["seam_decimation"] == 1
    assert seam["seam_mae"] < 0.01 and seam["seam_p99_abs"] < 0.01
    assert (
        "seam_mae" in json.loads((east.outputs.out_dir / "metrics.json").read_text())["composite"]
    )
    coarse = seam_error(east.outputs.composite, west.outputs.composite, max_pixels=256)
    assert coarse["seam_decimation"] == 2 and coarse["seam_mae"] < 0.01  # 1024 px overlap read 2x
    # the 64 x 64 grid has more than max_pixels=1024: metrics on every other pixel
    assert evidence["metrics_grid"]["read"] == "decimated"
    assert evidence["metrics_grid"]["factor"] == 2 and evidence["metrics_grid"]["shape"] == [32, 32]

    # an explicit reference file: errors against one truth surface, read through the reader
    west_evidence = evidence_of(west)
    assert west_evidence["reference"] == {"kind": "file", "path": str(surface)}
    assert list(west_evidence["metrics"]) == ["composite"]  # the file is no row of its own
    assert west.bands[3] == "B04"  # band 4 of both files (B01, B02, B03, B04, ...)
    composite, truth = (read_band(path, 4) / 10000.0 for path in (west.outputs.composite, surface))
    valid = (composite > 0) & (truth > 0)  # 0 is nodata in both
    assert west_evidence["metrics"]["composite"]["mae_B04"] == pytest.approx(
        np.abs(composite - truth)[valid].mean(), rel=1e-5
    )
    assert "seam_mae" not in west_evidence["metrics"]["composite"]


# -- the parts on their own ----------------------------------------------------------------------


def test_baselines_that_do_not_apply_are_skipped_with_the_reason(tiny_stack):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    sources = ("none", "scl", "s2cloudless", "model", "temporal")
    planned, skipped = plan_baselines(sources, MaskSettings(source="none"), stack)
    assert list(planned) == ["scl"] and planned["scl"].source == "scl"
    assert planned["scl"].temporal == "none"  # a single-date mask alone
    assert skipped["none"] == "the main composite uses these masks"
    assert (
        "the stack has 10 dates, fewer than masks.temporal_test.min_dates=15"
        in (skipped["temporal"])
    )
    assert "10 of 10 scenes lack" in skipped["s2cloudless"] and "B10" in skipped["s2cloudless"]
    assert skipped["model"].startswith("no checkpoint")
    assert find_truth(str(tiny_stack.folder), stack) is None  # not a simulated stack


def test_the_temporal_baseline_is_the_test_alone_and_single_date_baselines_are_masks_alone(
    make_stack, tmp_path
):
    stack = build_stack(
        StackSettings(source=str(make_stack(tmp_path / "s", n_dates=16).folder)), progress=False
    )
    main = MaskSettings(source="scl", temporal="veto")  # 16 dates, so the test runs
    planned, skipped = plan_baselines(("none", "scl", "temporal"), main, stack)
    assert (planned["temporal"].source, planned["temporal"].temporal) == ("none", "union")
    assert (planned["scl"].source, planned["scl"].temporal) == ("scl", "none")
    assert (planned["none"].source, planned["none"].temporal) == ("none", "none")
    assert not skipped


def test_truth_is_found_for_a_simulated_stack(sim_stack):
    stack = build_stack(StackSettings(source=str(sim_stack)), progress=False)
    for source in (sim_stack, sim_stack / "scenes"):
        truth = find_truth(str(source), stack)
        assert truth.description == sim_stack / "stack.json"
        assert [Path(path).name for path in truth.surfaces] == [
            Path(scene.source).name for scene in stack.scenes
        ]
        assert all(Path(path).is_file() for path in (*truth.surfaces, *truth.mask_paths))
        assert list(truth.mask_dates) == sorted(truth.mask_dates)


def test_provenance_dates_map_to_truth_dates():
    truth = StackTruth(
        Path("stack.json"), (), np.array([20200101, 20200111], np.uint32), ("a", "b")
    )
    dates = np.array([[20200111, 0], [20200101, 20200111]], np.uint32)
    assert truth_indices(dates, truth).tolist() == [[1, -1], [0, 1]]
    with pytest.raises(ValueError, match="20200105 is not a scene of the truth"):
        truth_indices(np.array([20200105], np.uint32), truth)


def test_metrics_grid_is_decimated_by_an_integer_factor():
    grid = Grid("EPSG:32632", Affine(10, 0, 500000, 0, -10, 5000000), 100, 90)
    assert metrics_grid(grid, 100 * 90) == (grid, 1)
    decimated, factor = metrics_grid(grid, 2000)
    assert factor == 3 and decimated.shape == (33, 30) and decimated.resolution == 30
    assert decimated.bounds[0] == grid.bounds[0] and decimated.bounds[3] == grid.bounds[3]


def test_count_picture_flags_pixels_without_observations():
    count = np.array([[0.0, 1.0, 6.0, 12.0, np.nan]])
    rgba = count_rgba(count, max_count=12)
    assert tuple(rgba[0, 0, :3]) == NO_OBSERVATION_RGB
    assert rgba[0, 1, :3].sum() < rgba[0, 2, :3].sum() < rgba[0, 3, :3].sum()  # dark to bright
    assert rgba[0, :4, 3].tolist() == [255] * 4 and rgba[0, 4, 3] == 0  # NaN: transparent
    with pytest.raises(ValueError, match="max_count=0"):
        count_rgba(count, max_count=0)


def test_bad_evaluation_settings_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"evaluation.baselines lists \['sen2cor'\]"):
        EvaluationSettings(baselines=("none", "sen2cor"))
    with pytest.raises(ValueError, match="repeats"):
        EvaluationSettings(baselines=("none", "none"))
    with pytest.raises(FileNotFoundError, match="evaluation.compare_with=.*missing.tif"):
        EvaluationSettings(compare_with=str(tmp_path / "missing.tif"))
    with pytest.raises(ValueError, match="quicklook.stretch"):
        QuicklookSettings(stretch=(0.3, 0.1))


def test_evaluation_none_composites_the_stack_once(sim_stack, tmp_path, monkeypatch):
    import composite.pipeline

    calls = []
    real = composite.pipeline.composite_windows
    monkeypatch.setattr(
        composite.pipeline, "composite_windows", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    overrides = [f"stack.source={sim_stack}", "masks.source=none", "composite.window_size=32"]
    result = run_composite(compose_composite([*overrides, "evaluation=none"], tmp_path / "off"))
    out = result.outputs.out_dir
    assert len(calls) == 1
    assert "reports" not in json.loads(result.outputs.run_json.read_text())
    published = sorted(path.name for path in out.iterdir() if not path.name.startswith("."))
    assert published == ["composite.tif", "count.tif", "run.json"]  # (.cloudfree.lock: the lock)

    # by default the evidence composites again: the s2cloudless baseline and the truth surfaces
    run_composite(compose_composite(overrides, tmp_path / "on"))
    assert len(calls) == 1 + 3
