"""cloudfree-predict and cloudfree-evaluate-masks, end to end with a real (tiny, untrained)
checkpoint as CloudSegTask writes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from cloudseg.checkpoint import load_checkpoint
from cloudseg.inference.cli import evaluate_main, predict_main, scene_name
from cloudseg.inference.predict import decode_probabilities
from cloudseg.labels import CLEAR
from cloudseg.models import build_segmenter
from cloudseg.task import CHECKPOINT_KEY

CHECKPOINT_BANDS = ("B02", "B04", "B8A", "B11")


@pytest.fixture
def checkpoint(tmp_path, checkpoint_meta):
    """A tiny ViT (random weights) saved the way CloudSegTask saves checkpoints."""
    torch.manual_seed(0)
    model = build_segmenter(backbone="vit_tiny", bands=CHECKPOINT_BANDS, head="linear", img_size=32)
    meta = {**checkpoint_meta(CHECKPOINT_BANDS, patch_size=32), "model_config": model.config}
    state_dict = {f"model.{key}": value for key, value in model.state_dict().items()}
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": state_dict, CHECKPOINT_KEY: meta}, path)
    load_checkpoint(path)  # the fixture is a valid checkpoint
    return path


def test_predict_writes_each_scene_and_can_continue(
    checkpoint, write_scene, smooth_reflectance, tmp_path, capsys
):
    sources = [
        write_scene("first", smooth_reflectance(5, 40, 50, seed=1)),
        write_scene("second", smooth_reflectance(5, 70, 30, seed=2)),
    ]
    out = tmp_path / "predictions"
    argv = [str(checkpoint), *map(str, sources), "--out", str(out), "--resolution", "20"]
    assert predict_main(argv) == 0
    for source in sources:
        with (
            rasterio.open(out / f"{source.stem}_classes.tif") as classes,
            rasterio.open(source) as image,
        ):
            assert classes.transform == image.transform and classes.shape == image.shape
            assert classes.tags()["INFERENCE_RESOLUTION"] == "20"
            assert classes.tags()["CHECKPOINT"] == str(checkpoint)
    assert predict_main([*argv, "--skip-existing"]) == 0
    assert capsys.readouterr().out.count("skip ") == 2


def test_predict_clear_threshold_flag(checkpoint, write_scene, smooth_reflectance, tmp_path):
    source = write_scene("scene", smooth_reflectance(5, 40, 50, seed=1))
    out = tmp_path / "predictions"
    argv = [str(checkpoint), str(source), "--out", str(out), "--clear-threshold", "0.3"]
    assert predict_main(argv) == 0
    with rasterio.open(out / "scene_classes.tif") as dataset:
        classes, tags = dataset.read(1), dataset.tags()
    with rasterio.open(out / "scene_probabilities.tif") as dataset:
        probabilities = decode_probabilities(dataset.read())
    assert tags["CLEAR_THRESHOLD"] == "0.3" and tags["CLOUD_THRESHOLD"] == "none"
    p_clear, rounding = probabilities[CLEAR], 0.5 / 254  # the untrained model: p(clear) < 0.5
    clear = classes == CLEAR
    assert clear.any() and (p_clear[clear] >= 0.3 - rounding).all()
    below = p_clear < 0.3 - rounding
    assert (below & (probabilities.argmax(axis=0) == CLEAR)).any()  # argmax: clear
    assert (classes[below] != CLEAR).all()


@pytest.mark.parametrize("value", ["0", "1.2", "nan", "high"])
def test_an_invalid_clear_threshold_stops_with_the_range(checkpoint, tmp_path, capsys, value):
    for main, argv in (
        (predict_main, [str(checkpoint), "scene.tif", "--out", str(tmp_path)]),
        (evaluate_main, ["--data", str(tmp_path)]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--clear-threshold", value])
        assert exit_info.value.code == 2
        assert "argument --clear-threshold:" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tif"))


def test_evaluate_writes_the_tables_with_the_command(checkpoint, labeled_dataset, tmp_path):
    out = tmp_path / "evaluation"
    argv = ["--data", str(labeled_dataset), "--checkpoint", str(checkpoint), "--out", str(out)]
    argv += ["--producers", "model", "threshold", "--window-size", "32", "--worst", "1"]
    argv += ["--clear-threshold", "1.0"]  # the checkpoint may call clear only p(clear) = 1
    assert evaluate_main(argv) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["producers"]) == ["model", "threshold"]
    assert report["command"].startswith("cloudfree-evaluate-masks --data ")
    assert report["producers"]["model"]["scenes"] == 3
    assert "| model | 3 | 1.000 |" in (out / "metrics.md").read_text()
    confusion = np.array(report["producers"]["model"]["confusion_matrix"])
    assert confusion.sum() > 0 and confusion[:, CLEAR].sum() == 0  # nothing predicted clear
    assert np.array(report["producers"]["threshold"]["confusion_matrix"])[:, CLEAR].sum() > 0


def test_scene_names_for_outputs():
    assert scene_name("data/S2A_MSIL1C_20200101.SAFE") == "S2A_MSIL1C_20200101"
    assert scene_name("scenes/T31TDH_20200101.tif") == "T31TDH_20200101"
    assert scene_name("l2a-29RKH-20200219/item.json") == "l2a-29RKH-20200219"
    assert scene_name("folder/l1c-T31TDH-20150726/") == "l1c-T31TDH-20150726"


def test_predict_skips_an_unreadable_scene_and_fails_at_the_end(
    checkpoint, write_scene, smooth_reflectance, tmp_path, capsys
):
    """Issue 19.6: a damaged scene in the middle of the list is skipped with its reason, the
    scenes after it are still predicted, and the exit status is non-zero."""
    first = write_scene("first", smooth_reflectance(5, 40, 50, seed=1))
    damaged = write_scene("damaged", smooth_reflectance(5, 40, 50, seed=2))
    damaged.write_bytes(damaged.read_bytes()[:600])  # header kept, tiles cut off
    last = write_scene("last", smooth_reflectance(5, 40, 50, seed=3))
    out = tmp_path / "predictions"
    argv = [str(checkpoint), str(first), str(damaged), str(last), "--out", str(out)]
    assert predict_main(argv) == 1
    captured = capsys.readouterr()
    assert f"skip {damaged}: " in captured.err
    assert f"1 of 3 scenes could not be read and were skipped: ['{damaged}']" in captured.err
    assert (out / "first_classes.tif").is_file() and (out / "last_classes.tif").is_file()
    assert not list(out.glob("damaged*")) and not list(out.glob(".damaged*"))


def test_predict_removes_what_a_killed_run_left_in_out(
    checkpoint, write_scene, smooth_reflectance, tmp_path, caplog
):
    """Issue 19.5: temporary folders and partial files of a killed run are removed by the next
    run into the same --out; other files stay."""
    out = tmp_path / "predictions"
    (out / ".scene_classes.k1ll3d_x").mkdir(parents=True)  # tempfile.mkdtemp(prefix=".<name>.")
    (out / ".scene_classes.k1ll3d_x" / "classes.tif").write_bytes(b"half")
    (out / "old_classes.partial.tif").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")
    (out / ".config").mkdir()
    source = write_scene("scene", smooth_reflectance(5, 40, 50, seed=1))
    assert predict_main([str(checkpoint), str(source), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        ".cloudfree.lock",
        ".config",
        "notes.txt",
        "scene_classes.tif",
        "scene_probabilities.tif",
    ]
    assert "Removed 2 temporary file(s)/folder(s) that killed runs left in" in caplog.text


def test_predict_refuses_an_out_folder_another_run_holds(checkpoint, tmp_path):
    from cloudseg.run_folder import FolderBusyError, exclusive_folder

    out = tmp_path / "predictions"
    with exclusive_folder(out, "the other run"):
        (out / ".scene_classes.abcdefgh").mkdir()  # the live run's temporary folder
        with pytest.raises(FolderBusyError, match=r"--out .* is in use by another run: pid \d+"):
            predict_main([str(checkpoint), "scene.tif", "--out", str(out)])
        assert (out / ".scene_classes.abcdefgh").is_dir()


def test_evaluate_masks_on_real_scenes_against_the_detectors(checkpoint, tmp_path):
    """--scenes: a named checkpoint and the default producers; the reference from ukis-csmask and
    s2cloudless (the scene has no SCL: scl is skipped, saying so)."""
    from affine import Affine

    from cloudseg.sentinel2.bands import L1C_BANDS
    from cloudseg.sentinel2.cog import write_cog
    from cloudseg.sentinel2.grid import Grid

    grid = Grid("EPSG:32633", Affine(10, 0, 500000, 0, -10, 4000000), 32, 32)
    dn = np.full((13, 32, 32), 900, dtype=np.uint16)
    dn[:, :16] = 6000
    (tmp_path / "scenes").mkdir()
    write_cog(tmp_path / "scenes" / "l1c-one.tif", dn, grid, nodata=0, band_names=L1C_BANDS)
    out = tmp_path / "real"
    evaluate_main(["--scenes", str(tmp_path / "scenes"), "--model", f"tiny={checkpoint}",
                   "--out", str(out)])  # fmt: skip
    report = json.loads((out / "metrics.json").read_text())
    assert report["producers"] == ["tiny", "ukis", "s2cloudless", "scl", "threshold"]
    (scene,) = report["scenes"]
    assert scene["name"] == "l1c-one" and scene["product_level"] == "l1c"
    assert scene["detectors_run"] == ["ukis", "s2cloudless"]
    assert scene["skipped"] == {"scl": "lacks SCL"}
    assert scene["producers"]["tiny"]["reference_from"]["cloud"] == ["ukis", "s2cloudless"]
    assert (out / "overlays" / "l1c-one.png").is_file()
    for bad in (["--model", "ukis=x.ckpt"], ["--model", "noequals"]):
        with pytest.raises(SystemExit):
            evaluate_main(["--scenes", str(tmp_path / "scenes"), *bad, "--out", str(out)])
