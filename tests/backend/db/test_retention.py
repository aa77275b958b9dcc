"""Retention on a real PostgreSQL: day partitions past every type's retention are dropped,
a shorter-lived type's rows are deleted from the days it has expired in, the days ingest may
still write to are never dropped, and a partition in use is left for the next round.
event_counts (what the quota of events stored reads) follows every step."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from backend.event_writer import EventWriter
from backend.repo import machines, monitors
from backend.repo.partitions import DAY_NS, partition_name
from backend.retention import Retention, check_settings
from backend.settings import Settings
from xpucore import abi

NOW = int(datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()) * 10**9
TODAY = NOW // DAY_NS
MONO = 10**15
MACHINE = "m" * 64


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with AsyncConnectionPool(
        migrated_dsn, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
    ) as p:
        yield p


async def monitor(pool: AsyncConnectionPool[Any], monitor_type: str) -> uuid.UUID:
    async with pool.connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
        m = await monitors.create_monitor(conn, MACHINE, monitor_type, {"pid": 1}, {}, "")
    mid: uuid.UUID = m["id"]
    return mid


async def store(
    pool: AsyncConnectionPool[Any],
    mid: uuid.UUID,
    day: int,
    n: int,
    seq: int,
    *,
    start_ns: int = 3600 * 10**9,
    step_ns: int = 1000,
) -> None:
    """n calls from start_ns into UTC day `day`, through the ingest's writer."""
    ev = abi.empty_events(n)
    ev["ts_ns"] = MONO + start_ns + np.arange(n) * step_ns
    ev["pid"] = ev["tid"] = 7
    batch = abi.decode_batch(abi.encode_batch(
        ev, monitor_id=str(mid), machine_id=MACHINE, mono_to_real_ns=day * DAY_NS - MONO,
        agent_pid=100, seq=seq))  # fmt: skip
    async with pool.connection() as conn:
        result = await EventWriter(clock_ns=lambda: NOW, max_age_ns=100 * DAY_NS).write(
            conn, [batch]
        )
    assert result.events == n, result


async def rows(pool: AsyncConnectionPool[Any]) -> dict[tuple[int, str], int]:
    """{(day, monitor type): events} as stored."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT e.ts / %s, m.monitor_type, count(*) FROM events e "
            "JOIN monitors m ON m.id = e.monitor_id GROUP BY 1, 2",
            (DAY_NS,),
        )
        return {(int(d), t): n for d, t, n in await cur.fetchall()}


async def counted(pool: AsyncConnectionPool[Any]) -> dict[tuple[int, str], int]:
    """{(day, monitor type): events} as event_counts has them."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.day, m.monitor_type, sum(c.events) FROM event_counts c "
            "JOIN monitors m ON m.id = c.monitor_id GROUP BY 1, 2"
        )
        return {(int(d), t): int(n) for d, t, n in await cur.fetchall()}


async def partitions(pool: AsyncConnectionPool[Any]) -> set[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"
        )
        return {r[0] for r in await cur.fetchall()}


def settings(days: int = 30, **by_type: int) -> Settings:
    return Settings(retention_days=days, retention_days_by_type=tuple(sorted(by_type.items())))


async def test_expired_days_are_dropped_and_shorter_lived_types_trimmed(
    pool: AsyncConnectionPool[Any],
) -> None:
    cuda, syscall = await monitor(pool, "CUDA"), await monitor(pool, "SYSCALL")
    for seq, ago in enumerate((45, 10, 5, 0)):
        await store(pool, cuda, TODAY - ago, 100, seq)
        await store(pool, syscall, TODAY - ago, 50, seq)
    # a batch across midnight: its events counted on each of the two days
    await store(pool, cuda, TODAY - 11, 30, 9, start_ns=DAY_NS - 10 * 10**9, step_ns=10**9)
    before = await rows(pool)
    assert before[(TODAY - 11, "CUDA")] == 10 and before[(TODAY - 10, "CUDA")] == 120
    assert await counted(pool) == before

    retention = Retention(pool, settings(30, SYSCALL=3), clock_ns=lambda: NOW)
    done = await retention.run_once()
    assert done.dropped == [TODAY - 45] and done.busy == []
    assert done.trimmed == {TODAY - 10: ("SYSCALL", 50), TODAY - 5: ("SYSCALL", 50)}
    after = await rows(pool)
    assert after == {
        (TODAY - 11, "CUDA"): 10,
        (TODAY - 10, "CUDA"): 120,
        (TODAY - 5, "CUDA"): 100,
        (TODAY, "CUDA"): 100,
        (TODAY, "SYSCALL"): 50,
    }
    assert await counted(pool) == after
    assert partition_name(TODAY - 45) not in await partitions(pool)
    assert {partition_name(TODAY - d) for d in (11, 10, 5, 0)} <= await partitions(pool)

    again = await retention.run_once()  # nothing left to do
    assert (again.dropped, again.trimmed, again.busy) == ([], {}, [])
    # 40 days later every CUDA day has expired too: the partitions go whole
    later = Retention(pool, settings(30, SYSCALL=3), clock_ns=lambda: NOW + 40 * DAY_NS)
    assert sorted((await later.run_once()).dropped) == [TODAY - d for d in (11, 10, 5, 0)]
    assert await rows(pool) == {} and await counted(pool) == {}


async def test_days_ingest_may_write_to_are_never_dropped(pool: AsyncConnectionPool[Any]) -> None:
    """Retention of one day: the days of the last week (the writer's window) lose their rows
    once a day old but keep their partitions; the day before them is dropped."""
    cuda = await monitor(pool, "CUDA")
    for seq, ago in enumerate((9, 6, 2, 1, 0)):
        await store(pool, cuda, TODAY - ago, 10, seq)
    done = await Retention(pool, settings(1), clock_ns=lambda: NOW).run_once()
    assert done.dropped == [TODAY - 9]
    assert sorted(done.trimmed) == [TODAY - 6, TODAY - 2]  # yesterday ended 12 hours ago
    assert await rows(pool) == {(TODAY - 1, "CUDA"): 10, (TODAY, "CUDA"): 10}
    assert await counted(pool) == await rows(pool)
    assert {partition_name(TODAY - d) for d in (6, 2, 1, 0)} <= await partitions(pool)
    assert partition_name(TODAY - 9) not in await partitions(pool)


async def test_a_partition_being_written_is_left_for_the_next_round(
    pool: AsyncConnectionPool[Any], migrated_dsn: str
) -> None:
    """A write in progress into an expired day (its transaction holds the partition): the
    round does not wait for it, the partition and what the write stores stay; the next
    round, after the write committed, drops it."""
    cuda = await monitor(pool, "CUDA")
    old = TODAY - 45
    await store(pool, cuda, old, 10, 0)
    retention = Retention(pool, settings(30), clock_ns=lambda: NOW)
    async with await psycopg.AsyncConnection.connect(migrated_dsn) as writer:
        await writer.execute(
            f"INSERT INTO {partition_name(old)} SELECT ts + 1, id + 1, duration_ns, ret, "
            f"monitor_id, pid, tid, cpu, flags, machine_id, comm, event_type, event_data "
            f"FROM {partition_name(old)} LIMIT 1"
        )
        started = time.monotonic()
        done = await retention.run_once()
        assert time.monotonic() - started < 5
        assert (done.dropped, done.busy) == ([], [old])
        await writer.commit()
    assert await rows(pool) == {(old, "CUDA"): 11}
    assert (await retention.run_once()).dropped == [old]
    assert await rows(pool) == {}


def test_retention_settings() -> None:
    s = Settings.from_env(
        {
            "XPUTRACE_RETENTION_DAYS": "14",
            "XPUTRACE_RETENTION_DAYS_SYSCALL": "2",
            "XPUTRACE_RETENTION_DAYS_CUDA": "60",
        }
    )
    assert s.retention_days_by_type == (("CUDA", 60), ("SYSCALL", 2))
    assert [s.retention_days_of(t) for t in ("CUDA", "SYSCALL", "ACL")] == [60, 2, 14]
    check_settings(s)
    with pytest.raises(ValueError, match="XPUTRACE_RETENTION_DAYS_CUDDA: no monitor type"):
        check_settings(Settings.from_env({"XPUTRACE_RETENTION_DAYS_CUDDA": "2"}))
    with pytest.raises(ValueError, match="XPUTRACE_RETENTION_DAYS: -1 days"):
        check_settings(Settings(retention_days=-1))
