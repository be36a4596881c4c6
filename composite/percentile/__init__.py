"""Masked per-pixel percentile over a time stack: the kernel the composite runs on.

`masked_percentile(stack, exclude, q=25, method=...)` returns a `PercentileResult` (composite,
valid-observation count, picked-date index, fallback flags). See `core` for the semantics,
`kernel` for the numba implementation and `ranks` for how it matches numpy exactly.
"""

from composite.percentile.core import NO_VALID_POLICIES, PercentileResult, masked_percentile
from composite.percentile.ranks import METHODS

__all__ = ["METHODS", "NO_VALID_POLICIES", "PercentileResult", "masked_percentile"]
