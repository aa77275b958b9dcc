"""backend.event_writer and backend.event_rows on a real PostgreSQL: exact rows, idempotence,
partitions, garbage."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest

from backend.event_rows import COLUMNS, ID_SHIFT, encode_copy
from backend.event_writer import EventWriter
from backend.repo.partitions import DAY_NS, partition_name
from xpucore import abi

NOW = int(datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()) * 10**9
MONO = 10**15  # the agent's monotonic clock at NOW - 1 h (11.6 days of uptime)
OFFSET = NOW - 3600 * 10**9 - MONO  # mono_to_real_ns
U64 = 2**64 - 1
U32 = 2**32 - 1
NUMERIC = ("stream", "ptr", "ptr2", "bytes", "grid_x", "grid_y", "grid_z",
           "block_x", "block_y", "block_z", "kind")  # fmt: skip


def writer(**kw: Any) -> EventWriter:
    return EventWriter(clock_ns=lambda: NOW, **kw)


def batch(ev: np.ndarray, monitor: uuid.UUID | str, **kw: Any) -> abi.Batch:
    kw.setdefault("machine_id", "m" * 64)
    kw.setdefault("mono_to_real_ns", OFFSET)
    kw.setdefault("agent_pid", 4100)
    return abi.decode_batch(abi.encode_batch(ev, monitor_id=str(monitor), **kw))


def every_function(comms: list[bytes]) -> np.ndarray:
    """One event per function id the header knows plus two it does not, distinct values."""
    funcs = [*abi.function_names("CUDA"), 0x1234, 0xFF00]
    ev = abi.empty_events(len(funcs))
    n = len(ev)
    ev["func"] = funcs
    ev["ts_ns"] = MONO + np.arange(n) * 1_000_003
    ev["duration_ns"] = np.arange(n) * 977 + 1
    ev["ret"] = np.arange(n) - n // 2
    ev["ret"][0] = -(2**63)
    ev["pid"] = 2**31 - 1
    ev["tid"] = 1000 + np.arange(n)
    ev["cpu"] = np.arange(n) % 7
    ev["flags"] = np.arange(n) % 2  # every other one incomplete
    ev["flags"][1] = 0xFFFF
    ev["comm"] = [comms[i % len(comms)] for i in range(n)]
    for i, name in enumerate(NUMERIC):
        top = U64 if ev.dtype[name].itemsize == 8 else U32
        ev[name] = [(top, 0, 1, 9, 10, 99, 100 + i, 123456789 + i)[j % 8] for j in range(n)]
    return ev


def expected(b: abi.Batch, batch_id: int) -> list[dict[str, Any]]:
    out = []
    for i, (rec, flags) in enumerate(
        zip(abi.event_records(b), b.events["flags"].tolist(), strict=True)
    ):
        out.append({
            "ts": rec["ts_ns"], "id": (batch_id << ID_SHIFT) | i,
            "duration_ns": rec["duration_ns"], "ret": rec["ret"],
            "monitor_id": uuid.UUID(b.monitor_id), "pid": rec["pid"], "tid": rec["tid"],
            "cpu": rec["cpu"], "flags": flags, "machine_id": b.machine_id, "comm": rec["comm"],
            "event_type": rec["func"], "event_data": rec["args"],
        })  # fmt: skip
    return out


async def stored(conn: psycopg.AsyncConnection[Any], monitor: uuid.UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM events WHERE monitor_id = %s ORDER BY id", (monitor,)
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in await cur.fetchall()]


async def batch_ids(conn: psycopg.AsyncConnection[Any], monitor: uuid.UUID) -> dict[int, int]:
    cur = await conn.execute("SELECT seq, id FROM event_batches WHERE monitor_id = %s", (monitor,))
    return dict(await cur.fetchall())


@pytest.mark.parametrize("offload", [True, False])
async def test_every_column_round_trips(pg_dsn: str, offload: bool) -> None:
    monitor = uuid.uuid4()
    comms = [b"python", b"exactly16bytes!!", b"ab\0cd", b"bad\xff\xfeutf8", b"", b"\xe4\xb8\xad"]
    b0 = batch(every_function(comms), monitor, seq=0)
    b1 = batch(every_function(comms[::-1]), monitor, seq=1, machine_id="short")
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        result = await writer(offload=offload).write(conn, [b0, b1])
        assert (result.events, result.batches, result.duplicates, result.rejected) == (
            len(b0.events) + len(b1.events),
            2,
            0,
            (),
        )
        ids = await batch_ids(conn, monitor)
        rows = await stored(conn, monitor)
    want = expected(b0, ids[0]) + expected(b1, ids[1])
    assert rows == sorted(want, key=lambda r: r["id"])
    # Spot checks of what expected() derives from xpucore.abi, so the oracle is not circular.
    launch = next(r for r in rows if r["event_type"] == "cudaLaunchKernel")
    assert list(launch["event_data"]) == [
        "func",
        "grid",
        "block",
        "shared_mem",
        "stream",
        "device",
        "py_stack",
    ]
    assert {r["comm"] for r in rows} == {"python", "exactly16bytes!!", "ab", "bad\ufffd\ufffdutf8",
                                         "", "\u4e2d"}  # fmt: skip
    assert {r["event_type"] for r in rows} >= {"fn_0x1234", "fn_0xff00", "cudaMemcpyAsync"}
    assert rows[0]["ts"] == MONO + OFFSET


async def test_event_data_is_compact_json(pg_dsn: str) -> None:
    monitor = uuid.uuid4()
    ev = abi.empty_events(500)
    ev["ts_ns"] = MONO + np.arange(500)
    ev["func"] = 0x500  # cudaMemcpyAsync
    ev["ptr"], ev["ptr2"], ev["bytes"] = 140 * 10**12, 94 * 10**12, 4096
    ev["kind"], ev["stream"] = 1, 0
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await writer().write(conn, [batch(ev, monitor)])
        cur = await conn.execute(
            "SELECT DISTINCT event_data::text, (event_data::jsonb)::text FROM events"
            " WHERE monitor_id = %s", (monitor,))  # fmt: skip
        texts = await cur.fetchall()
    assert len(texts) == 1
    text, as_jsonb = texts[0]
    compact = (
        '{"dst":140000000000000,"src":94000000000000,"bytes":4096,"kind":1,"stream":0,'
        '"device":0,"py_stack":0}'
    )
    assert text.rstrip(" ") == compact and len(text) - len(compact) < 8
    assert json.loads(as_jsonb) == json.loads(compact)


async def test_random_values_round_trip(pg_dsn: str) -> None:
    """Mixed functions and magnitudes: exact-width groups and the padded group for the rest."""
    rng = np.random.default_rng(7)
    monitor = uuid.uuid4()
    n = 12_000
    ev = abi.empty_events(n)
    ev["ts_ns"] = MONO + np.sort(rng.integers(0, 10**12, n))
    ev["func"] = rng.choice([*abi.function_names("CUDA"), 0x1200], n)
    ev["ret"] = rng.integers(-(2**63), 2**63 - 1, n, endpoint=True)
    ev["duration_ns"] = rng.integers(0, 2**63 - 1, n)
    ev["tid"] = rng.integers(0, 2**31 - 1, n)
    ev["comm"] = rng.choice([b"a", b"worker-1", b"\x80"], n)
    for name in NUMERIC:
        top = 2 ** (ev.dtype[name].itemsize * 8) - 1
        # Every digit count, skewed to a few common ones as real arguments are.
        digits = np.where(
            rng.random(n) < 0.05,
            rng.integers(1, len(str(top)) + 1, n),
            rng.choice([1, 3, 15 if top > U32 else 4], n, p=[0.5, 0.3, 0.2]),
        )
        lo = (10 ** (digits - 1).astype(np.float64)).astype(np.uint64)
        lo[digits == 1] = 0
        hi = np.minimum(10 ** digits.astype(np.float64) - 1, float(top))
        ev[name] = lo + ((hi - lo) * rng.random(n) * 0.999).astype(np.uint64)
        ev[name][np.flatnonzero(digits == len(str(top)))[:3]] = top
    b = batch(ev, monitor, seq=3)
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        result = await writer().write(conn, [b])
        assert result.events == n
        ids = await batch_ids(conn, monitor)
        rows = await stored(conn, monitor)
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE event_data::text LIKE '%%: %%'), count(*)"
            " FROM events WHERE monitor_id = %s", (monitor,))  # fmt: skip
        padded, total = await cur.fetchone() or (0, 0)
    assert rows == expected(b, ids[3])
    assert 0 < padded < total  # both kinds of group were written


async def test_rows_go_in_in_time_order(pg_dsn: str) -> None:
    """Batches of two agents over the same stretch of time: the COPY interleaves their rows."""
    m1, m2 = uuid.uuid4(), uuid.uuid4()
    ev = abi.empty_events(1000)
    ev["ts_ns"] = MONO + np.arange(1000) * 2
    ev["func"] = np.where(np.arange(1000) % 3, 0x100, 0xC00)
    later = ev.copy()
    later["ts_ns"] += 1
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        await writer().write(conn, [batch(ev, m1), batch(later, m2)])
        cur = await conn.execute(
            "SELECT ts FROM events WHERE monitor_id IN (%s, %s) ORDER BY ctid", (m1, m2)
        )
        ts = [r[0] for r in await cur.fetchall()]
    assert len(ts) == 2000 and ts == sorted(ts)


async def test_same_batch_is_stored_once(pg_dsn: str) -> None:
    monitor = uuid.uuid4()
    ev = every_function([b"python"])
    b0, b1 = batch(ev, monitor, seq=0), batch(ev, monitor, seq=1)
    other_run = batch(ev, monitor, seq=0, agent_pid=4200)  # the agent restarted: seq from 0
    w = writer()
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        r = await w.write(conn, [b0, b0])
        assert (r.batches, r.duplicates, r.events) == (1, 1, len(ev))
        r = await w.write(conn, [b0, b1, other_run])
        assert (r.batches, r.duplicates, r.events) == (2, 1, 2 * len(ev))
        # A new writer (the backend restarted) still finds what is stored.
        r = await writer().write(conn, [b1, other_run])
        assert (r.batches, r.duplicates, r.events) == (0, 2, 0)
        rows = await stored(conn, monitor)
    assert len(rows) == 3 * len(ev) == len({r["id"] for r in rows})


async def test_concurrent_writers_store_a_batch_once(pg_dsn: str) -> None:
    monitor = uuid.uuid4()
    b = batch(every_function([b"python"]), monitor)
    w = writer()
    async with (
        await psycopg.AsyncConnection.connect(pg_dsn) as c1,
        await psycopg.AsyncConnection.connect(pg_dsn) as c2,
    ):
        results = await asyncio.gather(w.write(c1, [b]), writer().write(c2, [b]))
        assert sorted((r.batches, r.duplicates) for r in results) == [(0, 1), (1, 0)]
        assert len(await stored(c1, monitor)) == len(b.events)


async def test_batches_are_registered_in_key_order(pg_dsn: str) -> None:
    """Whatever order batches come in, write() registers them in (monitor, agent pid, seq)
    order. Two ingest writers given the same resent batches then wait on each other's
    unique-index entries in one order, never in a cycle: no deadlock."""
    monitor = uuid.uuid4()
    ev = every_function([b"python"])
    batches = [batch(ev, monitor, seq=s) for s in range(8)]
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        r = await writer().write(conn, batches[::-1])
        assert r.batches == 8
        cur = await conn.execute(
            "SELECT seq FROM event_batches WHERE monitor_id = %s ORDER BY id", (monitor,)
        )
        assert [row[0] for row in await cur.fetchall()] == list(range(8))


async def test_daily_partitions_are_created_on_demand(pg_dsn: str) -> None:
    monitor = uuid.uuid4()
    midnight = NOW - 12 * 3600 * 10**9
    ev = abi.empty_events(4)
    ev["ts_ns"] = [midnight - 2, midnight - 1, midnight, midnight + 1]
    ev["ts_ns"] -= OFFSET
    w = writer()
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await w.write(conn, [batch(ev, monitor)])
        cur = await conn.execute(
            "SELECT tableoid::regclass::text, ts FROM events WHERE monitor_id = %s ORDER BY ts",
            (monitor,),
        )
        where = await cur.fetchall()
        day = midnight // DAY_NS
        assert [p for p, _ in where] == [partition_name(day - 1)] * 2 + [partition_name(day)] * 2
        assert partition_name(day) == "events_20260310"
        cur = await conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c"
            " WHERE c.relname = %s", (partition_name(day),))  # fmt: skip
        bound = (await cur.fetchone() or [""])[0]
        assert bound == f"FOR VALUES FROM ('{day * DAY_NS}') TO ('{(day + 1) * DAY_NS}')"
        # Each of the partition's indexes is a partition of one of the parent's indexes.
        cur = await conn.execute(
            "SELECT p.relname FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indexrelid"
            " JOIN pg_class p ON p.oid = h.inhparent WHERE i.indrelid = %s::regclass",
            (partition_name(day),))  # fmt: skip
        assert sorted(r[0] for r in await cur.fetchall()) == [
            "events_monitor_ts_idx",
            "events_pid_ts_idx",
            "events_pkey",
            "events_type_ts_idx",
        ]
        # A partition dropped behind the writer's back (retention) is created again.
        await conn.execute(f"DROP TABLE {partition_name(day - 1)}")
        r = await w.write(conn, [batch(ev, monitor, seq=1)])
        assert r.events == 4


GOOD = every_function([b"python"])


def with_field(name: str, value: int) -> np.ndarray:
    ev = GOOD.copy()
    ev[name][3] = value
    return ev


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"monitor_id": "mon-1"}, "not a UUID"),
        ({"machine_id": ""}, "machine_id is empty"),
        ({"mono_to_real_ns": 0}, "outside"),  # 1970: no wall-clock offset
        ({"mono_to_real_ns": OFFSET + 2 * DAY_NS}, "outside"),  # the future
        ({"mono_to_real_ns": OFFSET - 8 * DAY_NS}, "outside"),  # older than a week
        ({"mono_to_real_ns": -(2**62)}, "clock offset"),
        ({"seq": 2**63}, "seq"),
        ({"kernel_drops": 2**64 - 1}, "kernel_drops"),
        ({"agent_pid": 2**31}, "agent_pid"),
        ({"events": with_field("pid", 2**31)}, "pid"),
        ({"events": with_field("tid", U32)}, "tid"),
        ({"events": with_field("cpu", 2**31)}, "cpu"),
        ({"events": with_field("duration_ns", 2**63)}, "duration_ns"),
        ({"events": with_field("ts_ns", U64)}, "outside"),
    ],
)
async def test_garbage_batches_are_rejected(pg_dsn: str, kw: dict[str, Any], reason: str) -> None:
    monitor = uuid.uuid4()
    kw.setdefault("monitor_id", str(monitor))
    bad = abi.decode_batch(abi.encode_batch(
        kw.pop("events", GOOD), machine_id=kw.pop("machine_id", "m1"),
        **{"mono_to_real_ns": OFFSET, "seq": 5, **kw}))  # fmt: skip
    good = batch(GOOD, monitor, seq=6)
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        r = await writer().write(conn, [bad, good])
        assert len(r.rejected) == 1 and r.rejected[0].index == 0, r
        assert reason in r.rejected[0].reason
        assert (r.batches, r.events) == (1, len(GOOD))
        assert set(await batch_ids(conn, monitor)) == {6}
        assert len(await stored(conn, monitor)) == len(GOOD)


async def test_failed_copy_stores_nothing(migrated_dsn: str) -> None:
    """The batch registration and its rows commit together or not at all."""
    monitor = uuid.uuid4()
    ev = GOOD.copy()
    ev["pid"][-1] = 666
    b = batch(ev, monitor)
    w = writer()
    async with await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True) as conn:
        await conn.execute("ALTER TABLE events ADD CONSTRAINT no_666 CHECK (pid <> 666)")
        with pytest.raises(psycopg.errors.CheckViolation):
            await w.write(conn, [b])
        assert await batch_ids(conn, monitor) == {}
        assert await stored(conn, monitor) == []
        await conn.execute("ALTER TABLE events DROP CONSTRAINT no_666")
        r = await w.write(conn, [b])
        assert (r.batches, r.events) == (1, len(ev))


async def test_empty_final_batch_keeps_the_drop_counters(pg_dsn: str) -> None:
    monitor = uuid.uuid4()
    b = batch(abi.empty_events(0), monitor, seq=9, kernel_drops=12, inflight_drops=3,
              send_drops=1, flags=abi.BATCH_FINAL)  # fmt: skip
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        r = await writer().write(conn, [b])
        assert (r.batches, r.events) == (1, 0)
        cur = await conn.execute(
            "SELECT seq, event_count, kernel_drops, inflight_drops, send_drops, final,"
            " mono_to_real_ns, agent_pid, machine_id FROM event_batches WHERE monitor_id = %s",
            (monitor,),
        )
        assert await cur.fetchall() == [(9, 0, 12, 3, 1, True, OFFSET, 4100, "m" * 64)]


def test_stream_has_copy_header_and_trailer() -> None:
    empty = b"".join(encode_copy([]))
    assert empty == b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8 + b"\xff\xff"
    b = batch(GOOD, uuid.uuid4())
    body = b"".join(encode_copy([(b, 1)]))[19:-2]
    assert int.from_bytes(body[:2], "big") == len(COLUMNS)


async def test_acl_events_round_trip_with_their_text(pg_dsn: str) -> None:
    """ACL events: every function, the op_type text (op types, model and config paths,
    quotes, backslashes, bad UTF-8, the full 47 bytes) as a JSON string in event_data, and
    aclnn launches named by their op."""
    monitor = uuid.uuid4()
    funcs = list(abi.function_names("ACL"))
    texts = [b"Add", b"MatMul", b"", b'q"uote\\back', b"bad\xff", b"x" * 39, b"\xe4\xb8\xad"]
    n = len(funcs) * len(texts) * 3
    ev = abi.empty_events(n, "ACL")
    ev["ts_ns"] = MONO + np.arange(n) * 1013
    ev["func"] = np.tile(funcs, n // len(funcs))
    ev["op_type"] = [texts[(i // len(funcs)) % len(texts)] for i in range(n)]
    ev["tid"] = 7 + np.arange(n) % 5
    ev["comm"] = b"npu-worker"
    for i, name in enumerate(("stream", "ptr", "ptr2", "bytes", "handle", "num", "rank")):
        ev[name] = (np.arange(n) * (i + 3)) ** 3
    b = batch(ev, monitor, seq=0, monitor_type="ACL")
    async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
        result = await writer().write(conn, [b])
        assert result.events == n
        ids = await batch_ids(conn, monitor)
        rows = await stored(conn, monitor)
    assert rows == expected(b, ids[0])
    # not circular: the text as the probe wrote it, the aclnn launches named by it
    nn = [r for r in rows if r["event_type"].startswith("aclnn")]
    ops = {"Add", "MatMul", "", 'q"uote\\back', "bad\ufffd", "x" * 39, "\u4e2d"}
    assert {r["event_type"] for r in nn} == {"aclnn" + op for op in ops}
    op = [r for r in rows if r["event_type"] == "aclopExecuteV2"]
    assert {r["event_data"]["op_type"] for r in op} == {t.decode(errors="replace") for t in texts}
    assert list(op[0]["event_data"]) == [
        "op_type",
        "num_inputs",
        "num_outputs",
        "attr",
        "stream",
        "device",
        "py_stack",
    ]
