"""A restarted backend takes up drop counting where the stored batches left it: the drops the
agents reported before the restart are not counted again (backend.repo.metrics
.last_drop_totals seeds the aggregator's DropCounter at start)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg

from backend.aggregates import Aggregator, Point
from backend.event_writer import EventWriter
from backend.repo.metrics import last_drop_totals
from xpucore import abi

S = 10**9


def batch(
    mid: uuid.UUID, seq: int, kernel: int, *, pid: int = 4242, final: bool = False
) -> abi.Batch:
    ev = abi.empty_events(2)
    now = time.time_ns()
    ev["ts_ns"] = [10**12 + seq * S, 10**12 + seq * S + 1]
    ev["func"] = 0x100
    raw = abi.encode_batch(
        ev,
        monitor_id=str(mid),
        machine_id="m",
        seq=seq,
        agent_pid=pid,
        kernel_drops=kernel,
        inflight_drops=seq,
        send_drops=0,
        mono_to_real_ns=now - 10**12 - 60 * S,
        flags=abi.BATCH_FINAL if final else 0,
    )
    return abi.decode_batch(raw)


async def test_restart_does_not_count_drops_again(migrated_dsn: str) -> None:
    running, ended = uuid.uuid4(), uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True) as conn:
        await EventWriter().write(
            conn, [batch(running, 0, 3), batch(running, 1, 7), batch(ended, 0, 5, final=True)]
        )
        seeded = await last_drop_totals(conn)
    assert seeded[(str(running), 4242)] == (7, 1, 0)
    assert (str(ended), 4242) not in seeded  # that agent run is over
    points: list[Point] = []
    agg = Aggregator(points.extend)
    agg.drops.last.update(seeded)
    agg.add([batch(running, 2, 10)])  # the first batch after the restart
    agg.flush()
    drops: dict[str, Any] = next(p.fields for p in points if p.measurement == "xpu_drops")
    assert (drops["kernel"], drops["inflight"]) == (3, 1)  # not 10 and 2
