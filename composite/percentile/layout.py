"""Zero-copy flat views: any strided numpy array as (1-D contiguous memory, element strides).

The kernel reads windows, transposes and time-last stacks alike through one array type (a
read-only 1-D C-contiguous view of the memory the array spans) plus its element strides. One
compiled kernel per dtype then serves every layout, and rows with unit stride are read as
contiguous slices, which numba vectorises (it does not for generic strided arrays).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["flat_view"]


def flat_view(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat, layout) with array[i_0, ..., i_n] == flat[layout[0] + sum(i_k * layout[k + 1])].

    flat is a read-only 1-D view of the memory between the array's lowest and highest element
    (no copy); layout is int64 [offset of element 0, stride of axis 0, ...] in elements. Only an
    array whose byte strides are not multiples of its item size is copied (to C order) first.
    """
    if array.size == 0:
        raise ValueError(f"cannot take a flat view of an empty array of shape {array.shape}")
    itemsize = array.itemsize
    if any(stride % itemsize for stride in array.strides):
        array = np.ascontiguousarray(array)
    strides = [stride // itemsize for stride in array.strides]
    lowest = sum((n - 1) * s for n, s in zip(array.shape, strides, strict=True) if s < 0)
    highest = sum((n - 1) * s for n, s in zip(array.shape, strides, strict=True) if s > 0)
    lowest_corner = array[
        tuple(
            slice(n - 1, n) if s < 0 else slice(0, 1)
            for n, s in zip(array.shape, strides, strict=True)
        )
    ]
    flat = as_strided(
        lowest_corner, shape=(highest - lowest + 1,), strides=(itemsize,), writeable=False
    )
    return flat, np.array([-lowest, *strides], dtype=np.int64)
