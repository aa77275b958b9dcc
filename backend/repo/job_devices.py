"""What each job has held on the accelerators (migration 0022): job_devices per (job, device)
and job_device_totals per job, accumulated at each device sample before backend.repo.devices
replaces the devices' latest rows (it reads the previous ones).

Device time. At a sample taken at t of a device whose previous sample was taken at t0, a job
whose process held memory on the device at both samples is credited t - t0 seconds there (0
when t - t0 > MAX_GAP_S: the device went unobserved). A job's device time is the sum over its
devices (two GPUs held for a minute: 120 s). Computed from the samples the backend receives,
so the same with and without InfluxDB. Peak memory: the most the job's processes held on a
device (job_devices), on all its devices together (job_device_totals), at one sample.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

__all__ = ["MAX_GAP_S", "ORDERS", "accumulate", "devices_of", "top"]

Conn = AsyncConnection[Any]
MAX_GAP_S = 300.0
#: order_by: the column of job_device_totals (or memory now) it sorts by, largest first
ORDERS = ("device_time", "memory", "peak_memory")


async def accumulate(
    conn: Conn, machine_id: str, sample: Mapping[str, Any], jobs: Mapping[int, uuid.UUID]
) -> None:
    """Credits the jobs holding memory in sample (jobs: {pid: live job}); call before
    backend.repo.devices.record. A sample no newer than a device's latest is ignored there."""
    at = datetime.fromtimestamp(sample["sampled_at"] / 1000, UTC)
    cur = await conn.execute(
        "SELECT kind, index, sampled_at FROM devices WHERE machine_id = %s", (machine_id,)
    )
    before = {(r[0], r[1]): r[2] for r in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT DISTINCT kind, index, job_id FROM device_processes"
        " WHERE machine_id = %s AND job_id IS NOT NULL",
        (machine_id,),
    )
    held = {(r[0], r[1], r[2]) for r in await cur.fetchall()}
    per_device: dict[tuple[uuid.UUID, str, int], list[float]] = {}  # [seconds, memory]
    for d in sample["devices"]:
        key = (d["kind"], d["index"])
        prev = before.get(key)
        if prev is not None and prev >= at:
            continue
        gap = 0.0 if prev is None else (at - prev).total_seconds()
        for p in d["processes"]:
            job = jobs.get(p["pid"])
            if job is None:
                continue
            row = per_device.setdefault((job, *key), [0.0, 0.0])
            row[0] = gap if gap <= MAX_GAP_S and (*key, job) in held else 0.0
            row[1] += p["memory_bytes"] or 0
    if not per_device:
        return
    totals: dict[uuid.UUID, list[float]] = {}
    for (job, _, _), (secs, mem) in per_device.items():
        t = totals.setdefault(job, [0.0, 0.0])
        t[0] += secs
        t[1] += mem
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO job_devices (job_id, machine_id, kind, index, device_seconds,"
            " peak_memory_bytes, first_seen, last_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id, machine_id, kind, index) DO UPDATE SET"
            " device_seconds = job_devices.device_seconds + excluded.device_seconds,"
            " peak_memory_bytes = GREATEST(job_devices.peak_memory_bytes,"
            " excluded.peak_memory_bytes), last_seen = GREATEST(job_devices.last_seen,"
            " excluded.last_seen)",
            [
                (job, machine_id, kind, index, secs, int(mem), at, at)
                for (job, kind, index), (secs, mem) in sorted(per_device.items())
            ],
        )
        await c.executemany(
            "INSERT INTO job_device_totals (job_id, machine_id, device_seconds,"
            " peak_memory_bytes, last_seen) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (job_id) DO UPDATE SET"
            " device_seconds = job_device_totals.device_seconds + excluded.device_seconds,"
            " peak_memory_bytes = GREATEST(job_device_totals.peak_memory_bytes,"
            " excluded.peak_memory_bytes), last_seen = GREATEST(job_device_totals.last_seen,"
            " excluded.last_seen)",
            [(job, machine_id, secs, int(mem), at) for job, (secs, mem) in sorted(totals.items())],
        )


async def top(
    conn: Conn, order_by: str, limit: int, machine_id: str | None
) -> list[dict[str, Any]]:
    """The jobs that held the most: device_time, peak_memory (from job_device_totals, an index
    scan) or memory (held now: device_processes' latest rows), largest first, then by id.
    Rows: job_id, job_name, machine_id, hostname, status, device_seconds, peak_memory_bytes,
    memory_bytes (held now, 0 when none)."""
    now = (
        "(SELECT COALESCE(sum(p.memory_bytes), 0)::bigint FROM device_processes p"
        " WHERE p.job_id = t.job_id)"
    )
    if order_by == "memory":
        src = (
            "(SELECT job_id, sum(memory_bytes)::bigint AS memory_bytes FROM device_processes"
            " WHERE job_id IS NOT NULL AND (%s::text IS NULL OR machine_id = %s)"
            " GROUP BY job_id ORDER BY 2 DESC, 1 LIMIT %s) n"
            " JOIN job_device_totals t USING (job_id)"
        )
        order = "n.memory_bytes DESC, t.job_id"
        now = "n.memory_bytes"
    else:
        col = "device_seconds" if order_by == "device_time" else "peak_memory_bytes"
        src = (
            "(SELECT * FROM job_device_totals WHERE (%s::text IS NULL OR machine_id = %s)"
            f" ORDER BY {col} DESC, job_id LIMIT %s) t"
        )
        order = f"t.{col} DESC, t.job_id"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT t.job_id, j.job_name, t.machine_id, m.hostname, j.status,"
            f" t.device_seconds, t.peak_memory_bytes, {now} AS memory_bytes FROM {src}"
            f" JOIN jobs j ON j.id = t.job_id LEFT JOIN machines m ON m.id = t.machine_id"
            f" ORDER BY {order}".encode(),
            (machine_id, machine_id, limit),
        )
        return await cur.fetchall()


async def devices_of(conn: Conn, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """{job: its devices (kind, index, uuid, device_seconds, peak_memory_bytes, memory_bytes
    held now), by machine, kind, index}."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT d.job_id, d.machine_id, d.kind, d.index, v.uuid, d.device_seconds,"
            " d.peak_memory_bytes, (SELECT COALESCE(sum(p.memory_bytes), 0)::bigint"
            " FROM device_processes p WHERE p.machine_id = d.machine_id AND p.kind = d.kind"
            " AND p.index = d.index AND p.job_id = d.job_id) AS memory_bytes"
            " FROM job_devices d LEFT JOIN devices v USING (machine_id, kind, index)"
            " WHERE d.job_id = ANY(%s) ORDER BY d.job_id, d.machine_id, d.kind, d.index",
            (job_ids,),
        )
        out: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for r in await cur.fetchall():
            out.setdefault(r.pop("job_id"), []).append(r)
        return out
