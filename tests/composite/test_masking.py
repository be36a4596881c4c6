"""Masks per scene: made once and reused from the cache (a mask made with other inference
thresholds is not), exclusion of configurable classes with a metric buffer that does not seam at
window edges, unreadable scenes skipped, clear errors."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from cloudseg.inference.predict import decode_probabilities
from cloudseg.inference.spec import InferenceSpec, MaskRule
from cloudseg.labels import CLEAR, CLOUD_SHADOW, IGNORE_INDEX, THICK_CLOUD
from cloudseg.sentinel2.cog import write_cog
from cloudseg.sentinel2.grid import tile_windows
from composite.cluster import LocalExecutor
from composite.masking import (
    COMPOSITE_INFERENCE,
    MaskSettings,
    disk,
    exclusion_window,
    prepare_masks,
    read_classes,
)
from composite.run import settings_from_config
from composite.stack import StackSettings, build_stack
from helpers.composite import compose_composite, tiny_checkpoint


def scl_settings(tmp_path, **kwargs) -> MaskSettings:
    return MaskSettings(source="scl", cache_dir=str(tmp_path / "cache"), **kwargs)


def test_scl_masks_are_made_once_then_reused_from_the_cache(tiny_stack, tmp_path):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    masks, kept = prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    assert (masks.computed, masks.reused, len(kept)) == (10, 0, 10)
    assert masks.key == "scl"
    first = stack.scenes[0]
    path = masks.paths[first.scene_id]
    assert path.startswith(str(tmp_path / "cache" / "scl" / first.scene_id))
    with rasterio.open(path) as dataset:
        classes = dataset.read(1)
        assert dataset.nodata == IGNORE_INDEX and dataset.descriptions == ("class",)
    assert (classes[tiny_stack.cloud[0]] == THICK_CLOUD).all()
    assert (classes[tiny_stack.shadow[0]] == CLOUD_SHADOW).all()
    assert (classes[~tiny_stack.cloud[0] & ~tiny_stack.shadow[0]] == CLEAR).all()
    nodata_scene = masks.paths[stack.scenes[3].scene_id]
    assert (read_classes(nodata_scene, tiny_stack.grid)[tiny_stack.nodata[3]] == IGNORE_INDEX).all()

    mtimes = {sid: os.stat(p).st_mtime_ns for sid, p in masks.paths.items()}
    again, _ = prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    assert (again.computed, again.reused) == (0, 10)
    assert {sid: os.stat(p).st_mtime_ns for sid, p in again.paths.items()} == mtimes

    # the same bytes written again (a new modification time) keep their mask
    tiny_stack.paths[5].write_bytes(tiny_stack.paths[5].read_bytes())
    os.utime(tiny_stack.paths[5], ns=(1, 1))
    rewritten = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    third, _ = prepare_masks(rewritten, scl_settings(tmp_path), LocalExecutor(), progress=False)
    assert (third.computed, third.reused) == (0, 10)


def test_a_scene_replaced_by_other_content_of_the_same_size_and_time_gets_new_masks(
    tiny_stack, scene_writer, tmp_path
):
    """Issue 19.3: the cache keys on content, not path, size and mtime."""
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    first, _ = prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    target = tiny_stack.paths[5]
    stat = target.stat()
    cloudless = np.broadcast_to(tiny_stack.surface, tiny_stack.surface.shape).copy()
    other = scene_writer(
        tmp_path / "other.tif", cloudless, tiny_stack.grid, tiny_stack.dates[5],
        scl=np.full(tiny_stack.grid.shape, 4, np.uint8),
    )  # fmt: skip
    content = other.read_bytes()
    assert len(content) <= stat.st_size  # pad to the old size: readers ignore trailing bytes
    target.write_bytes(content + bytes(stat.st_size - len(content)))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    replaced = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    again, _ = prepare_masks(replaced, scl_settings(tmp_path), LocalExecutor(), progress=False)
    assert (again.computed, again.reused) == (1, 9)
    scene_id = stack.scenes[5].scene_id
    assert again.paths[scene_id] != first.paths[scene_id]
    with rasterio.open(again.paths[scene_id]) as dataset:
        assert (dataset.read(1) == CLEAR).all()  # the new content's SCL: all clear


def model_settings(tmp_path, checkpoint, **rule) -> MaskSettings:
    return MaskSettings(
        source="model",
        checkpoint=str(checkpoint),
        cache_dir=str(tmp_path / "cache"),
        inference=InferenceSpec(device="cpu", rule=MaskRule(**rule)),
    )


def test_model_masks_made_with_another_clear_threshold_are_not_reused(make_stack, tmp_path):
    stack_data = make_stack(tmp_path / "scenes", n_dates=2, size=32)
    stack = build_stack(StackSettings(source=str(stack_data.folder)), progress=False)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt", ("B02", "B03", "B04", "B08"))
    made = {}
    for clear_threshold in (None, 0.3, 0.3, 0.32):  # untrained: p(clear) < 0.34
        settings = model_settings(tmp_path, checkpoint, clear_threshold=clear_threshold)
        masks, _ = prepare_masks(stack, settings, LocalExecutor(), progress=False)
        expected = (0, 2) if clear_threshold in made else (2, 0)  # (computed, reused)
        assert (masks.computed, masks.reused) == expected, clear_threshold
        made[clear_threshold] = masks
    assert len({masks.key for masks in made.values()}) == 3
    # masks made before clear_threshold existed keep their key: the option is hashed when set
    assert made[None].key.endswith("-6f1751af")
    scene_id = stack.scenes[0].scene_id
    path = made[0.3].paths[scene_id]
    with rasterio.open(path) as dataset:
        classes, tags = dataset.read(1), dataset.tags()
    with rasterio.open(path.replace(".tif", ".probabilities.tif")) as dataset:
        p_clear = decode_probabilities(dataset.read())[CLEAR]
    with rasterio.open(made[None].paths[scene_id]) as dataset:
        argmax = dataset.read(1)
    assert tags["CLEAR_THRESHOLD"] == "0.3"
    demoted = (argmax == CLEAR) & (classes != CLEAR)
    assert demoted.any() and (p_clear[demoted] < 0.3 + 0.5 / 254).all()
    assert (classes == CLEAR).any() and (p_clear[classes == CLEAR] >= 0.3 - 0.5 / 254).all()


def test_clear_threshold_is_a_composite_config_key(tmp_path):
    base = ["stack.source=x", "masks.source=scl"]
    default = settings_from_config(compose_composite(base, tmp_path))
    assert default.masks.inference == COMPOSITE_INFERENCE  # conf/composite.yaml mirrors it
    assert default.masks.inference.rule == MaskRule(clear_threshold=0.9)
    assert MaskSettings(source="scl").inference == COMPOSITE_INFERENCE
    strict = compose_composite([*base, "masks.inference.rule.clear_threshold=0.85"], tmp_path)
    assert settings_from_config(strict).masks.inference.rule.clear_threshold == 0.85
    wrong = compose_composite([*base, "masks.inference.rule.clear_threshold=1.5"], tmp_path)
    with pytest.raises(ValueError, match=r"masks.inference: clear_threshold must be .* \(0, 1\]"):
        settings_from_config(wrong)


def write_classes(path, classes, grid):
    return write_cog(path, classes.astype(np.uint8), grid, nodata=IGNORE_INDEX, categorical=True)


def test_exclusion_uses_the_configured_classes_and_a_disk_buffer(tmp_path, grid_of):
    grid = grid_of(20, 20)
    classes = np.full((20, 20), CLEAR, dtype=np.uint8)
    classes[10, 10] = THICK_CLOUD
    classes[2, 2] = CLOUD_SHADOW
    classes[18, 0] = IGNORE_INDEX
    path = write_classes(tmp_path / "mask.tif", classes, grid)
    full = Window(0, 0, 20, 20)
    plain = exclusion_window(path, grid, full, [THICK_CLOUD, CLOUD_SHADOW])
    assert plain.sum() == 3 and plain[10, 10] and plain[2, 2] and plain[18, 0]
    cloud_only = exclusion_window(path, grid, full, [THICK_CLOUD])
    assert not cloud_only[2, 2] and cloud_only[10, 10]
    buffered = exclusion_window(path, grid, full, [THICK_CLOUD], buffer_m=20.0)  # 2 px at 10 m
    expected = np.zeros((20, 20), dtype=bool)
    expected[8:13, 8:13] = disk(2.0)
    expected[18, 0] = True  # no prediction is excluded but does not grow
    np.testing.assert_array_equal(buffered, expected)
    assert disk(2.0).sum() == 13


def test_buffered_exclusion_does_not_seam_at_window_edges(tmp_path, grid_of):
    grid = grid_of(50, 45)
    rng = np.random.default_rng(1)
    classes = rng.choice([CLEAR, THICK_CLOUD, CLOUD_SHADOW], size=(50, 45), p=[0.97, 0.02, 0.01])
    path = write_classes(tmp_path / "mask.tif", classes, grid)
    codes = [THICK_CLOUD, CLOUD_SHADOW]
    whole = exclusion_window(path, grid, Window(0, 0, 45, 50), codes, buffer_m=35.0)
    tiled = np.zeros_like(whole)
    for window in tile_windows(grid.height, grid.width, 16):
        rows, cols = window.toslices()
        tiled[rows, cols] = exclusion_window(path, grid, window, codes, buffer_m=35.0)
    np.testing.assert_array_equal(tiled, whole)
    assert whole.mean() > 0.3  # the buffer grew the sparse clouds a lot


def test_masks_on_another_grid_are_read_by_nearest_neighbour(tmp_path, grid_of):
    fine = grid_of(20, 20, resolution=10.0)
    classes = np.zeros((20, 20), dtype=np.uint8)
    classes[:, 10:] = THICK_CLOUD
    path = write_classes(tmp_path / "mask.tif", classes, fine)
    coarse = read_classes(path, grid_of(10, 10, resolution=20.0))
    assert (coarse[:, 5:] == THICK_CLOUD).all() and (coarse[:, :5] == CLEAR).all()
    outside = read_classes(path, fine.window_grid(Window(15, 15, 10, 10)))
    assert (outside[5:, :] == IGNORE_INDEX).all() and (outside[:5, :5] == THICK_CLOUD).all()


def test_a_scene_unreadable_while_masking_is_skipped(tiny_stack, tmp_path, caplog):
    data = tiny_stack.paths[2].read_bytes()
    tiny_stack.paths[2].write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    assert len(stack) == 10  # the header still opens
    with caplog.at_level(logging.WARNING, logger="composite.masking"):
        masks, kept = prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    bad = stack.scenes[2].scene_id
    assert len(kept) == 9 and bad not in masks.paths
    assert [s.source for s in kept.skipped] == [str(tiny_stack.paths[2])]
    assert bad in caplog.text and "mask failed" in caplog.text


def test_source_none_has_no_masks(tiny_stack, tmp_path):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    masks, kept = prepare_masks(
        stack, MaskSettings(source="none", cache_dir=str(tmp_path)), LocalExecutor()
    )
    assert masks.paths == {} and kept is stack
    assert not (tmp_path / "none").exists()


def test_mask_settings_errors_are_explained(tiny_stack, tmp_path):
    with pytest.raises(ValueError, match="Unknown class names"):
        MaskSettings(source="scl", exclude=("cloud",))
    with pytest.raises(ValueError, match="exclude every observation"):
        MaskSettings(source="scl", exclude=("clear",))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        MaskSettings(source="model")
    with pytest.raises(ValueError, match="masks.source=fmask: Unknown mask producer"):
        MaskSettings(source="fmask")
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    settings = MaskSettings(source="s2cloudless", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"10 of 10 scenes lack some.*lacks \['B01'"):
        prepare_masks(stack, settings, LocalExecutor(), progress=False)
    with pytest.raises(FileNotFoundError, match="best.ckpt does not exist"):
        MaskSettings(source="model", checkpoint=str(tmp_path / "best.ckpt"))


def test_model_masks_print_one_progress_line_for_the_stage(make_stack, tmp_path, capsys):
    """The stage's scenes bar only: no per-scene window or upsample bars under it."""
    stack_data = make_stack(tmp_path / "scenes", n_dates=3, size=32)
    stack = build_stack(StackSettings(source=str(stack_data.folder)), progress=False)
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt", ("B02", "B03", "B04", "B08"))
    masks, _ = prepare_masks(
        stack, model_settings(tmp_path, checkpoint), LocalExecutor(), progress=True
    )
    assert masks.computed == 3
    printed = capsys.readouterr().err
    assert "masks (model)" in printed and "3/3" in printed
    assert "window" not in printed and "upsample" not in printed, printed


def test_temporary_folders_of_a_killed_run_are_removed_from_the_mask_cache(
    tiny_stack, tmp_path, caplog
):
    """Issue 19.5: what a killed run left half-made in the cache is removed by the next run
    (which holds the cache key's folder while it makes masks), and cached masks stay."""
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    key_dir = tmp_path / "cache" / "scl"
    leftovers = [key_dir / ".2021-11-01-0123456789ab.k1ll3d_x", key_dir / "x.partial.tif"]
    leftovers[0].mkdir()
    (leftovers[0] / "classes.tif").write_bytes(b"half")
    leftovers[1].write_bytes(b"half")
    again, _ = prepare_masks(stack, scl_settings(tmp_path), LocalExecutor(), progress=False)
    assert (again.computed, again.reused) == (0, 10)
    assert not any(path.exists() for path in leftovers)
    assert "Removed 2 temporary file(s)/folder(s) that killed runs left in" in caplog.text
