"""The distinct values of a column, in the order they first appear.

The trace writer groups each chunk's calls by thread, queue, process and string a dozen
times over; numpy's unique sorts to do that, the C hash table here does not
(trace_export._speedups).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from trace_export._speedups import distinct as _distinct

__all__ = ["Distinct", "distinct"]


class Distinct(NamedTuple):
    values: np.ndarray  # the distinct values, in the order they first appear
    first: np.ndarray  # int64: where each first appears
    inverse: np.ndarray  # int64: each element's index in values


def distinct(x: np.ndarray) -> Distinct:
    """x's distinct values (x: integers of up to 64 bits, compared as such)."""
    x = np.ascontiguousarray(x)
    if x.dtype.itemsize != 8:
        x = x.astype(np.int64)
    inv, first = np.empty(len(x), np.int64), np.empty(len(x), np.int64)
    first = first[: _distinct(x.view(np.int64), inv, first)]
    return Distinct(x[first], first, inv)
