"""trace_export._speedups (C): packets parsed back with the perfetto wheel's protos, bad
input refused with the argument named, distinct() against numpy."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import perfetto.protos.perfetto.trace.perfetto_trace_pb2 as pb  # type: ignore[import-untyped]
import pytest

from trace_export._speedups import encode
from trace_export.distinct import distinct

BEGIN, END, INSTANT, COUNTER = 1, 2, 3, 4
UINT, POINTER, STRING_IID = 3, 7, 17


def markers(rows: list[tuple[int, int, int, int, int, int, int, int]]) -> dict[str, np.ndarray]:
    """Marker columns from (t, kind, seq, name, flow, value, ref, track) rows."""
    cols = list(zip(*rows, strict=True))
    types = [np.int64, np.uint8, np.int64, np.int64, np.uint64, np.int64, np.int64, np.uint64]
    names = ["t", "kind", "seq", "name", "flow", "value", "ref", "track"]
    return {n: np.array(c, t) for n, c, t in zip(names, cols, types, strict=True)}


# two calls (rows 0 and 1) of two event types: type 0 annotated with a pointer (key 1) and a
# string iid (key 2), type 1 with an integer (key 3); row 1 is incomplete (key 9)
ROW_TYPE = np.array([0, 1], np.int32)
ROW_FLAGS = np.array([0, 1], np.uint32)
PTR = np.array([0x7F3A10001F40, 0], np.uint64)
STR = np.array([5, 0], np.uint64)
NUM = np.array([0, 300], np.uint64)
PLAN = (np.array([0, 2, 3], np.int32), np.array([1, 2, 3], np.uint32),
        np.array([POINTER, STRING_IID, UINT], np.uint8), np.array([0, 1, 2], np.int32))  # fmt: skip


def run(m: dict[str, np.ndarray], clock: np.ndarray, order: np.ndarray | None = None,
        piece: int = 1 << 20, **change: Any) -> tuple[list[bytes], int, int, int]:  # fmt: skip
    args: dict[str, Any] = {
        "order": np.arange(len(m["t"]), dtype=np.int64) if order is None else order,
        **m,
        "clock": clock,
        "row_type": ROW_TYPE,
        "row_flags": ROW_FLAGS,
        "plan_start": PLAN[0],
        "plan_key": PLAN[1],
        "plan_field": PLAN[2],
        "plan_col": PLAN[3],
        "cols": (PTR, STR, NUM),
        "incomplete_key": 9,
        "piece": piece,
    }
    args.update(change)
    return encode(*args.values())


SAMPLE = [
    (100, BEGIN, 1, 4, 0x30, 0, 0, 0),  # call 0 starts a flow
    (150, BEGIN, 2, 6, 0, 0, 1, 0),  # call 1 (incomplete), another sequence
    (200, END, 1, 0, 0, 0, -1, 0),
    (200, INSTANT, 1, 4, 0x30, 0, -1, 0x1234567890),  # on the queue's track, ends the flow
    (260, COUNTER, 3, 0, 0, -5, -1, 0),  # negative: written as 0
    (300, COUNTER, 3, 0, 0, 1 << 40, -1, 0),
    (310, BEGIN, 2, 7, 0, 0, -1, 0),  # a Python frame: name only
]


def parsed(pieces: list[bytes]) -> list[Any]:
    trace = pb.Trace()
    trace.ParseFromString(b"".join(pieces))
    return list(trace.packet)


def test_packets_read_back_as_written() -> None:
    clock = np.array([0, 90, 100, 250], np.int64)
    pieces, begins, flows, points = run(markers(SAMPLE), clock)
    assert (begins, flows, points) == (3, 1, 2)
    p = parsed(pieces)
    assert [x.timestamp for x in p] == [10, 50, 100, 0, 10, 40, 160]  # deltas per sequence
    assert list(clock) == [0, 200, 310, 300]
    assert [x.trusted_packet_sequence_id for x in p] == [1, 2, 1, 1, 3, 3, 2]
    assert [x.track_event.type for x in p] == [1, 1, 2, 3, 4, 4, 1]
    call0, call1 = p[0].track_event, p[1].track_event
    assert (call0.name_iid, list(call0.flow_ids)) == (4, [0x30])
    assert [(a.name_iid, a.pointer_value, a.string_value_iid)
            for a in call0.debug_annotations] == [(1, 0x7F3A10001F40, 0), (2, 0, 5)]  # fmt: skip
    assert not call1.flow_ids
    assert [(a.name_iid, a.uint_value) for a in call1.debug_annotations] == [(3, 300), (9, 1)]
    instant = p[3].track_event
    assert (instant.name_iid, instant.track_uuid) == (4, 0x1234567890)
    assert list(instant.terminating_flow_ids) == [0x30]
    assert [x.track_event.counter_value for x in p[4:6]] == [0, 1 << 40]
    frame = p[6].track_event
    assert (frame.name_iid, len(frame.debug_annotations)) == (7, 0)


def test_pieces_hold_whole_packets_in_order() -> None:
    m = markers(SAMPLE)
    whole, *_ = run(m, np.array([0, 90, 100, 250], np.int64))
    split, *_ = run(m, np.array([0, 90, 100, 250], np.int64), piece=40)
    assert len(whole) == 1 and len(split) > 2
    assert b"".join(split) == whole[0]
    assert sum(len(parsed([s])) for s in split) == len(SAMPLE)


def test_markers_in_the_order_given() -> None:
    m = markers(SAMPLE)
    order = np.array([1, 0, 6], np.int64)
    pieces, begins, _, _ = run(m, np.array([0, 90, 100, 250], np.int64), order=order)
    assert begins == 3
    assert [x.track_event.name_iid for x in parsed(pieces)] == [6, 4, 7]


@pytest.mark.parametrize(("change", "error", "says"), [
    ({"t": np.zeros(7, np.int32)}, TypeError, "t: items of 4 bytes"),
    ({"t": np.zeros(7, np.float64)}, TypeError, "t: items of format 'd', not integers"),
    ({"cols": (PTR, STR, NUM.astype(np.int32))}, TypeError, "cols[2]: items of 4 bytes"),
    ({"seq": np.zeros(6, np.int64)}, ValueError, "seq: 6 markers, t has 7"),
    ({"order": np.array([7], np.int64)}, IndexError, "order[0]: no marker 7"),
    ({"clock": np.array([0, 90, 100], np.int64)}, ValueError, "no sequence 3"),
    ({"clock": np.array([0, 120, 100, 250], np.int64)}, ValueError, "precedes sequence 1"),
    ({"row_type": np.array([0, 2], np.int32)}, ValueError, "row_type[1]: no plan for 2"),
    ({"plan_col": np.array([0, 1, 3], np.int32)}, ValueError, "plan entry 2: column 3"),
    ({"plan_field": np.array([7, 17, 5], np.uint8)}, ValueError, "field 5"),
    ({"cols": (PTR, STR, NUM[:1])}, ValueError, "cols[2]: 1 rows"),
    ({"piece": 0}, ValueError, "piece: 0"),
])  # fmt: skip
def test_bad_input_is_refused_and_no_clock_moves(change: dict[str, Any], error: type,
                                                 says: str) -> None:  # fmt: skip
    clock = change.get("clock", np.array([0, 90, 100, 250], np.int64))
    before = clock.copy()
    with pytest.raises(error, match=re.escape(says)):
        run(markers(SAMPLE), clock, **{k: v for k, v in change.items() if k != "clock"})
    assert (clock == before).all()


def test_a_begin_refers_to_a_row_it_has() -> None:
    rows = [(100, BEGIN, 1, 4, 0, 0, 5, 0)]
    with pytest.raises(IndexError, match="no row 5"):
        run(markers(rows), np.zeros(2, np.int64))


@pytest.mark.parametrize("cardinality", [1, 3, 200, 50_000])
def test_distinct_agrees_with_numpy(cardinality: int) -> None:
    rng = np.random.default_rng(cardinality)
    x = rng.integers(0, cardinality, 60_000).astype(np.int64) * 7919 - 3
    values, first, inverse = distinct(x)
    assert (values[inverse] == x).all()
    assert (x[first] == values).all()
    assert sorted(values.tolist()) == np.unique(x).tolist()
    assert (np.diff(first) > 0).all()  # in the order they first appear
    _, numpy_first = np.unique(x, return_index=True)
    assert sorted(first.tolist()) == sorted(numpy_first.tolist())


def test_distinct_of_unsigned_and_empty_columns() -> None:
    x = np.array([1 << 63, 5, 1 << 63, (1 << 64) - 1, 5], np.uint64)
    values, first, inverse = distinct(x)
    assert values.dtype == np.uint64
    assert values.tolist() == [1 << 63, 5, (1 << 64) - 1]
    assert (first.tolist(), inverse.tolist()) == ([0, 1, 3], [0, 1, 0, 2, 1])
    empty = distinct(np.zeros(0, np.int32))
    assert len(empty.values) == len(empty.first) == len(empty.inverse) == 0
