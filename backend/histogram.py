"""A mergeable log-bucketed histogram of durations (nanoseconds), and percentiles from it.

Buckets follow HdrHistogram's layout with ``SUB_BITS`` = 5: values below 32 have a bucket
each; above, every power of two [2**e, 2**(e+1)) is cut into 32 equal buckets. A bucket
[lo, hi) is therefore at most lo/32 wide, and a percentile read from it is within
**+3.125 %** of the true value (never below it: the reported value is the bucket's largest
member, capped at the largest value seen). Histograms merge by adding counts per bucket, so
per-interval histograms give exact percentiles of any union of intervals, at the same error.

The bucket of a value is computed the same way in numpy (``bucket_of``) and in PostgreSQL
(``BUCKET_SQL``), so aggregates from InfluxDB and from the ``events`` table agree exactly.

Percentile rank: nearest rank, ``ceil(q * n)`` (1-based) of the n values, as in
``percentile(q)`` over the sorted values; the reported value is then
``min(bucket_upper_bound(b) - 1, max)`` for the bucket b holding that rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "BUCKET_SQL",
    "RELATIVE_ERROR",
    "SUB_BITS",
    "bucket_bounds",
    "bucket_of",
    "percentile",
]

SUB_BITS = 5
_SUB = 1 << SUB_BITS
RELATIVE_ERROR = 1 / _SUB  # 3.125 %

#: PostgreSQL expression for the bucket of the bigint column ``duration_ns`` (>= 0);
#: needs ``e`` from the LATERAL below it: see backend.repo.metrics.
BUCKET_SQL = (
    "CASE WHEN duration_ns < 32 THEN duration_ns "
    "ELSE (e - 4) * 32 + ((duration_ns >> (e - 5)) & 31) END"
)
#: floor(log2(duration_ns)), exact for bigints: a float estimate corrected by shifts.
EXPONENT_SQL = (
    "(SELECT e0 - (duration_ns < (1::int8 << e0))::int"
    " + (e0 < 62 AND duration_ns >= (1::int8 << (e0 + 1)))::int"
    " FROM (SELECT least(floor(ln(greatest(duration_ns, 1)::float8) / ln(2.0))::int, 62) AS e0) z)"
)


def bucket_of(values: np.ndarray) -> np.ndarray:
    """The bucket index (int64) of each value (non-negative integers below 2**63)."""
    v = values.astype(np.int64, copy=False)
    e = np.floor(np.log2(np.maximum(v, 1).astype(np.float64))).astype(np.int64)
    e = np.minimum(e, 62)  # 2**63 - 1 rounds up to 2**63
    # float64 rounds values near powers of two above 2**53: correct by one either way
    e -= (v < (np.int64(1) << e)).astype(np.int64)
    e += ((e < 62) & (v >= (np.int64(1) << np.minimum(e + 1, 62)))).astype(np.int64)
    shift = np.maximum(e - SUB_BITS, 0)
    big = (e - (SUB_BITS - 1)) * _SUB + ((v >> shift) & (_SUB - 1))
    return np.where(v < _SUB, v, big)


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """[lo, hi) of the values a bucket holds."""
    if bucket < _SUB:
        return bucket, bucket + 1
    e = bucket // _SUB + SUB_BITS - 1
    width = 1 << (e - SUB_BITS)
    lo = (1 << e) + (bucket % _SUB) * width
    return lo, lo + width


def percentile(
    counts: Mapping[int, int] | Iterable[tuple[int, int]], q: float, maximum: int | None = None
) -> int | None:
    """The q-quantile (0 < q <= 1) of a histogram {bucket: count}; None when it is empty.

    The largest value of the bucket holding rank ceil(q * n), capped at maximum if given.
    """
    items = sorted(counts.items() if isinstance(counts, Mapping) else counts)
    n = sum(c for _, c in items)
    if n <= 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    seen = 0
    for b, c in items:
        seen += c
        if seen >= rank:
            top = bucket_bounds(b)[1] - 1
            return top if maximum is None else min(top, maximum)
    raise AssertionError("unreachable")
