"""Events stored for the trace tests, and the trace files read back.

Synthetic CUDA calls go in through backend.event_writer.EventWriter, as the ingest writes
them; traces come back through trace_export's validators.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from backend.event_writer import EventWriter
from tests.trace_tools.validate import read_trace, validate_perfetto
from tests.trace_tools.validate_chrome import validate_chrome_json
from xpucore import abi

NOW = int(datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()) * 10**9
MONO = 10**15  # the agent's monotonic clock an hour before NOW
OFFSET = NOW - 3600 * 10**9 - MONO  # mono_to_real_ns
DAY_PARTITION = "events_20260310"
MACHINE = "m" * 64


def calls(n: int, pid: int, *, start_ns: int = 0, step_ns: int = 1000) -> np.ndarray:
    """n back-to-back calls on thread pid: cudaLaunchKernel and cudaMemcpyAsync in turn."""
    ev = abi.empty_events(n)
    ev["ts_ns"] = MONO + start_ns + np.arange(n) * step_ns
    ev["duration_ns"] = step_ns // 2
    ev["func"] = np.where(np.arange(n) % 2, 0x500, 0x100)
    ev["pid"] = ev["tid"] = pid
    ev["comm"] = b"train"
    ev["stream"] = 7
    return ev


async def store(dsn: str, monitor: uuid.UUID, ev: np.ndarray, seq: int = 0) -> None:
    batch = abi.decode_batch(abi.encode_batch(
        ev, monitor_id=str(monitor), machine_id=MACHINE, mono_to_real_ns=OFFSET,
        agent_pid=4100, seq=seq))  # fmt: skip
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        result = await EventWriter(clock_ns=lambda: NOW).write(conn, [batch])
    assert result.events == len(ev), result


def perfetto_slices(data: bytes) -> int:
    """The slices of a Perfetto trace (gzipped or not), checked by tests.trace_tools.validate."""
    return len(validate_perfetto(data).slices)


def chrome_events(data: bytes) -> list[dict[str, Any]]:
    """The events of a Chrome JSON trace (gzipped or not), checked by validate_chrome."""
    validate_chrome_json(data)
    events: list[dict[str, Any]] = json.loads(read_trace(data))["traceEvents"]
    return events
