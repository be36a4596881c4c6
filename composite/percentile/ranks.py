"""Which order statistics numpy's percentile methods read, tabulated for every sample size.

The kernel never evaluates a percentile formula itself: for each q and each possible number of
valid observations n it looks up the 0-based ranks of the order statistics to read and the
interpolation weight, computed here with numpy's own expressions (numpy/lib/_function_base_impl.py,
`_QuantileMethods` and `_get_indexes`). So `lower` and `nearest` pick exactly the observation
numpy picks (`nearest` rounds the virtual index half to even, as `np.around` does) and `linear`
interpolates between the same two observations with the same weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["METHODS", "RankTable", "rank_table"]

METHODS = ("linear", "lower", "nearest")


@dataclass(frozen=True)
class RankTable:
    """Ranks and weights indexed by [q index, n valid observations]; row n = 0 is unused (0)."""

    lower: np.ndarray
    """(n_q, n_max + 1) rank of the lower order statistic (the picked one for lower/nearest)."""
    upper: np.ndarray
    """(n_q, n_max + 1) rank of the upper order statistic; equals `lower` for picking methods."""
    weight: np.ndarray
    """(n_q, n_max + 1) float64 weight of the upper statistic in numpy's lerp; 0 for picks."""


def rank_table(q_percent: np.ndarray, n_max: int, method: str, rank_dtype=np.int16) -> RankTable:
    """Tabulate numpy's `np.percentile(values, q, method=method)` ranks for n = 0..n_max.

    q_percent: 1-D float array of percentiles in [0, 100]; rank_dtype must hold n_max.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; use one of {METHODS}")
    quantiles = np.true_divide(np.asarray(q_percent, dtype=np.float64), 100)[:, None]
    n = np.arange(n_max + 1)[None, :]
    virtual = (n - 1) * quantiles  # numpy: (n - 1) * quantiles for linear, lower and nearest
    if method == "lower":
        lower = np.floor(virtual)
        upper, weight = lower, np.zeros_like(virtual)
    elif method == "nearest":
        lower = np.around(virtual)  # half to even, like numpy
        upper, weight = lower, np.zeros_like(virtual)
    else:
        lower = np.floor(virtual)
        weight = virtual - lower
        upper = lower + 1
        at_top = virtual >= n - 1  # numpy reads the maximum twice there
        lower = np.where(at_top, n - 1, lower)
        upper = np.where(at_top, n - 1, upper)
        weight = np.where(at_top, 0.0, weight)
    empty = np.broadcast_to(n == 0, virtual.shape)
    return RankTable(
        lower=np.where(empty, 0, lower).astype(rank_dtype),
        upper=np.where(empty, 0, upper).astype(rank_dtype),
        weight=np.where(empty, 0.0, weight),
    )
