"""DEVICE_METRICS from a machine's manager (xpucore.device_wire): checked, each device's latest
sample and processes kept in PostgreSQL (backend.repo.devices), the sample written to InfluxDB
when it is configured (backend.device_samples names the fields) and to PostgreSQL's bounded
history otherwise. A process holding memory on a device is joined to the machine's live job of
that pid, and credited device time and memory (backend.repo.job_devices). A sample that
fails its check, or comes under a key bound to no machine or another, is logged
with the field and dropped."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from backend import device_samples
from backend.repo import devices, job_devices, jobs, machines
from backend.typedefs import DB, INFLUX
from xpucore.device_wire import check_device_metrics
from xpucore.job_wire import WireError

__all__ = ["on_device_metrics"]

log = logging.getLogger(__name__)


async def on_device_metrics(
    app: web.Application, machine_id: str, key: str, msg: dict[str, Any]
) -> None:
    try:
        if msg.get("machine_id") != machine_id:
            raise WireError("machine_id: not the machine the message came from")
        sample = check_device_metrics(msg)
    except WireError as e:
        log.warning("machine %s: DEVICE_METRICS dropped: %s", machine_id, e)
        return
    writer = app.get(INFLUX)
    async with app[DB].connection() as conn:
        if await machines.machine_of_key(conn, key) != machine_id:
            log.warning(
                "machine %s: DEVICE_METRICS under a key bound to no machine or another: dropped",
                machine_id,
            )
            return
        pids = sorted({p["pid"] for d in sample["devices"] for p in d["processes"]})
        by_pid = await jobs.live_by_pid(conn, machine_id, pids) if pids else {}
        names = {pid: str(jid) for pid, jid in by_pid.items()}
        lead = {}
        for d in sample["devices"]:
            job = device_samples.lead_job(d, names)
            lead[(d["kind"], d["index"])] = None if job is None else uuid.UUID(job)
        async with conn.transaction():
            await job_devices.accumulate(conn, machine_id, sample, by_pid)
            await devices.record(conn, machine_id, sample, by_pid, lead, history=writer is None)
    if writer is not None:
        writer.submit([p.line() for p in device_samples.points(machine_id, sample, names)])
