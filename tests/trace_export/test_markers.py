"""Markers.order: one stable sort of (time, rank), ties broken as a full lexsort would."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from trace_export.markers import BEGIN, COUNTER, END, INSTANT, Markers

RANK = {END: 0, COUNTER: 1, INSTANT: 2, BEGIN: 3}


def reference(m: Markers) -> list[int]:
    """The order spelt out: time; ends, counter points, instants, begins (an end of no
    duration after its own begin); then tie."""

    def key(i: int) -> tuple[int, int, int]:
        kind, t, tie = int(m.kind[i]), int(m.t[i]), int(m.tie[i])
        rank = 4 if kind == END and tie == -t else RANK[kind]
        return t, rank, tie

    return sorted(range(len(m)), key=key)


@pytest.mark.parametrize("spread", [5, 1000, 1 << 40])
def test_order_matches_the_rules(spread: int) -> None:
    rng = np.random.default_rng(spread)
    n = 3000
    t = rng.integers(0, spread, n) + 1_700_000_000 * 10**9
    kind = rng.choice([BEGIN, END, INSTANT, COUNTER], n).astype(np.uint8)
    tie = rng.integers(-50, 0, n)
    zero = rng.random(n) < 0.05  # ends of calls of no duration: tie is minus their start
    tie[zero & (kind == END)] = -t[zero & (kind == END)]
    m = replace(Markers.empty(n), t=t, kind=kind, tie=tie)
    got = m.order().tolist()
    want = reference(m)
    keys = [(int(m.t[i]), int(m.kind[i]), int(m.tie[i])) for i in got]
    assert keys == [(int(m.t[i]), int(m.kind[i]), int(m.tie[i])) for i in want]


def test_order_of_times_too_far_apart_for_one_key() -> None:
    t = np.array([1 << 62, 0, 1 << 61, 0], np.int64)
    m = replace(Markers.empty(4), t=t, kind=np.array([BEGIN, BEGIN, END, END], np.uint8),
                tie=np.array([0, -5, 0, -1], np.int64))  # fmt: skip
    assert m.order().tolist() == [3, 1, 2, 0]
