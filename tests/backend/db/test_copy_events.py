"""copy_events + from_copy (COPY binary read in C) give the chunks stream_events + from_rows
give, on a real PostgreSQL; copy_rows refuses malformed tuples, naming the row and field."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from backend.repo.events import copy_events, stream_events
from backend.trace_build import TraceSpec, build_trace
from tests.backend.trace_data import calls, perfetto_slices, store
from trace_export import ROW_COLUMNS, EventChunk, from_copy, from_rows
from trace_export._rows import copy_rows


def same(a: EventChunk, b: EventChunk) -> None:
    for f in ("ts", "dur", "pid", "tid", "ret", "flags"):
        assert getattr(a, f).tolist() == getattr(b, f).tolist(), f
    for codes, table in (("name", "names"), ("comm", "comms"), ("machine", "machines")):
        assert [getattr(a, table)[i] for i in getattr(a, codes)] == \
            [getattr(b, table)[i] for i in getattr(b, codes)], codes  # fmt: skip
    assert sorted(a.args) == sorted(b.args)
    for k in a.args:
        assert a.args[k].tolist() == b.args[k].tolist(), k


async def test_copy_reads_what_the_cursor_reads(migrated_dsn: str) -> None:
    ev = calls(1000, pid=4242)
    ev["ret"][::7] = -1  # negative return codes and a few more arguments
    ev["grid_x"], ev["block_x"] = 80, 256
    ev["flags"][::50] = 1
    await store(migrated_dsn, uuid.uuid4(), ev)
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        copied = list(copy_events(conn, "pid = %s", [4242], ROW_COLUMNS, 300))
        read = list(stream_events(conn, "pid = %s", [4242], ROW_COLUMNS, 300))
    assert [n for _, n in copied] == [len(r) for r in read] == [300, 300, 300, 100]
    for (data, n), rows in zip(copied, read, strict=True):
        same(from_copy(data, n, "CUDA"), from_rows(rows, "CUDA"))
    assert from_copy(*copied[0], "CUDA").ret.min() == -1


async def test_copy_of_nothing_is_no_chunk(migrated_dsn: str) -> None:
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        assert list(copy_events(conn, "pid = %s", [1], ROW_COLUMNS, 10)) == []
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def tuple_of(*fields: bytes | None) -> bytes:
    out = len(fields).to_bytes(2, "big")
    for f in fields:
        out += b"\xff\xff\xff\xff" if f is None else len(f).to_bytes(4, "big") + (f or b"")
    return out


GOOD = [(5).to_bytes(8, "big"), (2).to_bytes(8, "big"), (7).to_bytes(4, "big"),
        (7).to_bytes(4, "big"), (-1).to_bytes(8, "big", signed=True), (0).to_bytes(4, "big"),
        b"cudaMalloc", b"train", b"m", b'{"ptr":9,"bytes":4096}']  # fmt: skip


def read(data: bytes, n: int) -> EventChunk:
    return from_copy(data, n, "CUDA")


def test_a_tuple_reads_into_its_columns() -> None:
    c = read(tuple_of(*GOOD) * 2, 2)
    assert c.ts.tolist() == [5, 5] and c.ret.tolist() == [-1, -1]
    assert c.names == ("cudaMalloc",) and c.args["bytes"].tolist() == [4096, 4096]


@pytest.mark.parametrize(("data", "n", "says"), [
    (tuple_of(*GOOD[:9]), 1, "row 0: not a tuple of 10 fields"),
    (tuple_of(*GOOD[:6], None, *GOOD[7:]), 1, "row 0, field 6: NULL"),
    (tuple_of(GOOD[0][:3], *GOOD[1:]), 1, "row 0, field 0: not of its type's size"),
    (tuple_of(*GOOD)[:-5], 1, "row 0, field 9: not of its type's size"),
    (tuple_of(*GOOD), 2, "row 1: not a tuple of 10 fields"),
    (tuple_of(*GOOD) + b"\x00", 1, "1 bytes after row 1"),
    (tuple_of(*GOOD[:6], b"\xff\xfe", *GOOD[7:]), 1, "utf-8"),
])  # fmt: skip
def test_malformed_tuples_are_refused(data: bytes, n: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read(data, n)


def test_copy_rows_checks_its_columns() -> None:
    ints = tuple(np.empty(1, np.int64) for _ in range(6))
    codes = tuple(np.empty(1, np.int32) for _ in range(3))
    with pytest.raises(ValueError, match="columns of fewer than 2 rows"):
        copy_rows(tuple_of(*GOOD) * 2, 2, ints, ({}, {}, {}), codes, np.empty(4, np.int64))
    with pytest.raises(TypeError, match="tables\\[1\\]: not a dict"):
        copy_rows(tuple_of(*GOOD), 1, ints, ({}, [], {}), codes, np.empty(2, np.int64))  # type: ignore[arg-type]


def test_random_damage_to_copy_data_is_refused_or_read_within_bounds() -> None:
    """Bytes of two tuples changed or cut at random: copy_rows reads them (lengths still
    fit) or raises ValueError; it never reads past the buffer."""
    rng = np.random.default_rng(3)
    good = tuple_of(*GOOD) * 2
    for _ in range(3000):
        data = bytearray(good)
        for at in rng.integers(0, len(data), rng.integers(1, 4)).tolist():
            data[at] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(0, len(data)))]
        try:
            c = read(bytes(data), 2)
        except ValueError:
            continue
        assert len(c) == 2


async def test_a_trace_is_the_same_read_with_copy_or_the_cursor(
    migrated_dsn: str, tmp_path: Path
) -> None:
    """build_trace with a side connection reads with COPY, without one through the cursor:
    the same trace file either way."""
    ev = calls(700, pid=4343)
    ev["grid_x"] = 8
    await store(migrated_dsn, uuid.uuid4(), ev)
    files = []
    with (
        psycopg.connect(migrated_dsn, autocommit=True) as conn,
        psycopg.connect(migrated_dsn, autocommit=True) as side,
    ):
        for other in (side, None):
            spec = TraceSpec(uuid.uuid4(), "pid = 4343", "perfetto", False)
            built = build_trace(conn, spec, tmp_path, stop=threading.Event(), chunk_rows=256,
                                side=other)  # fmt: skip
            assert built.events == 700
            files.append((tmp_path / str(spec.trace_id)).read_bytes())
    assert files[0] == files[1]
    assert perfetto_slices(files[0]) == 700
