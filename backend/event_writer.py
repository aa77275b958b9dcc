"""Agent batches into ``events``: checked, registered and written in one transaction.

Idempotence: each batch is registered in ``event_batches`` under (monitor_id, agent_pid, seq)
in the same transaction as the COPY of its rows, with ``ON CONFLICT DO NOTHING``; a batch
that is already there is skipped. Event ids are ``(event_batches.id << 24) | index``.

Garbage is refused per batch, before anything is written: a monitor id that is not a UUID,
timestamps outside [now - max_age_ns, now + max_future_ns] (a broken clock offset would
otherwise create partitions for any day), values that do not fit their column.
A comm that is not UTF-8 is stored with U+FFFD for the bad bytes, as ``event_records`` shows it.

The rows are built by backend.event_rows and sent by backend.repo.events.copy_in; each table
the transaction touches has its module in backend.repo (event_batches, py_frames, events,
event_counts, partitions).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import AsyncConnection

from backend.event_rows import MAX_BATCH_EVENTS, encode_copy, has_layout
from backend.repo import event_batches, event_counts, events, partitions, py_frames
from backend.repo.partitions import DAY_NS
from xpucore import abi

__all__ = ["MAX_AGE_NS", "MIN_TS_NS", "EventWriter", "Rejected", "WriteResult"]

MAX_AGE_NS = 7 * DAY_NS  # events older than this are refused (EventWriter's max_age_ns)
MIN_TS_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z: anything earlier is a broken clock
_I32 = 2**31
_I63 = 2**63


@dataclass(frozen=True)
class Rejected:
    """A batch that was not written, and why."""

    index: int  # position in the sequence passed to write()
    monitor_id: str
    seq: int
    reason: str


@dataclass(frozen=True)
class WriteResult:
    events: int = 0  # rows written
    batches: int = 0  # batches written
    duplicates: int = 0  # batches skipped: already stored (or twice in this call)
    rejected: tuple[Rejected, ...] = field(default=())
    stored: tuple[abi.Batch, ...] = field(default=())  # the batches written by this call


class EventWriter:
    """Writes decoded batches into ``events``; one instance per database.

    It remembers which daily partitions exist (it creates missing ones before each COPY,
    in their own short transaction) and nothing else, so one writer serves any number of
    concurrent write() calls on different connections.
    """

    def __init__(
        self,
        *,
        max_age_ns: int = MAX_AGE_NS,
        max_future_ns: int = DAY_NS,
        clock_ns: Callable[[], int] = time.time_ns,
        offload: bool = True,
    ) -> None:
        """Events must lie in [now - max_age_ns, now + max_future_ns] (wall clock).

        offload: build the COPY stream in a worker thread (False: on the event loop).
        """
        self.max_age_ns = max_age_ns
        self.max_future_ns = max_future_ns
        self.clock_ns = clock_ns
        self.offload = offload
        self._days: set[int] = set()

    async def write(self, conn: AsyncConnection[Any], batches: Sequence[abi.Batch]) -> WriteResult:
        """Writes the events of every acceptable, not yet stored batch, in one transaction.

        conn must not be inside a transaction. Database errors propagate after a rollback:
        nothing of the call is stored then, and the same batches can be written again.
        """
        now = self.clock_ns()
        min_ts, max_ts = max(MIN_TS_NS, now - self.max_age_ns), now + self.max_future_ns
        rejected: list[Rejected] = []
        accepted: dict[tuple[uuid.UUID, int, int], tuple[abi.Batch, uuid.UUID]] = {}
        days: set[int] = set()
        duplicates = 0
        for i, b in enumerate(batches):
            try:
                mid, batch_days = _check(b, min_ts, max_ts)
            except ValueError as e:
                rejected.append(Rejected(i, b.monitor_id, b.seq, str(e)))
                continue
            key = (mid, b.agent_pid, b.seq)
            if key in accepted:
                duplicates += 1
                continue
            accepted[key] = (b, mid)
            days |= batch_days
        if not accepted:
            return WriteResult(duplicates=duplicates, rejected=tuple(rejected))
        for attempt in range(2):
            await self.ensure_partitions(conn, days)
            try:
                n_events, stored = await self._write_once(conn, accepted)
                break
            except psycopg.errors.CheckViolation as e:
                # A partition went away after it was cached (retention): look again, once.
                if attempt or "no partition" not in str(e):
                    raise
                self._days.clear()
        written = len(stored)
        return WriteResult(
            n_events, written, duplicates + len(accepted) - written, tuple(rejected), stored
        )

    async def ensure_partitions(self, conn: AsyncConnection[Any], days: Iterable[int]) -> None:
        """Creates the daily partitions for UTC day numbers ``days`` that do not exist yet
        (backend.repo.partitions.create), each in a transaction of its own."""
        for day in sorted(set(days) - self._days):
            await partitions.create(conn, day)
            self._days.add(day)

    async def _write_once(
        self,
        conn: AsyncConnection[Any],
        accepted: dict[tuple[uuid.UUID, int, int], tuple[abi.Batch, uuid.UUID]],
    ) -> tuple[int, tuple[abi.Batch, ...]]:
        # In key order: concurrent writers given the same resent batches then wait on each
        # other's unique-index entries in one order, never in a cycle (no deadlock).
        items = [accepted[k] for k in sorted(accepted)]
        async with conn.transaction():
            returned = await event_batches.register(conn, items)
            new = [(accepted[(mid, pid, seq)][0], bid) for bid, mid, pid, seq in returned]
            registered = {id(b) for b, _ in new}
            await py_frames.insert(
                conn,
                _frame_rows([(b, mid) for b, mid in items if b.stacks and id(b) in registered]),
            )
            new_events = [(b, bid) for b, bid in new if not b.stacks]
            n_events = sum(len(b.events) for b, _ in new_events)
            if n_events:
                await events.copy_in(conn, encode_copy(new_events), self.offload)
            # last in the transaction: its rows stay locked until the commit
            await event_counts.add(conn, _counts(new_events))
        return n_events, tuple(b for b, _ in sorted(new, key=lambda n: n[1]))  # in seq order


def _frame_rows(batches: list[tuple[abi.Batch, uuid.UUID]]) -> list[py_frames.FrameRow]:
    """The py_frames rows of XPU_BATCH_STACKS batches."""
    return [
        (mid, sid, depth, pid, _cstr_text(fn), _cstr_text(file), None if line < 0 else line, flags)
        for b, mid in batches
        for sid, pid, depth, _, line, flags, fn, file in b.events.tolist()
    ]


def _counts(batches: list[tuple[abi.Batch, int]]) -> dict[tuple[uuid.UUID, int], int]:
    """{(monitor id, UTC day): events of the batches}, for event_counts."""
    counts: dict[tuple[uuid.UUID, int], int] = {}
    for b, _ in batches:
        mid = uuid.UUID(b.monitor_id)
        for day, n in _day_counts(b).items():
            counts[(mid, day)] = counts.get((mid, day), 0) + n
    return counts


def _day_counts(b: abi.Batch) -> dict[int, int]:
    """{UTC day: events of the batch that day}."""
    ts = b.events["ts_ns"]
    if not len(ts):
        return {}
    first = (int(ts.min()) + b.mono_to_real_ns) // DAY_NS
    last = (int(ts.max()) + b.mono_to_real_ns) // DAY_NS
    if first == last:
        return {first: len(ts)}
    days = (ts.astype(np.int64) + b.mono_to_real_ns) // DAY_NS
    values, n = np.unique(days, return_counts=True)
    return {int(d): int(c) for d, c in zip(values, n, strict=True)}


def _cstr_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _check(b: abi.Batch, min_ts: int, max_ts: int) -> tuple[uuid.UUID, set[int]]:
    """The monitor UUID and the UTC days of a batch; ValueError says what is wrong with it."""
    try:
        mid = uuid.UUID(b.monitor_id)
    except ValueError:
        raise ValueError(f"monitor_id {b.monitor_id!r} is not a UUID") from None
    if not b.machine_id:
        raise ValueError("machine_id is empty")
    if not has_layout(b.monitor_type):
        raise ValueError(f"monitor_type {b.monitor_type} has no event mapping")
    for name in ("seq", "kernel_drops", "inflight_drops", "send_drops"):
        if getattr(b, name) >= _I63:
            raise ValueError(f"{name} {getattr(b, name)} does not fit a bigint")
    if b.agent_pid >= _I32:
        raise ValueError(f"agent_pid {b.agent_pid} does not fit an integer")
    if abs(b.mono_to_real_ns) >= 2**62:
        raise ValueError(f"mono_to_real_ns {b.mono_to_real_ns} is not a clock offset")
    ev = b.events
    if b.stacks:  # Python stack frames, not events: no days, no partitions
        if len(ev) and (int(ev["depth"].max()) >= 1 << 15 or int(ev["pid"].max()) >= _I32):
            raise ValueError("a stack frame's depth or pid does not fit its column")
        return mid, set()
    if len(ev) >= MAX_BATCH_EVENTS:
        raise ValueError(f"{len(ev)} events in one batch; at most {MAX_BATCH_EVENTS - 1}")
    if not len(ev):
        return mid, set()
    for name, limit in (("duration_ns", _I63), ("pid", _I32), ("tid", _I32), ("cpu", _I32)):
        top = int(ev[name].max())
        if top >= limit:
            raise ValueError(f"event {name} {top} does not fit its column")
    ts_ns = ev["ts_ns"]
    lo, hi = int(ts_ns.min()), int(ts_ns.max())
    first, last = lo + b.mono_to_real_ns, hi + b.mono_to_real_ns
    if first < min_ts or last > max_ts:
        bad = first if first < min_ts else last
        raise ValueError(
            f"event time {_rfc3339(bad)} outside [{_rfc3339(min_ts)}, {_rfc3339(max_ts)}]"
        )
    return mid, set(range(first // DAY_NS, last // DAY_NS + 1))


def _rfc3339(ns: int) -> str:
    try:
        return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"{ns} ns"
