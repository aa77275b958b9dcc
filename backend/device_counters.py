"""A trace's device counters (issue #15, section 7): for each machine in the trace, each of
its accelerators' utilisation, memory used and power over the span of the machine's events,
as counter tracks beside the calls (trace_export.counters), from the device history
(backend.device_history: InfluxDB when configured, else PostgreSQL).

Tracks: ``"<host> gpu0 utilisation %"``, ``"<host> gpu0 memory used"`` (bytes) and
``"<host> gpu0 power W"`` (``npu<i>`` for NPUs), in a group ``"<host> devices"`` per machine;
host is the machine's hostname, else its id's first 12 characters (as processes are named).
Points are the samples as taken (never reduced), each at its sampling time (the machine's
clock) plus the machine's shift in the trace (a job trace's clock offset), as its events are.
Span: the machine's events' [first start, last end], widened by PAD_S either side, so the
value in force when the first call starts (sampled up to PAD_S before it) is drawn too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend.device_history import ns_of, samples
from backend.influx import InfluxError
from backend.repo import machines
from backend.typedefs import DB, INFLUX
from trace_export import CounterSeries

__all__ = ["COUNTERS", "PAD_S", "for_trace", "series"]

log = logging.getLogger(__name__)

#: (sampled value, track name suffix, unit)
COUNTERS = (
    ("utilization_pct", "utilisation %", "%"),
    ("memory_used_bytes", "memory used", "bytes"),
    ("power_w", "power W", "W"),
)
PAD_S = 30
MAX_SAMPLES = 1_000_000  # per machine: 12 devices sampled every second for 23 hours

Span = tuple[int, int]  # (first ns, last ns), the machine's clock


def series(host: str, rows: Sequence[Mapping[str, Any]], shift_ns: int) -> list[CounterSeries]:
    """The counter series of one machine's samples (rows by kind, index, time)."""
    out: list[CounterSeries] = []
    devices: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in rows:
        devices.setdefault((r["kind"], r["index"]), []).append(r)
    for (kind, index), taken in devices.items():
        for value, suffix, unit in COUNTERS:
            points = [(ns_of(r["time"]) + shift_ns, float(r[value])) for r in taken
                      if r[value] is not None]  # fmt: skip
            if points:
                name = f"{host} {kind}{index} {suffix}"
                out.append(CounterSeries(f"{host} devices", name, unit, points))
    return out


async def for_trace(
    app: web.Application, spans: Mapping[str, Span], shifts: Mapping[str, int]
) -> list[CounterSeries]:
    """The device counters of the machines in spans, shifted as the trace's events. A
    history that cannot be read leaves them out (logged): the trace goes on without."""
    writer = app.get(INFLUX)
    influx = None if writer is None else writer.config
    pad = PAD_S * 1_000_000_000
    out: list[CounterSeries] = []
    async with app[DB].connection() as conn:
        for machine_id, (first, last) in sorted(spans.items()):
            row = await machines.get_machine(conn, machine_id)
            host = (row or {}).get("hostname") or machine_id[:12]
            start = datetime.fromtimestamp((first - pad) // 1000 / 1e6, UTC)
            end = datetime.fromtimestamp((last + pad) // 1000 / 1e6 + 1e-6, UTC)
            try:
                rows = await samples(conn, influx, machine_id, start, end,
                                     [v for v, _, _ in COUNTERS], MAX_SAMPLES)  # fmt: skip
            except InfluxError as e:
                log.warning("trace device counters of %s left out: %s", machine_id, e)
                continue
            out += series(host, rows, shifts.get(machine_id, 0))
    return out
