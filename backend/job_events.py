"""What the backend does with the jobs managers report (xpucore.job_wire), one place for every
status move of a job.

    (new) ──JOB_SEEN──▶ running ──JOB_CHANGED──▶ exited | killed | stopped | lost
    running ──JOB_METRICS sample in state T (SIGSTOP, SIGTSTP)──▶ suspended
    suspended ──a sample in another state (SIGCONT)──▶ running;  suspended ──its end──▶ ...
    running | suspended ──manager silent (UNKNOWN) or gone (GOODBYE)──▶ unknown
    unknown ──JOB_SNAPSHOT──▶ running (listed) | lost (not listed: it ended while nobody
        watched); running, suspended or unknown, not listed by a snapshot ──▶ lost
    unknown ──a heartbeat after silence, same connection──▶ running
    lost ──JOB_SEEN (reported running after all)──▶ running;  lost ──its end, seen──▶ exited...

exited, killed and stopped are final: a report that comes after (a snapshot, a queued
JOB_SEEN) changes the description, never the status. suspended is not an end: the manager
lists a suspended job in its snapshots as running (it is), and a JOB_SEEN (a description)
leaves it suspended; only its samples move it back to running. Every move is written with its
reason to job_status_history in the transaction that makes it, under the job's row lock, so events,
snapshots and stop replies may arrive in any order and twice: the outcome is the same.

JOB_METRICS: each sample of a known job is stored (InfluxDB's xpu_process when configured,
else PostgreSQL's job_metrics: backend.process_metrics) and kept as the job's latest metrics,
whatever its status; samples of jobs the backend does not know (yet) are dropped.

A machine whose manager is not heard from (UNKNOWN) keeps its jobs, but they are not known to
be running: they become ``unknown`` (reason: the manager is silent), and its next HELLO's
JOB_SNAPSHOT settles each one. Everything a manager sends is checked (field types and sizes,
a job of its own machine, sent under the key its machine is bound to); what fails is logged
with the field and dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from backend import job_groups, job_traces, process_metrics
from backend.influx import InfluxWriter
from backend.repo import distributed_jobs, job_metrics, jobs, machines
from backend.repo import job_status_history as history
from backend.typedefs import DB, INFLUX
from xpucore import job_wire
from xpucore.job_wire import JobEnd, JobKey, MetricSample, WireError
from xpucore.protocol import Event

__all__ = [
    "JOB_EVENTS",
    "apply_end",
    "apply_metrics",
    "apply_seen",
    "apply_snapshot",
    "heard_again",
    "mark_unknown",
    "on_job_event",
]

log = logging.getLogger(__name__)
Conn = Any
JOB_EVENTS = (Event.JOB_SEEN, Event.JOB_CHANGED, Event.JOB_SNAPSHOT, Event.JOB_METRICS)
LOST_UNLISTED = "not running when its manager reconnected: it ended unseen"
BACK = "its manager reports it running again"
HEARD = "its manager is heard from again"


async def _move(
    conn: Conn, jid: Any, old: str | None, new: str, reason: str, **end: Any
) -> uuid.UUID | None:
    """Moves a process job; the distributed job it is a rank of, to refresh, if any."""
    gid = await jobs.set_status(conn, jid, new, reason, **end)
    await history.add(conn, jid, old, new, reason)
    log.info("job %s: %s -> %s (%s)", jid, old, new, reason)
    return gid


async def _refresh(conn: Conn, gids: Iterable[uuid.UUID | None]) -> None:
    """Brings distributed jobs in step with their ranks, in id order (the lock order)."""
    for gid in sorted({g for g in gids if g is not None}):
        got = await distributed_jobs.refresh(conn, gid)
        if got is not None and got[0] != got[1].status:
            await history.add(conn, gid, got[0], got[1].status, got[1].reason)
            log.info("job %s: %s -> %s (%s)", gid, got[0], got[1].status, got[1].reason)


async def _placement(
    conn: Conn, jid: uuid.UUID, machine_id: str, job: dict[str, Any]
) -> dict[str, Any]:
    """Where a seen process stands: its distributed job (the one it is in already, else found
    or made), rank, device."""
    params = job.get("parameters")
    env = params.get("envVars") if isinstance(params, dict) else None
    env = env if isinstance(env, dict) else {}
    launcher = job_groups.launcher_of(env, machine_id)
    if launcher is None:
        rank, local, world = job_groups.rank_fields(env)
        return {
            "rank": rank,
            "local_rank": local,
            "world_size": world,
            "device": job_groups.device_of(env, local),
        }
    gid = await jobs.group_of(conn, jid)
    if gid is None:
        start = datetime.fromtimestamp(job["startTime"] / 1000, UTC)
        gid = await distributed_jobs.join(conn, launcher, machine_id, start)
    return {
        "group_id": gid,
        "launcher": {"kind": launcher.kind, "id": launcher.id},
        "rank": launcher.rank,
        "local_rank": launcher.local_rank,
        "world_size": launcher.world_size,
        "device": job_groups.device_of(env, launcher.local_rank),
    }


async def apply_seen(conn: Conn, machine_id: str, job: dict[str, Any]) -> None:
    """A JOB_SEEN's (checked) job: described, and running unless its end was seen."""
    jid = jobs.job_id(machine_id, job["pid"], job["startTicks"])
    async with conn.transaction():
        placement = await _placement(conn, jid, machine_id, job)
        old = await jobs.lock(conn, jid)
        said = job["status"]
        kept = old in jobs.FINAL or (old == "suspended" and said == "running")
        status = old if kept and old is not None else said
        reason = (
            "discovered by its manager"
            if old is None
            else BACK
            if status == "running"
            else f"reported {status} by its manager"
        )
        await jobs.upsert(conn, jid, machine_id, job, status, reason, placement)
        if old != status:
            await history.add(conn, jid, old, status, reason)
            log.info("job %s: %s -> %s (%s)", jid, old, status, reason)
        await _refresh(conn, [placement.get("group_id")])


async def apply_end(conn: Conn, machine_id: str, end: JobEnd) -> bool:
    """A job ended (JOB_CHANGED, or a STOP_JOB's reply); False when nothing moved (unknown
    job, or its end applied already)."""
    jid = jobs.job_id(machine_id, end.key.pid, end.key.start_ticks)
    async with conn.transaction():
        old = await jobs.lock(conn, jid)
        if old is None:
            log.warning(
                "machine %s: end of unknown job %d/%d ignored",
                machine_id,
                end.key.pid,
                end.key.start_ticks,
            )
            return False
        if old in jobs.FINAL or old == end.status:
            return False
        gid = await _move(
            conn,
            jid,
            old,
            end.status,
            end.reason or end.status,
            ended=True,
            exit_code=end.exit_code,
            signal=end.signal,
            core_dumped=end.core_dumped,
            end_time_ms=end.end_time_ms,
        )
        await _refresh(conn, [gid])
    return True


async def apply_snapshot(conn: Conn, machine_id: str, running: Sequence[JobKey]) -> None:
    """JOB_SNAPSHOT: the machine's jobs running now. Those held running or unknown that it
    does not list ended unseen (lost); unknown ones it lists run again."""
    keys = [(k.pid, k.start_ticks) for k in running]
    async with conn.transaction():
        gids = [
            await _move(conn, jid, old, "lost", LOST_UNLISTED, ended=True)
            for jid, old in await jobs.live_not_listed(conn, machine_id, keys)
        ]
        listed = {jobs.job_id(machine_id, p, t) for p, t in keys}
        for jid in await jobs.with_status(conn, machine_id, "unknown"):
            if jid in listed:
                gids.append(await _move(conn, jid, "unknown", "running", BACK))
        await _refresh(conn, gids)


async def mark_unknown(conn: Conn, machine_id: str, reason: str) -> None:
    """The machine's manager is silent or gone: its running (or suspended) jobs are not known
    to run."""
    async with conn.transaction():
        gids = [
            await _move(conn, jid, old, "unknown", reason)
            for old in ("running", "suspended")
            for jid in await jobs.with_status(conn, machine_id, old)
        ]
        await _refresh(conn, gids)


def _suspension(old: str, s: MetricSample) -> tuple[str, str] | None:
    """The move a sample makes (new status, reason), if any."""
    if old == "running" and s.suspended:
        return "suspended", f"stopped by a signal (state {s.state} in /proc/{s.key.pid}/stat)"
    if old == "suspended" and not s.suspended:
        return "running", f"continued (state {s.state} in /proc/{s.key.pid}/stat)"
    return None


async def apply_metrics(
    conn: Conn, machine_id: str, samples: Sequence[MetricSample], writer: InfluxWriter | None
) -> int:
    """A JOB_METRICS's samples: stored (to writer when given, else PostgreSQL), each job's
    latest kept, running <-> suspended moved; how many samples were of known jobs."""
    by_id = {jobs.job_id(machine_id, s.key.pid, s.key.start_ticks): s for s in samples}
    async with conn.transaction():
        statuses = await jobs.lock_many(conn, list(by_id))
        known = [(jid, s) for jid, s in by_id.items() if jid in statuses]
        gids = []
        for jid, s in known:
            move = _suspension(statuses[jid], s)
            if move is not None:
                gids.append(await _move(conn, jid, statuses[jid], *move))
        await _refresh(conn, gids)
        await jobs.set_latest_metrics(
            conn, [(jid, process_metrics.sample_json(s), s.time_ms) for jid, s in known]
        )
        if writer is None:
            await job_metrics.add(conn, known)
    if writer is not None:
        writer.submit(process_metrics.lines(machine_id, [(str(j), s) for j, s in known]))
    if len(known) < len(by_id):
        log.debug("machine %s: %d samples of unknown jobs", machine_id, len(by_id) - len(known))
    return len(known)


async def heard_again(conn: Conn, machine_id: str) -> None:
    """A heartbeat after silence, on the same connection (no HELLO): every event the manager
    queued meanwhile came before it, in order, so its unknown jobs that no JOB_CHANGED ended
    still run."""
    async with conn.transaction():
        gids = [
            await _move(conn, jid, "unknown", "running", HEARD)
            for jid in await jobs.with_status(conn, machine_id, "unknown")
        ]
        await _refresh(conn, gids)


async def on_job_event(
    app: web.Application, machine_id: str, key: str, event: Event, msg: dict[str, Any]
) -> None:
    """One of JOB_EVENTS from the machine's manager (under key), checked and applied."""
    try:
        if msg.get("machine_id") != machine_id:
            raise WireError("machine_id: not the machine the message came from")
        if event == Event.JOB_SEEN:
            checked: Any = job_wire.check_job(msg.get("job"), machine_id)
        elif event == Event.JOB_CHANGED:
            checked = job_wire.check_end(msg)
        elif event == Event.JOB_METRICS:
            checked = job_wire.check_metrics(msg)
        else:
            checked = job_wire.check_snapshot(msg)
    except WireError as e:
        log.warning("machine %s: %s dropped: %s", machine_id, event, e)
        return
    async with app[DB].connection() as conn:
        if await machines.machine_of_key(conn, key) != machine_id:
            log.warning(
                "machine %s: %s under a key bound to no machine or another: dropped",
                machine_id,
                event,
            )
            return
        if event == Event.JOB_SEEN:
            await apply_seen(conn, machine_id, checked)
        elif event == Event.JOB_CHANGED:
            await apply_end(conn, machine_id, checked)
        elif event == Event.JOB_METRICS:
            await apply_metrics(conn, machine_id, checked, app.get(INFLUX))
        else:
            await apply_snapshot(conn, machine_id, checked)
    if event == Event.JOB_SEEN:
        await _attach_to_traces(app, machine_id, checked)


async def _attach_to_traces(app: web.Application, machine_id: str, job: dict[str, Any]) -> None:
    """A rank that appears while its job is traced is traced too (backend.job_traces); a
    failure there is logged, never a failure of the job event."""
    jid = jobs.job_id(machine_id, job["pid"], job["startTicks"])
    try:
        await job_traces.attach_late(app, machine_id, jid)
    except Exception:
        log.exception("job %s: not attached to its job's running traces", jid)
