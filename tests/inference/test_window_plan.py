"""Sliding-window plans: coverage, strips, and blending weights that never vanish."""

from __future__ import annotations

import numpy as np
import pytest

from cloudseg.inference.windows import WindowPlan, axis_starts, edge_ramp


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (10, 16, 12, (0,)),  # shorter than a window: one window
        (16, 16, 12, (0,)),
        (40, 16, 12, (0, 12, 24)),  # 24 + 16 = 40: the last window ends at the edge exactly
        (41, 16, 12, (0, 12, 24, 25)),  # last window shifted back to end at 41
    ],
)
def test_axis_starts_end_at_the_edge(length, size, stride, expected):
    assert axis_starts(length, size, stride) == expected


@pytest.mark.parametrize(("height", "width"), [(100, 70), (64, 64), (20, 200), (257, 31)])
def test_windows_cover_every_pixel_inside_the_raster(height, width):
    plan = WindowPlan(height, width, window_size=64, overlap=16)
    coverage = np.zeros((height, width), dtype=int)
    for window in plan:
        assert window.row_off >= 0 and window.col_off >= 0
        assert window.row_off + window.height <= height
        assert window.col_off + window.width <= width
        assert (window.height, window.width) == (plan.window_height, plan.window_width)
        coverage[window.toslices()] += 1
    assert coverage.min() >= 1
    assert len(list(plan)) == len(plan)


def test_strips_finish_rows_in_order_and_later_strips_never_touch_them():
    plan = WindowPlan(300, 50, window_size=64, overlap=16)
    previous_stop = 0
    for strip in range(plan.num_strips):
        stop = plan.final_row_stop(strip)
        assert stop > previous_stop
        later = [w for s in range(strip + 1, plan.num_strips) for w in plan.strip_windows(s)]
        assert all(window.row_off >= stop for window in later)
        previous_stop = stop
    assert previous_stop == 300


def test_weights_are_positive_and_one_on_raster_edges():
    plan = WindowPlan(150, 150, window_size=64, overlap=16)
    for window in plan:
        weights = plan.weights(window)
        assert weights.shape == (64, 64)
        assert weights.min() > 0
        if window.row_off == 0:
            np.testing.assert_array_equal(weights[0], weights[plan.overlap])  # no ramp on top
        else:
            assert weights[0].max() < 0.01  # ramped next to the window above
        if window.col_off + window.width == 150:
            np.testing.assert_array_equal(weights[:, -1], weights[:, -plan.overlap - 1])


def test_neighbour_ramps_sum_to_one_over_an_exact_overlap():
    overlap = 16
    falling = edge_ramp(64, overlap, ramp_start=False, ramp_end=True)[-overlap:]
    rising = edge_ramp(64, overlap, ramp_start=True, ramp_end=False)[:overlap]
    np.testing.assert_allclose(falling + rising, 1.0, atol=1e-6)
    assert np.all(np.diff(rising) > 0)


@pytest.mark.parametrize(("size", "overlap"), [(64, 64), (64, -1), (0, 0)])
def test_invalid_plans_are_rejected(size, overlap):
    with pytest.raises(ValueError, match="overlap|window_size"):
        WindowPlan(100, 100, window_size=size, overlap=overlap)
