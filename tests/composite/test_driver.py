"""The windowed composite: equal to the percentile of the whole stack at once, independent of the
window size and of where it runs (this process or a Dask LocalCluster), resumable after a kill,
robust to a scene that breaks mid-run, with provenance dates and COG outputs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio

from cloudseg.sentinel2.radiometry import harmonize_dn
from composite.cluster import ClusterSettings, LocalExecutor, open_executor
from composite.driver import CompositeSettings
from composite.masking import MaskSettings, exclusion_window
from composite.output_grid import output_grid
from composite.percentile import masked_percentile
from composite.pipeline import composite_stack
from composite.stack import StackSettings, build_stack

BANDS = ("B02", "B03", "B04", "B08")


def run(folder, tmp_path, name="out", masks="scl", executor=None, stack=None, **composite):
    """Composite the stack in ``folder`` into ``tmp_path/name``; returns the result."""
    composite.setdefault("window_size", 24)
    stack = stack or build_stack(StackSettings(source=str(folder)), progress=False)
    return composite_stack(
        stack,
        MaskSettings(source=masks, cache_dir=str(tmp_path / "masks")),
        CompositeSettings(**composite),
        out_dir=tmp_path / name,
        work_dir=tmp_path / "work",
        executor=executor or LocalExecutor(),
        progress=False,
    )


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read()


def whole_stack(result):
    """(dates, bands, y, x) harmonised DN and (dates, y, x) exclusion of the whole grid at once."""
    grid = result.grid
    full = rasterio.windows.Window(0, 0, grid.width, grid.height)
    dn, exclude = [], []
    for scene in result.stack.scenes:
        with scene.open() as opened:
            dn.append(harmonize_dn(opened.read(result.bands, grid=grid), scene.offset))
        mask = result.masks.paths.get(scene.scene_id)
        exclude.append(
            exclusion_window(mask, grid, full, result.masks.exclude_codes, result.masks.buffer_m)
            if mask
            else np.zeros(grid.shape, dtype=bool)
        )
    return np.stack(dn), np.stack(exclude)


def test_windowed_composite_equals_the_whole_stack_percentile(tiny_stack, tmp_path):
    result = run(tiny_stack.folder, tmp_path, masks="scl", window_size=24)  # 64 px: ragged edge
    composite, count = read(result.outputs.composite), read(result.outputs.count)[0]
    dn, exclude = whole_stack(result)
    expected = masked_percentile(dn, exclude, 25, nodata=0, out_dtype=np.uint16)
    np.testing.assert_array_equal(composite, expected.composite)
    np.testing.assert_array_equal(count, expected.count)
    # and that is numpy's percentile of the valid observations (linear, rounded to DN)
    valid = ~exclude & (dn != 0).all(axis=1)
    y, x = 40, 13
    values = dn[valid[:, y, x], :, y, x].astype(np.float64)
    np.testing.assert_allclose(composite[:, y, x], np.percentile(values, 25, axis=0), atol=0.5)
    assert count[y, x] == valid[:, y, x].sum()


def test_masked_composite_is_cloud_free_with_harmonised_baselines(tiny_stack, tmp_path):
    masked = run(tiny_stack.folder, tmp_path, name="scl", masks="scl")
    plain = run(tiny_stack.folder, tmp_path, name="none", masks="none")
    truth = tiny_stack.surface * 10000
    masked_dn = read(masked.outputs.composite).astype(float)
    plain_dn = read(plain.outputs.composite).astype(float)
    count = read(masked.outputs.count)[0]
    covered = count > 0
    assert covered.mean() > 0.99
    # scenes from 2022-01-25 on carry +1000 DN: without harmonisation the error would be ~1000
    assert np.abs(masked_dn - truth)[:, covered].max() < 150
    # unmasked, the 25th percentile of 10 dates reads rank 2.25: 3 shadowed dates get through
    shadowed = tiny_stack.shadow.sum(axis=0) >= 3
    assert shadowed.any()
    assert (truth[3, shadowed] - plain_dn[3, shadowed]).min() > 1000
    assert np.abs(masked_dn - truth)[:, shadowed].max() < 150
    assert (read(plain.outputs.count)[0] >= count).all()
    assert plain.masks.paths == {} and plain.record["masks"]["source"] == "none"


def test_outputs_are_cogs_with_names_tags_and_a_run_json(tiny_stack, tmp_path):
    result = run(tiny_stack.folder, tmp_path, method="lower", window_size=32)
    outputs = result.outputs
    for path in (outputs.composite, outputs.count, outputs.provenance):
        with rasterio.open(path) as dataset:
            assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", path
            assert (
                dataset.crs == tiny_stack.grid.crs
                and dataset.transform == tiny_stack.grid.transform
            )
    with rasterio.open(outputs.composite) as dataset:
        assert (
            dataset.descriptions == BANDS and dataset.dtypes[0] == "uint16" and dataset.nodata == 0
        )
        assert dataset.tags()["MASK_SOURCE"] == "scl" and dataset.tags()["Q"] == "25"
    with rasterio.open(outputs.provenance) as dataset:
        assert dataset.descriptions == tuple(f"date_{b}" for b in BANDS)
    record = json.loads(outputs.run_json.read_text())
    assert record["outputs"] == {
        "composite": "composite.tif",
        "count": "count.tif",
        "provenance": "provenance.tif",
        "exclusion_sources": None,  # 10 dates: too few for the temporal test
        "run_json": "run.json",
    }
    assert record["stack"]["dates"] == [str(d.date()) for d in tiny_stack.dates]
    assert record["masks"]["computed"] == 10 and record["windows"]["total"] == 4
    assert record["composite"]["method"] == "lower"
    assert sorted(p.name for p in outputs.out_dir.iterdir()) == [
        "composite.tif", "count.tif", "provenance.tif", "run.json",
    ]  # fmt: skip
    assert not (tmp_path / "work" / record["run_key"]).exists()  # work files removed


def test_provenance_holds_the_date_each_value_came_from(tiny_stack, tmp_path):
    result = run(tiny_stack.folder, tmp_path, method="lower")
    composite, provenance = read(result.outputs.composite), read(result.outputs.provenance)
    dn, _ = whole_stack(result)
    dates = [int(s.datetime.strftime("%Y%m%d")) for s in result.stack.scenes]
    picked = provenance > 0
    assert picked.mean() > 0.99
    band, y, x = np.nonzero(picked)
    t = np.searchsorted(dates, provenance[picked])
    np.testing.assert_array_equal(dn[t, band, y, x], composite[band, y, x])

    consistent = run(
        tiny_stack.folder, tmp_path, name="key", method="lower", key_bands=["B02", "B03", "B04"]
    )
    one_date = read(consistent.outputs.provenance)
    assert one_date.shape[0] == 1
    t = np.searchsorted(dates, one_date[0])
    rows, cols = np.nonzero(one_date[0])
    spectra = dn[t[rows, cols], :, rows, cols]  # every band from the one picked date
    np.testing.assert_array_equal(spectra.T, read(consistent.outputs.composite)[:, rows, cols])


def test_output_is_independent_of_window_size_with_a_buffer(tiny_stack, tmp_path):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    results = []
    for size in (64, 13):
        result = composite_stack(
            stack,
            MaskSettings(source="scl", cache_dir=str(tmp_path / "masks"), buffer_m=30),
            CompositeSettings(window_size=size, method="nearest"),
            out_dir=tmp_path / f"w{size}",
            work_dir=tmp_path / "work",
            executor=LocalExecutor(),
            progress=False,
        )
        results.append(result)
    for name in ("composite", "count", "provenance"):
        a, b = (read(getattr(r.outputs, name)) for r in results)
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_localcluster_and_an_existing_cluster_give_identical_output(tiny_stack, tmp_path):
    local = run(tiny_stack.folder, tmp_path, name="local", method="nearest", window_size=20)
    settings = ClusterSettings(mode="localcluster", n_workers=2, processes=False)
    with open_executor(settings) as executor:
        distributed = run(
            tiny_stack.folder, tmp_path, name="dask", method="nearest", window_size=20,
            executor=executor,
        )  # fmt: skip
        address = executor.client.scheduler.address
        with open_executor(ClusterSettings(mode="address", address=address)) as connected:
            existing = run(
                tiny_stack.folder, tmp_path, name="address", method="nearest", window_size=20,
                executor=connected,
            )  # fmt: skip
    assert distributed.record["cluster"]["mode"] == "localcluster"
    assert distributed.record["cluster"]["workers"] == 2
    assert existing.record["cluster"] == {**distributed.record["cluster"], "mode": "address"}
    for name in ("composite", "count", "provenance"):
        expected = read(getattr(local.outputs, name))
        np.testing.assert_array_equal(expected, read(getattr(distributed.outputs, name)), name)
        np.testing.assert_array_equal(expected, read(getattr(existing.outputs, name)), name)


def test_a_killed_run_resumes_from_its_finished_windows(tiny_stack, tmp_path, kill_after):
    reference = run(tiny_stack.folder, tmp_path, name="reference", window_size=16)
    restore = kill_after(5)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_stack.folder, tmp_path, name="resumed", window_size=16)
    assert not (tmp_path / "resumed" / "composite.tif").exists()  # no output before completion
    restore()
    resumed = run(tiny_stack.folder, tmp_path, name="resumed", window_size=16)
    assert resumed.record["windows"] == {"total": 16, "reused": 5, "computed": 11}
    for name in ("composite", "count"):
        np.testing.assert_array_equal(
            read(getattr(reference.outputs, name)), read(getattr(resumed.outputs, name)), name
        )


def test_a_scene_that_breaks_mid_run_is_dropped_and_the_run_restarts(tiny_stack, tmp_path, caplog):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    data = tiny_stack.paths[4].read_bytes()
    tiny_stack.paths[4].write_bytes(data[: len(data) // 2])  # pixels cut off after assembly
    with caplog.at_level(logging.WARNING, logger="composite.driver"):
        broken = run(tiny_stack.folder, tmp_path, name="broken", masks="none", stack=stack)
    assert "2022-01-20 is unreadable" in caplog.text
    assert len(broken.stack) == 9
    assert broken.record["stack"]["skipped"] == 1
    assert broken.record["stack"]["skipped_scenes"][0]["source"] == str(tiny_stack.paths[4])
    tiny_stack.paths[4].unlink()
    without = run(tiny_stack.folder, tmp_path, name="without", masks="none")
    np.testing.assert_array_equal(read(broken.outputs.composite), read(without.outputs.composite))


def test_no_valid_policy_fills_from_all_observations(tiny_stack, tmp_path):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    stack.scenes = stack.scenes[:1]  # one date: its cloudy pixels have no valid observation
    nodata = run(tiny_stack.folder, tmp_path, name="nodata", stack=stack)
    filled = run(
        tiny_stack.folder, tmp_path, name="filled", stack=stack, no_valid="all_observations"
    )
    count = read(nodata.outputs.count)[0]
    empty = count == 0
    assert empty.any()
    assert (read(nodata.outputs.composite)[:, empty] == 0).all()
    assert (read(filled.outputs.composite)[:, empty] > 0).all()
    assert nodata.record["pixels"]["no_valid"] == empty.sum()
    assert filled.record["pixels"]["fallback"] == empty.sum()


def test_output_grid_defaults_and_overrides(tiny_stack, tmp_path, grid_of, scene_writer):
    stack = build_stack(StackSettings(source=str(tiny_stack.folder)), progress=False)
    assert output_grid(stack, CompositeSettings(), BANDS) == tiny_stack.grid
    coarse = output_grid(stack, CompositeSettings(resolution=20), BANDS)
    assert coarse.shape == (32, 32) and coarse.bounds == tiny_stack.grid.bounds
    left, bottom, right, top = tiny_stack.grid.bounds
    clipped = CompositeSettings(
        crs="EPSG:32631", bounds=(left + 105, bottom + 3, left + 300, top - 1)
    )
    grid = output_grid(stack, clipped, BANDS)
    assert grid.transform.c == left + 100 and grid.transform.f == top  # snapped to scene pixels
    assert grid.shape == (64, 20)
    # a scene shifted east widens the union
    shifted = grid_of(64, 64).window_grid(rasterio.windows.Window(32, 0, 64, 64))
    scene_writer(
        tmp_path / "east.tif", tiny_stack.surface, shifted, tiny_stack.dates[0].replace(day=2)
    )
    both = build_stack(
        StackSettings(source=[str(tiny_stack.paths[0]), str(tmp_path / "east.tif")]), progress=False
    )
    assert output_grid(both, CompositeSettings(), BANDS).shape == (64, 96)


def test_settings_errors_are_explained(tiny_stack, tmp_path):
    with pytest.raises(ValueError, match="needs composite.method"):
        CompositeSettings(key_bands=["B02"])
    with pytest.raises(ValueError, match="method='mean'|composite.method='mean'"):
        CompositeSettings(method="mean")
    with pytest.raises(ValueError, match="needs composite.crs"):
        CompositeSettings(bounds=(0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"lacks \['B11'\]"):
        run(tiny_stack.folder, tmp_path, bands=["B02", "B11"])
    with pytest.raises(ValueError, match="not reflectance bands"):
        run(tiny_stack.folder, tmp_path, bands=["B02", "SCL"])


@pytest.mark.slow
def test_simulated_stack_on_worker_processes_matches_the_local_run(tmp_path):
    from cloudseg.data.simulate.products import write_stack

    write_stack(tmp_path / "sim", n_dates=12, size=96, seed=3, progress=False)
    stack = build_stack(StackSettings(source=str(tmp_path / "sim")), progress=False)
    assert len(stack) == 12 and {s.offset for s in stack.scenes} <= {0.0, -1000.0}
    options = {"method": "lower", "key_bands": ["B02", "B03", "B04"], "window_size": 40}
    local = run(None, tmp_path, name="local", masks="s2cloudless", stack=stack, **options)
    settings = ClusterSettings(mode="localcluster", n_workers=2, processes=True)
    with open_executor(settings) as executor:
        workers = run(  # own mask cache and work folder: everything is made on the workers
            None, tmp_path / "dask", name="workers", masks="s2cloudless", stack=stack,
            executor=executor, **options,
        )  # fmt: skip
    assert workers.record["masks"]["computed"] == 12
    for name in ("composite", "count", "provenance"):
        np.testing.assert_array_equal(
            read(getattr(local.outputs, name)), read(getattr(workers.outputs, name)), name
        )
