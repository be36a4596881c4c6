"""The temporal test inside the windowed composite: windows equal the whole stack, a killed run
resumes identically, its evidence is counted, and a stack too short for it runs without it."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window

from composite.cluster import LocalExecutor
from composite.driver import CompositeSettings, make_job, read_window_stack
from composite.masking import MaskSettings
from composite.percentile import masked_percentile
from composite.pipeline import composite_stack
from composite.run import settings_from_config
from composite.stack import StackSettings, build_stack
from composite.temporal import TemporalTest
from composite.temporal_evidence import sources_chart, sources_map_layer
from composite.temporal_rules import TemporalSettings
from helpers.composite import compose_composite

N_DATES = 20


def run(folder, tmp_path, name, masks="scl", temporal="veto", window_size=24, **test):
    stack = build_stack(StackSettings(source=str(folder)), progress=False)
    return composite_stack(
        stack,
        MaskSettings(
            source=masks,
            cache_dir=str(tmp_path / "masks"),
            temporal=temporal,
            temporal_test=TemporalTest(**test),
        ),
        CompositeSettings(window_size=window_size),
        out_dir=tmp_path / name,
        work_dir=tmp_path / "work",
        executor=LocalExecutor(),
        progress=False,
    )


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read()


@pytest.fixture
def stack20(tmp_path, make_stack):
    return make_stack(tmp_path / "scenes", n_dates=N_DATES)


def test_windowed_temporal_composite_equals_the_whole_stack(stack20, tmp_path):
    windowed = run(stack20.folder, tmp_path, "windowed", window_size=24)  # 64 px: ragged edge
    whole = run(stack20.folder, tmp_path, "whole", window_size=64)
    assert windowed.record["run_key"] != whole.record["run_key"]  # window size is in the key
    for name in ("composite", "count", "exclusion_sources"):
        np.testing.assert_array_equal(
            read(getattr(windowed.outputs, name)), read(getattr(whole.outputs, name)), name
        )
    # and that is the percentile of the whole grid's stack under the whole grid's exclusion
    job, _ = make_job(
        windowed.stack, windowed.masks, windowed.settings, windowed.grid, windowed.bands,
        tmp_path / "check", MaskSettings(source="scl").temporal_settings,
    )  # fmt: skip
    dn, exclude = read_window_stack(job, Window(0, 0, windowed.grid.width, windowed.grid.height))
    expected = masked_percentile(dn, exclude, 25, nodata=0, out_dtype=np.uint16)
    np.testing.assert_array_equal(read(windowed.outputs.composite), expected.composite)


def test_temporal_test_alone_finds_clouds_and_shadows_and_counts_them(stack20, tmp_path):
    plain = run(stack20.folder, tmp_path, "plain", masks="none", temporal="none")
    alone = run(stack20.folder, tmp_path, "alone", masks="none", temporal="union")
    job, _ = make_job(
        alone.stack, alone.masks, alone.settings, alone.grid, alone.bands, tmp_path / "check",
        MaskSettings(source="none", temporal="union").temporal_settings,
    )  # fmt: skip
    dn, excluded = read_window_stack(job, Window(0, 0, alone.grid.width, alone.grid.height))
    valid = ~stack20.nodata
    clear = valid & ~stack20.cloud & ~stack20.shadow
    assert excluded[stack20.cloud & valid].mean() > 0.95
    assert excluded[stack20.shadow & valid].mean() > 0.9
    assert excluded[clear].mean() < 0.02
    record = json.loads(alone.outputs.run_json.read_text())
    assert record["temporal"]["applied"] and record["temporal"]["rule"] == "union"
    assert record["temporal"]["haze_guard"].startswith("off: the composite's bands have no B01")
    sources = read(alone.outputs.exclusion_sources)
    totals = record["temporal"]["excluded_by"]
    assert totals == {name: int(sources[i].sum()) for i, name in enumerate(totals)}
    assert totals["temporal"] == int(excluded.sum()) and totals["model"] == totals["both"] == 0
    assert plain.outputs.exclusion_sources is None
    assert json.loads(plain.outputs.run_json.read_text())["temporal"]["applied"] is False
    # the evidence's pictures of it: a bar chart and a map layer where the test excluded views
    chart = sources_chart(totals, tmp_path / "chart.png", "test")
    assert Image.open(chart).size == (550, 300)
    layer, bounds = sources_map_layer(alone.outputs.exclusion_sources)
    picture = np.asarray(Image.open(io.BytesIO(layer.png)))
    assert picture[..., 0].max() == 255 and (picture[..., 3] == 0).any()  # red: temporal only
    assert picture[..., 2].max() == 0  # blue: no single-date mask
    assert bounds[0] < bounds[2] and bounds[1] < bounds[3]


def test_a_killed_temporal_run_resumes_identically(stack20, tmp_path, kill_after):
    reference = run(stack20.folder, tmp_path, "reference", window_size=16)
    restore = kill_after(5)
    with pytest.raises(KeyboardInterrupt):
        run(stack20.folder, tmp_path, "resumed", window_size=16)
    restore()
    resumed = run(stack20.folder, tmp_path, "resumed", window_size=16)
    assert resumed.record["windows"] == {"total": 16, "reused": 5, "computed": 11}
    for name in ("composite", "count", "exclusion_sources"):
        np.testing.assert_array_equal(
            read(getattr(reference.outputs, name)), read(getattr(resumed.outputs, name)), name
        )
    # other temporal settings are another run: nothing of this one is reused
    other = run(stack20.folder, tmp_path, "other", window_size=16, k=4.0)
    assert other.record["run_key"] != resumed.record["run_key"]
    assert other.record["windows"]["reused"] == 0


def test_a_stack_too_short_for_the_test_runs_without_it_and_says_so(tiny_stack, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="composite.driver"):
        short = run(tiny_stack.folder, tmp_path, "short", temporal="veto")  # 10 dates < 15
    assert "Temporal test (masks.temporal=veto) not run" in caplog.text
    assert "min_dates=15" in caplog.text
    temporal = json.loads(short.outputs.run_json.read_text())["temporal"]
    assert temporal["applied"] is False and "10 dates" in temporal["skipped_because"]
    assert short.outputs.exclusion_sources is None
    mask_only = run(tiny_stack.folder, tmp_path, "mask_only", temporal="none")
    assert short.record["run_key"] == mask_only.record["run_key"]
    np.testing.assert_array_equal(read(short.outputs.composite), read(mask_only.outputs.composite))


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [([], "veto"), (["masks.temporal=none"], "none"), (["masks.temporal=veto"], "veto")],
)
def test_masks_temporal_picks_the_rule_and_veto_is_the_default(tmp_path, overrides, rule):
    """``masks.temporal`` on the command line reaches the composite's temporal settings;
    without it a composite runs the test by ``veto``; ``none`` switches the test off."""
    cfg = compose_composite([f"stack.source={tmp_path}", "masks.source=scl", *overrides], tmp_path)
    settings = settings_from_config(cfg).masks.temporal_settings
    assert settings == TemporalSettings(rule=rule)
    assert (settings.skip_reason(100) is None) == (rule != "none")


def test_haze_guard_is_on_by_default_and_off_from_the_command_line(tmp_path):
    cfg = compose_composite(
        [f"stack.source={tmp_path}", "masks.source=scl", "masks.temporal_test.haze_ratio=null"],
        tmp_path,
    )
    assert settings_from_config(cfg).masks.temporal_settings.test.haze_ratio is None
    default = compose_composite([f"stack.source={tmp_path}", "masks.source=scl"], tmp_path)
    assert settings_from_config(default).masks.temporal_settings.test.haze_ratio == 1.0
