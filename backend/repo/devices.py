"""Accelerators in PostgreSQL (migration 0019): each device's inventory and latest sample
(devices), the processes on it (device_processes), the machine's last library errors
(machines.device_errors) and, when InfluxDB is not configured, the samples' history
(device_metrics). Fields and aggregation: backend.device_samples."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from backend.device_samples import AGGREGATION, VALUES

__all__ = [
    "INVENTORY",
    "delete_before",
    "device_errors",
    "history",
    "list_devices",
    "list_processes",
    "per_device",
    "record",
    "samples",
]

Conn = AsyncConnection[Any]
Row = dict[str, Any]
INVENTORY = ("uuid", "name", "bus_id", "health", "health_detail")
_VALUE_COLS = ", ".join(VALUES)


async def record(
    conn: Conn,
    machine_id: str,
    sample: Mapping[str, Any],
    jobs: Mapping[int, uuid.UUID],
    lead: Mapping[tuple[str, int], uuid.UUID | None],
    *,
    history: bool,
) -> None:
    """A checked sample: its devices' rows replaced, their processes, the machine's errors,
    and (history) a row per device in device_metrics. jobs: {pid: live job}; lead: the job
    of each device's biggest memory holder."""
    at = datetime.fromtimestamp(sample["sampled_at"] / 1000, UTC)
    devices = sample["devices"]
    cols = ("kind", "index", *INVENTORY, *VALUES)
    async with conn.transaction():
        await conn.execute(
            "UPDATE machines SET device_errors = %s WHERE id = %s",
            (json.dumps(sample["errors"]), machine_id),
        )
        if not devices:
            return
        rows = [(machine_id, *(d[c] for c in cols), at) for d in devices]
        names = ", ".join(cols)
        marks = ", ".join(["%s"] * (len(cols) + 2))
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*cols[2:], "sampled_at"))
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO devices (machine_id, {names}, sampled_at) VALUES ({marks}) "
                f"ON CONFLICT (machine_id, kind, index) DO UPDATE SET {updates} "
                f"WHERE devices.sampled_at <= excluded.sampled_at".encode(),
                rows,
            )
            await cur.execute(
                "DELETE FROM device_processes p USING unnest(%s::text[], %s::integer[]) "
                "AS d(kind, index) JOIN devices v ON v.machine_id = %s AND v.kind = d.kind "
                "AND v.index = d.index AND v.sampled_at = %s "
                "WHERE p.machine_id = %s AND p.kind = d.kind AND p.index = d.index",
                (
                    [d["kind"] for d in devices],
                    [d["index"] for d in devices],
                    machine_id,
                    at,
                    machine_id,
                ),
            )
            procs = [
                (machine_id, d["kind"], d["index"], p["pid"], p["memory_bytes"], jobs.get(p["pid"]))
                for d in devices
                for p in d["processes"]
            ]
            if procs:
                await cur.executemany(
                    "INSERT INTO device_processes (machine_id, kind, index, pid, memory_bytes,"
                    " job_id) SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM devices"
                    " v WHERE v.machine_id = %s AND v.kind = %s AND v.index = %s"
                    " AND v.sampled_at = %s) ON CONFLICT DO NOTHING",
                    [(*p, p[0], p[1], p[2], at) for p in procs],
                )
            if history:
                hcols = ("kind", "index", "uuid", "health", *VALUES)
                await cur.executemany(
                    f"INSERT INTO device_metrics (machine_id, time, job_id, {', '.join(hcols)})"
                    f" VALUES ({', '.join(['%s'] * (len(hcols) + 3))})"
                    f" ON CONFLICT DO NOTHING".encode(),
                    [
                        (machine_id, at, lead.get((d["kind"], d["index"])), *(d[c] for c in hcols))
                        for d in devices
                    ],
                )


async def device_errors(conn: Conn, machine_id: str) -> list[dict[str, str]] | None:
    """The libraries the machine's manager last reported failing (None: never reported)."""
    cur = await conn.execute("SELECT device_errors FROM machines WHERE id = %s", (machine_id,))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else list(row[0])


async def list_devices(conn: Conn, machine_id: str) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT kind, index, {', '.join(INVENTORY)}, {_VALUE_COLS}, sampled_at"
            f" FROM devices WHERE machine_id = %s ORDER BY kind, index".encode(),
            (machine_id,),
        )
        return await cur.fetchall()


async def list_processes(
    conn: Conn, machine_id: str, kind: str | None, index: int | None
) -> list[Row]:
    """The processes on the machine's devices at their latest samples, with their jobs."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT p.kind, p.index, v.uuid, p.pid, p.memory_bytes, p.job_id, j.job_name,"
            " j.process_name, v.sampled_at FROM device_processes p JOIN devices v USING"
            " (machine_id, kind, index) LEFT JOIN jobs j ON j.id = p.job_id"
            " WHERE p.machine_id = %s AND (%s::text IS NULL OR p.kind = %s)"
            " AND (%s::integer IS NULL OR p.index = %s) ORDER BY p.kind, p.index, p.pid",
            (machine_id, kind, kind, index, index),
        )
        return await cur.fetchall()


def _where(
    machine_id: str | None, kind: str | None, index: int | None, job: uuid.UUID | None
) -> tuple[str, list[Any]]:
    clauses, params = ["time >= %s", "time < %s"], []
    for col, v in (("machine_id", machine_id), ("kind", kind), ("index", index), ("job_id", job)):
        if v is not None:
            clauses.append(f"{col} = %s")
            params.append(v)
    return " AND ".join(clauses), params


async def history(
    conn: Conn,
    start: datetime,
    end: datetime,
    interval_s: int,
    *,
    machine_id: str | None = None,
    kind: str | None = None,
    index: int | None = None,
    limit: int,
) -> list[Row]:
    """Per device and interval in [start, end): each value reduced as AGGREGATION says,
    at most limit rows, by machine, kind, index, time."""
    where, params = _where(machine_id, kind, index, None)
    aggs = ", ".join(
        f"{AGGREGATION[v]}({v})::float8 AS {v}".replace("mean(", "avg(") for v in VALUES
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT machine_id, kind, index, max(uuid) AS uuid,"
            f" to_timestamp(floor(extract(epoch FROM time) / %s) * %s) AS time, {aggs}"
            f" FROM device_metrics WHERE {where} GROUP BY 1, 2, 3, 5 ORDER BY 1, 2, 3, 5"
            f" LIMIT %s".encode(),
            [interval_s, interval_s, start, end, *params, limit],
        )
        return await cur.fetchall()


async def samples(
    conn: Conn, machine_id: str, start: datetime, end: datetime, values: Sequence[str], limit: int
) -> list[Row]:
    """The machine's samples in [start, end), each as taken: {kind, index, time, <values>},
    by kind, index, time; at most limit rows."""
    cols = ", ".join(v for v in values if v in VALUES)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT kind, index, time, {cols} FROM device_metrics WHERE machine_id = %s"
            f" AND time >= %s AND time < %s ORDER BY kind, index, time LIMIT %s".encode(),
            (machine_id, start, end, limit),
        )
        return await cur.fetchall()


async def per_device(
    conn: Conn,
    start: datetime,
    end: datetime,
    values: Sequence[str],
    *,
    machine_id: str | None,
    kind: str,
    index: int | None,
    job: uuid.UUID | None,
) -> list[Row]:
    """Per device in [start, end): for each value v, mean_v (over its samples) and last_v
    (its latest sample's), and last_time."""
    where, params = _where(machine_id, kind, index, job)
    cols = ", ".join(
        f"avg({v})::float8 AS mean_{v}, (array_agg({v} ORDER BY time DESC)"
        f" FILTER (WHERE {v} IS NOT NULL))[1]::float8 AS last_{v}"
        for v in values
        if v in VALUES
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT machine_id, kind, index, max(time) AS last_time, {cols}"
            f" FROM device_metrics WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3".encode(),
            [start, end, *params],
        )
        return await cur.fetchall()


async def delete_before(conn: Conn, before: datetime) -> int:
    """Drops the history older than before; how many rows went."""
    cur = await conn.execute("DELETE FROM device_metrics WHERE time < %s", (before,))
    return cur.rowcount
