"""Reading accelerator samples back, from InfluxDB when it is configured (it then holds them:
backend.device_events), else from PostgreSQL's device_metrics: the same rows from both.

``samples``: one machine's samples as taken (a trace's device counters).
``history``: per device and interval, each value reduced as backend.device_samples.AGGREGATION
says (mean or max), intervals aligned on the Unix epoch. ``per_device``: per device over a
range, each value's mean over its samples and its latest sample's value (the metrics summary).
Values come back in the wire's names and units (bytes, W, C, %).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from backend.device_samples import AGGREGATION, MEASUREMENTS, VALUES
from backend.influx import InfluxConfig, query, quote_identifier, quote_literal
from backend.repo import devices
from xpucore.device_wire import DEVICE_INTS

__all__ = ["Scope", "history", "ns_of", "per_device", "samples"]

Row = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class Scope:
    """Which devices: a machine, a kind, an index, the job leading them (None: any)."""

    def __init__(
        self,
        machine_id: str | None = None,
        kind: str | None = None,
        index: int | None = None,
        job: uuid.UUID | None = None,
    ) -> None:
        self.machine_id, self.kind, self.index, self.job = machine_id, kind, index, job

    def influx(self) -> str:
        tags = (("machine", self.machine_id), ("device", self.index), ("job", self.job))
        return "".join(
            f" AND {quote_identifier(t)} = {quote_literal(str(v))}"
            for t, v in tags
            if v is not None
        )


def _value(name: str, v: float | None) -> float | int | None:
    if v is None:
        return None
    return round(v) if name in DEVICE_INTS and AGGREGATION[name] == "max" else float(v)


def ns_of(t: datetime) -> int:
    """t in Unix ns, exactly (a float of ns is off by up to 128 ns at today's dates: a sample
    at a range's start would fall outside it)."""
    return (t - _EPOCH) // _US * 1000


def _range(start: datetime, end: datetime) -> str:
    return f"time >= {ns_of(start)} AND time < {ns_of(end)}"


async def history(
    conn: Any,
    influx: InfluxConfig | None,
    scope: Scope,
    start: datetime,
    end: datetime,
    interval_s: int,
    limit: int,
) -> list[Row]:
    """Rows {machine_id, kind, index, uuid, time, <values>}, by machine, kind, index, time."""
    if influx is None:
        rows = await devices.history(
            conn,
            start,
            end,
            interval_s,
            machine_id=scope.machine_id,
            kind=scope.kind,
            index=scope.index,
            limit=limit,
        )
        return [{**r, **{v: _value(v, r[v]) for v in VALUES}} for r in rows]
    out: list[Row] = []
    async with aiohttp.ClientSession() as session:
        for kind, (measurement, names) in MEASUREMENTS.items():
            if scope.kind not in (None, kind):
                continue
            fields = ", ".join(
                f"{AGGREGATION[v]}({quote_identifier(f)}) AS {v}" for v, (f, _) in names.items()
            )
            series = await query(
                session,
                influx,
                f"SELECT {fields} FROM {quote_identifier(measurement)} WHERE "
                f"{_range(start, end)}{scope.influx()} GROUP BY time({interval_s}s), machine, "
                f"device, uuid fill(none)",
            )
            for s in series:
                tags = s.get("tags", {})
                cols = s["columns"]
                for values in s["values"]:
                    got = dict(zip(cols, values, strict=True))
                    row: Row = {
                        "machine_id": tags.get("machine"),
                        "kind": kind,
                        "index": int(tags.get("device", 0)),
                        "uuid": tags.get("uuid") or None,
                        "time": datetime.fromtimestamp(got["time"] / 1e9, UTC),
                    }
                    for v in VALUES:
                        div = names[v][1] if v in names else 1
                        raw = got.get(v)
                        row[v] = _value(v, None if raw is None else raw * div)
                    out.append(row)
    out.sort(key=lambda r: (r["machine_id"], r["kind"], r["index"], r["time"]))
    return out[:limit]


async def per_device(
    conn: Any,
    influx: InfluxConfig | None,
    scope: Scope,
    start: datetime,
    end: datetime,
    values: list[str],
) -> list[Row]:
    """Rows {machine_id, kind, index, mean_<v>, last_<v>} of scope.kind's devices."""
    assert scope.kind is not None
    if influx is None:
        return await devices.per_device(
            conn,
            start,
            end,
            values,
            machine_id=scope.machine_id,
            kind=scope.kind,
            index=scope.index,
            job=scope.job,
        )
    measurement, names = MEASUREMENTS[scope.kind]
    asked = [v for v in values if v in names]
    if not asked:
        return []
    fields = ", ".join(
        f"mean({quote_identifier(names[v][0])}) AS mean_{v}, "
        f"last({quote_identifier(names[v][0])}) AS last_{v}"
        for v in asked
    )
    async with aiohttp.ClientSession() as session:
        series = await query(
            session,
            influx,
            f"SELECT {fields} FROM {quote_identifier(measurement)} WHERE "
            f"{_range(start, end)}{scope.influx()} GROUP BY machine, device",
        )
    out: list[Row] = []
    for s in series:
        got = dict(zip(s["columns"], s["values"][0], strict=True))
        row: Row = {
            "machine_id": s["tags"]["machine"],
            "kind": scope.kind,
            "index": int(s["tags"]["device"]),
        }
        for v in asked:
            for agg in ("mean", "last"):
                raw = got.get(f"{agg}_{v}")
                row[f"{agg}_{v}"] = None if raw is None else raw * names[v][1]
        out.append(row)
    return out


async def samples(
    conn: Any,
    influx: InfluxConfig | None,
    machine_id: str,
    start: datetime,
    end: datetime,
    values: list[str],
    limit: int,
) -> list[Row]:
    """The machine's samples in [start, end) as taken, not reduced: rows {kind, index, time,
    <values>} by kind, index, time (at most limit)."""
    if influx is None:
        rows = await devices.samples(conn, machine_id, start, end, values, limit)
        return [{**r, **{v: _value(v, r[v]) for v in values}} for r in rows]
    out: list[Row] = []
    async with aiohttp.ClientSession() as session:
        for kind, (measurement, names) in MEASUREMENTS.items():
            asked = [v for v in values if v in names]
            if not asked:
                continue
            fields = ", ".join(f"{quote_identifier(names[v][0])} AS {v}" for v in asked)
            series = await query(
                session,
                influx,
                f"SELECT {fields} FROM {quote_identifier(measurement)} WHERE "
                f"{_range(start, end)}{Scope(machine_id).influx()} GROUP BY device",
            )
            for s in series:
                index = int(s.get("tags", {}).get("device", 0))
                for got in s["values"]:
                    point = dict(zip(s["columns"], got, strict=True))
                    row: Row = {
                        "kind": kind,
                        "index": index,
                        "time": datetime.fromtimestamp(point["time"] / 1e9, UTC),
                    }
                    for v in values:
                        raw = point.get(v)
                        row[v] = None if raw is None else _value(v, raw * names[v][1])
                    out.append(row)
    out.sort(key=lambda r: (r["kind"], r["index"], r["time"]))
    return out[:limit]
