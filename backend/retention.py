"""Retention: events older than their monitor type's retention go, a whole day at a time.

Every settings.retention_interval_s, one round (run_once) looks at each day partition of
``events`` (events_YYYYMMDD) and at which monitor types stored events that day (event_counts):

- a day whose every type is past its retention (settings.retention_days_of; an empty day:
  past the longest retention) is dropped whole: DROP TABLE, instant whatever its size;
- a day where only some types are past theirs keeps its partition, and the events of those
  types are deleted from it (types kept for less than others, e.g. SYSCALL=2 with CUDA=30:
  a DELETE, paid only by the types given a shorter retention);
- the days ingest may still write to (the writer accepts events up to MAX_AGE_NS old, plus an
  hour for a write in progress) are never dropped, only trimmed as above;
- a drop waits at most lock_timeout_ms for its locks: a partition being written or read (a
  trace job) at that moment is left for the next round, never waited on with every query on
  ``events`` queued behind the drop.

Samples of AI jobs' process metrics kept in PostgreSQL (``job_metrics``, when there is no
InfluxDB: backend.process_metrics) are kept ``retention_days`` too, deleted by sample time at
each round (an index on time; a round deletes at most an interval's worth of samples).

Partitioning by type as well (events_YYYYMMDD_<type>) would make every expiry a DROP, but the
events table has no type column (a monitor's type is in monitors), and every query and the
writer's COPY would need one; a DELETE for the shorter-lived types is the smaller cost.

There is no lease between backends: a round runs under a PostgreSQL advisory lock, so with
several backends on one database one of them runs it at a time, and a round is idempotent.
Each drop or delete updates event_counts in its own transaction, so the quota of events
stored (backend.monitor_lifecycle) follows. The same round deletes the accelerator samples
kept in PostgreSQL (device_metrics, when InfluxDB is not configured) older than
settings.device_retention_days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

import psycopg
from psycopg_pool import AsyncConnectionPool

from backend.event_writer import MAX_AGE_NS
from backend.models import MonitorType
from backend.repo import devices, event_counts, job_metrics, locks, partitions
from backend.repo.partitions import DAY_NS, partition_name
from backend.settings import Settings

__all__ = ["Retention", "Round", "check_settings"]

log = logging.getLogger(__name__)
_ROUND_LOCK = 0x7870757472657465  # "xputrete": one retention round at a time
_WRITE_MARGIN_NS = 3600 * 10**9


@dataclass
class Round:
    dropped: list[int] = field(default_factory=list)  # UTC days
    trimmed: dict[int, tuple[str, int]] = field(default_factory=dict)  # day: (types, rows)
    busy: list[int] = field(default_factory=list)  # days left for the next round
    job_metrics: int = 0  # samples of jobs' process metrics deleted
    ran: bool = True  # False: another backend was running a round
    device_rows: int = 0  # accelerator samples deleted (device_metrics)


def check_settings(settings: Settings) -> None:
    """ValueError for a retention setting of a type that does not exist, or below 0."""
    known = get_args(MonitorType)
    for name, days in (("", settings.retention_days), *settings.retention_days_by_type):
        var = f"XPUTRACE_RETENTION_DAYS{'_' + name if name else ''}"
        if name and name not in known:
            raise ValueError(f"{var}: no monitor type {name} (types: {', '.join(known)})")
        if days < 0:
            raise ValueError(f"{var}: {days} days; 0 keeps events forever")


class Retention:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        settings: Settings,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        lock_timeout_ms: int = 200,
    ) -> None:
        check_settings(settings)
        self.pool, self.settings = pool, settings
        self.clock_ns, self.lock_timeout_ms = clock_ns, lock_timeout_ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("retention round failed")
            await asyncio.sleep(self.settings.retention_interval_s)

    def _expired(self, days: int, end_ns: int, now: int) -> bool:
        return days > 0 and end_ns <= now - days * DAY_NS

    def _longest(self) -> int:
        """The longest retention of any type, in days; 0 when some type keeps forever."""
        kept = [self.settings.retention_days, *(d for _, d in self.settings.retention_days_by_type)]
        return 0 if 0 in kept else max(kept)

    async def run_once(self) -> Round:
        """One round (see the module doc)."""
        now = self.clock_ns()
        writable_from = now - MAX_AGE_NS - _WRITE_MARGIN_NS
        done = Round()
        async with self._round() as conn:
            if conn is None:
                done.ran = False
                return done
            types = await event_counts.types_by_day(conn)
            for day in await partitions.days(conn):
                end = (day + 1) * DAY_NS
                kinds = types.get(day, set())
                expired = {
                    t for t in kinds if self._expired(self.settings.retention_days_of(t), end, now)
                }
                whole = expired == kinds if kinds else self._expired(self._longest(), end, now)
                if whole and end <= writable_from:
                    if await self._drop(conn, day):
                        done.dropped.append(day)
                    else:
                        done.busy.append(day)
                elif expired:
                    rows = await self._trim(conn, day, expired)
                    done.trimmed[day] = (",".join(sorted(expired)), rows)
            if self.settings.retention_days > 0:
                before = now - self.settings.retention_days * DAY_NS
                done.job_metrics = await job_metrics.prune(
                    conn, datetime.fromtimestamp(before / 1e9, UTC)
                )
            keep = self.settings.device_retention_days
            if keep > 0:
                before_dt = datetime.fromtimestamp((now - keep * DAY_NS) / 1e9, UTC)
                done.device_rows = await devices.delete_before(conn, before_dt)
        if done.job_metrics:
            log.info("retention: %d job metrics samples deleted", done.job_metrics)
        if done.device_rows:
            log.info("retention: %d accelerator samples deleted", done.device_rows)
        if done.dropped or done.trimmed or done.busy:
            log.info(
                "retention: dropped %s; deleted %s; busy, for the next round: %s",
                [partition_name(d) for d in done.dropped] or "nothing",
                {partition_name(d): t for d, t in done.trimmed.items()} or "nothing",
                [partition_name(d) for d in done.busy] or "none",
            )
        return done

    @contextlib.asynccontextmanager
    async def _round(self) -> AsyncIterator[psycopg.AsyncConnection[Any] | None]:
        async with self.pool.connection() as conn:
            if not await locks.try_lock(conn, _ROUND_LOCK):
                yield None
                return
            try:
                yield conn
            finally:
                await locks.unlock(conn, _ROUND_LOCK)

    async def _drop(self, conn: psycopg.AsyncConnection[Any], day: int) -> bool:
        try:
            async with conn.transaction():
                await partitions.lock_for_ddl(conn, self.lock_timeout_ms)
                await partitions.drop(conn, day)
                await event_counts.forget(conn, day)
        except psycopg.errors.LockNotAvailable:
            log.info("retention: %s is in use; dropped at a later round", partition_name(day))
            return False
        return True

    async def _trim(self, conn: psycopg.AsyncConnection[Any], day: int, types: set[str]) -> int:
        async with conn.transaction():
            await event_counts.lock_day(conn, day, types)
            rows = await partitions.delete_types(conn, day, types)
            await event_counts.forget(conn, day, types)
        return rows
