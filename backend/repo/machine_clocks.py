"""Each machine's clock against the backend's, as its manager measured it (migration 0016).

How it is measured, and why the bound holds: xpucore.clock_sync. What is stored is the
estimate the manager last reported: the bound as of the measurement, and when that was on
the backend's clock. What is served (``clocks``) is that bound grown by the drift allowance
up to now, so that an old measurement says how much less it is worth.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from xpucore.clock_sync import ClockReport, aged

__all__ = ["MachineClock", "clocks", "forget", "record"]

Conn = AsyncConnection[Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MachineClock:
    """offset_ns added to a timestamp stamped on the machine gives the backend's clock, to
    within error_ns (None: never measured); measured_at: when, on the backend's clock."""

    offset_ns: int
    error_ns: int | None
    measured_at: datetime | None = None


def _ns(t: datetime) -> int:
    d = t - _EPOCH
    return (d.days * 86_400 + d.seconds) * 10**9 + d.microseconds * 1000


async def record(conn: Conn, machine_id: str, report: ClockReport) -> None:
    """Stores the manager's latest estimate (measured_at kept to the microsecond below)."""
    at = _EPOCH + timedelta(microseconds=report.measured_at_ns // 1000)
    await conn.execute(
        "INSERT INTO machine_clocks (machine_id, offset_ns, error_ns, measured_at) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (machine_id) DO UPDATE SET "
        "offset_ns = EXCLUDED.offset_ns, error_ns = EXCLUDED.error_ns, "
        "measured_at = EXCLUDED.measured_at",
        (machine_id, report.offset_ns, report.error_ns, at),
    )


async def forget(conn: Conn, machine_id: str) -> None:
    """The machine is unmeasured again (its manager connected anew: a restart, a reboot)."""
    await conn.execute("DELETE FROM machine_clocks WHERE machine_id = %s", (machine_id,))


async def clocks(
    conn: Conn, machine_ids: Sequence[str], now_ns: int | None = None
) -> dict[str, MachineClock]:
    """The measured ones of these machines, their bounds grown to now_ns (default: now)."""
    if not machine_ids:
        return {}
    now = time.time_ns() if now_ns is None else now_ns
    cur = await conn.execute(
        "SELECT machine_id, offset_ns, error_ns, measured_at FROM machine_clocks "
        "WHERE machine_id = ANY(%s)",
        (list(machine_ids),),
    )
    return {
        str(m): MachineClock(int(off), aged(int(err), now - _ns(at)), at)
        for m, off, err, at in await cur.fetchall()
    }
