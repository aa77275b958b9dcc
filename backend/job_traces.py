"""Tracing a job (issue #14 section 4): one monitor of a chosen type on every rank of the job,
on every machine, started by one call and stopped together, then one Perfetto trace of them
all; one place for every move of a job trace.

    RUNNING ──:stop, or every rank's monitor ended by itself (its window closed, its rank
        exited)──▶ STOPPING ──every monitor stopped; the trace job queued──▶ GENERATING
        ──the trace job COMPLETED──▶ DONE;   ──it FAILED, or no rank's monitor started──▶ FAILED

Starting: every live rank (backend.repo.job_ranks) is recorded first, then each gets its
monitor through backend.monitor_lifecycle.create (quotas, audit, START over the control
channel), owned by the caller, with the window as config.window; a rank whose monitor could
not be created keeps the reason, a monitor that failed to start its status, and the others
go on. A rank that appears while the trace runs (an elastic restart) gets one too
(attach_late, after its JOB_SEEN).

The trace: the monitors' events through the trace jobs (backend.trace_jobs), each rank one
process named "rank N (host)". Clocks: each event is stamped by its machine's clock
(bpf_ktime_get_ns, made wall clock by the agent); the trace is put on the backend's clock by
adding each machine's measured offset (backend.repo.machine_clocks) to its events, and the
error bound of that offset is the bound on how far two machines' events may be misplaced
against each other. The job trace shows the offsets and bounds used (clocks), and each rank's
process in the trace carries them as a label. A machine never measured is taken as it is
(offset 0, bound unknown), and says so.

Every event, or says which are missing: the last events of an agent come over the ingest
socket, not with STOP's reply, but STOP's reply (or the MONITOR_STATUS of an agent that ended
by itself) says how many events the agent sent (monitors.events_sent). Once every monitor
stopped, the trace job waits until each monitor has stored what its agent sent (the
event_counts of the batches stored, each batch counted once however often it was resent),
looking again after each ingest write, for up to settings.job_trace_events_wait_s; then the
trace is generated anyway. The job trace keeps what it found (events: sent and stored per
monitor; complete), and its state_reason names each rank that fell short and by how many, or
whose agent never said what it sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

import msgspec
from aiohttp import web

from backend import monitor_lifecycle
from backend.errors import ApiError, Conflict
from backend.models import MonitorCreate, MonitorTarget, check_supported
from backend.repo import event_counts, jobs, machines, monitors, trace_jobs, users
from backend.repo import job_traces as repo
from backend.repo.job_ranks import ranks
from backend.repo.machine_clocks import MachineClock, clocks
from backend.roles import Caller
from backend.target_policy import allowed_accounts
from backend.trace_build import TraceSpec
from backend.typedefs import DB, INGEST, SETTINGS, TASKS, TRACE_JOBS
from trace_export import ProcessInfo

__all__ = [
    "ENDED",
    "attach_late",
    "clock_label",
    "monitor_ended",
    "resume",
    "shortfalls",
    "start",
    "stop",
    "trace_job_done",
]

log = logging.getLogger(__name__)
Row = dict[str, Any]
LOOK_AGAIN_S = 1.0  # a monitor's count may come with a late STOP reply, not an ingest write
MISSING = "; events missing: "  # a job trace's reason, when ranks did not store every event
ENDED = "every rank's monitor ended by itself (its window closed or its rank exited)"


def _spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


def _n(rank: int | None) -> str:
    return "?" if rank is None else str(rank)


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


# -- start


async def start(
    app: web.Application,
    caller: Caller,
    job: Row,
    monitor_type: str,
    config: dict[str, Any],
    window: dict[str, Any] | None,
    name: str,
) -> Row:
    """A RUNNING job trace of the job (a jobs row) with a monitor on each live rank. 409
    when no rank runs; 403 when the caller may trace no process."""
    async with app[DB].connection() as conn:
        live = [r for r in await ranks(conn, job["id"]) if r["status"] in jobs.LIVE]
        if not live:
            raise Conflict(f"job {job['id']} has no running rank to trace")
        allowed = await allowed_accounts(conn, caller, MonitorTarget(pid=live[0]["pid"]))
        jt = await repo.create(conn, job["id"], monitor_type, config, window, name, caller.user_id)
        for r in live:  # all first: the trace cannot end while a rank has no monitor yet
            await repo.add_rank(conn, jt["id"], r)
    started = await asyncio.gather(*(_attach(app, jt, r, allowed) for r in live))
    log.info("job trace %s of job %s: %d of %d ranks", jt["id"], job["id"], sum(started),
             len(live))  # fmt: skip
    await _check_ended(app, jt["id"])
    return jt


async def _attach(app: web.Application, jt: Row, rank: Row, allowed: list[str] | None) -> bool:
    """The rank's monitor (the rank is recorded already); whether one was created."""
    monitor_type, config = jt["monitor_type"], _json(jt["config"])
    try:
        async with app[DB].connection() as conn:
            machine = await machines.get_machine(conn, rank["machine_id"])
        body = msgspec.convert(
            {"monitor_type": monitor_type, "target": {"pid": rank["pid"]}, "config": config},
            MonitorCreate,
        )
        check_supported(body, machine["monitor_types"] if machine else None)
        m = await monitor_lifecycle.create(
            app,
            rank["machine_id"],
            monitor_type,
            {"pid": rank["pid"]},
            config,
            f"{jt['name'][:180]}: rank {_n(rank['rank'])}",
            owner=jt["created_by"],
            allowed_users=allowed,
            job_trace_id=jt["id"],
        )
    except (ApiError, msgspec.ValidationError) as e:
        reason = e.message if isinstance(e, ApiError) else str(e)
        log.warning("job trace %s: rank %s: no monitor: %s", jt["id"], rank["rank"], reason)
        async with app[DB].connection() as conn:
            await repo.set_rank_outcome(conn, jt["id"], rank["job_id"], None, reason)
        return False
    async with app[DB].connection() as conn:
        await repo.set_rank_outcome(conn, jt["id"], rank["job_id"], m["id"], None)
    return True


async def attach_late(app: web.Application, machine_id: str, process_id: uuid.UUID) -> None:
    """After a JOB_SEEN: a process that is a live rank of a job with a RUNNING job trace,
    and has no monitor in it, gets one."""
    async with app[DB].connection() as conn:
        running = await repo.running(conn)
        found: list[tuple[Row, Row]] = []
        for t in running:
            rank = next(
                (r for r in await ranks(conn, t["job_id"]) if r["job_id"] == process_id), None
            )
            if rank is None or rank["status"] not in jobs.LIVE:
                continue
            if await repo.add_rank(conn, t["id"], rank, late=True):
                jt = await repo.get(conn, t["id"])
                if jt is not None:
                    found.append((jt, rank))
        outcomes = []
        for jt, rank in found:
            outcomes.append((jt, rank, await _accounts_of(conn, jt["created_by"])))
    for jt, rank, allowed in outcomes:
        log.info("job trace %s: rank %s joined (%s)", jt["id"], rank["rank"], machine_id)
        await _attach(app, jt, rank, allowed)


async def _accounts_of(conn: Any, user_id: uuid.UUID | None) -> list[str] | None:
    """The Unix accounts the job trace's creator may trace (None: any, an admin)."""
    user = await users.get_user(conn, user_id) if user_id is not None else None
    if user is not None and user.role == "admin":
        return None
    return sorted(user.unix_accounts) if user is not None else []


# -- stop


async def stop(app: web.Application, jt_id: uuid.UUID, reason: str) -> bool:
    """RUNNING -> STOPPING; every monitor is stopped and the trace generated in the
    background. False when it was not RUNNING."""
    async with app[DB].connection() as conn:
        moved = await repo.move(conn, jt_id, "STOPPING", reason, ("RUNNING",))
    if moved:
        log.info("job trace %s: STOPPING (%s)", jt_id, reason)
        _spawn(app, _stop_and_generate(app, jt_id))
    return moved


async def monitor_ended(app: web.Application, monitor_id: uuid.UUID) -> None:
    """A monitor became final: when it is a job trace's, and every rank's has ended, the
    job trace stops."""
    try:
        async with app[DB].connection() as conn:
            jt_id = await repo.of_monitor(conn, monitor_id)
        if jt_id is not None:
            await _check_ended(app, jt_id)
    except Exception:
        log.exception("monitor %s: its job trace not checked", monitor_id)


async def _check_ended(app: web.Application, jt_id: uuid.UUID) -> None:
    async with app[DB].connection() as conn:
        jt = await repo.get(conn, jt_id)
        if jt is None or jt["state"] != "RUNNING":
            return
        rows = await repo.ranks_of(conn, jt_id)
    pending = [r for r in rows if r["monitor_id"] is None and r["error"] is None]
    live = [r for r in rows if r["monitor_status"] in monitors.ACTIVE]
    if rows and not pending and not live:
        await stop(app, jt_id, ENDED)


async def _stop_one(app: web.Application, monitor_id: uuid.UUID, machine_id: str) -> None:
    async with app[DB].connection() as conn:
        m = await monitors.get_monitor(conn, machine_id, monitor_id)
    if m is None or m["status"] in monitors.FINAL:
        return
    try:
        await monitor_lifecycle.stop(app, m)
    except ApiError as e:
        log.warning("monitor %s not stopped: %s", monitor_id, e.message)


def clock_label(machine_id: str, c: MachineClock | None) -> str:
    """How a machine's events were put on the backend's clock, in words."""
    if c is None or c.error_ns is None:
        return f"clock of {machine_id}: not measured, taken as is (offset 0, error unknown)"
    return f"clock of {machine_id}: offset {c.offset_ns:+d} ns, error ±{c.error_ns} ns"


async def _stop_and_generate(app: web.Application, jt_id: uuid.UUID) -> None:
    try:
        await _generate(app, jt_id)
    except Exception as e:
        log.exception("job trace %s failed", jt_id)
        async with app[DB].connection() as conn:
            await repo.move(conn, jt_id, "FAILED", f"internal error: {type(e).__name__}",
                            ("STOPPING",))  # fmt: skip


async def _generate(app: web.Application, jt_id: uuid.UUID) -> None:
    async with app[DB].connection() as conn:
        jt = await repo.get(conn, jt_id)
        rows = await repo.ranks_of(conn, jt_id)
    if jt is None:
        return
    with_monitor = [r for r in rows if r["monitor_id"] is not None]
    await asyncio.gather(*(_stop_one(app, r["monitor_id"], r["machine_id"]) for r in with_monitor))
    async with app[DB].connection() as conn:
        rows = await repo.ranks_of(conn, jt_id)
    traced = [r for r in rows if r["monitor_id"] is not None
              and r["monitor_status"] != "FAILED_TO_START"]  # fmt: skip
    events = await _await_events(app, traced) if traced else {}
    short = shortfalls(traced, events)
    async with app[DB].connection() as conn:
        if not traced:
            why = "; ".join(
                f"rank {r['rank']} ({r['hostname']}): {r['error'] or r['error_message']}"
                for r in rows
            )
            await repo.move(conn, jt_id, "FAILED", f"no rank's monitor started: {why}",
                            ("STOPPING",))  # fmt: skip
            return
        if jt["created_by"] is None:
            await repo.move(conn, jt_id, "FAILED", "its creator's account was deleted",
                            ("STOPPING",))  # fmt: skip
            return
        machine_ids = sorted({r["machine_id"] for r in traced})
        measured = await clocks(conn, machine_ids)
        processes = {
            (r["machine_id"], r["pid"]): ProcessInfo(
                f"rank {_n(r['rank'])} ({r['hostname'] or r['machine_id'][:12]})",
                (clock_label(r["machine_id"], measured.get(r["machine_id"])),),
            )
            for r in traced
        }
        shifts = {m: c.offset_ns for m, c in measured.items() if m in machine_ids}
        spec = TraceSpec(uuid.uuid4(), "", "perfetto", False, processes, shifts)
        flt = " OR ".join(f"monitor_id = '{r['monitor_id']}'" for r in traced)
        job = await trace_jobs.create_job(
            conn, jt["created_by"], jt["name"], flt, "perfetto", False, layout=spec.layout()
        )
        used = {
            m: {
                "offset_ns": measured[m].offset_ns if m in measured else 0,
                "error_ns": measured[m].error_ns if m in measured else None,
            }
            for m in machine_ids
        }
        if short:
            log.warning("job trace %s: %s", jt_id, "; ".join(short))
        moved = await repo.move(
            conn,
            jt_id,
            "GENERATING",
            f"{len(traced)} ranks traced; trace job {job['id']} queued"
            + (f"{MISSING}{'; '.join(short)}" if short else ""),
            ("STOPPING",),
            clocks=used,
            trace_job_id=job["id"],
            events=events,
            complete=not short,
        )
    if moved:
        app[TRACE_JOBS].wake()


async def _await_events(app: web.Application, traced: list[Row]) -> dict[str, Any]:
    """{monitor id: {"sent", "stored"}} once each monitor stored what its agent sent, or
    when settings.job_trace_events_wait_s has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + app[SETTINGS].job_trace_events_wait_s
    ids = [r["monitor_id"] for r in traced]
    while True:
        async with app[DB].connection() as conn:
            counts = await event_counts.stored_and_sent(conn, ids)
        waiting = [
            m
            for m, (stored, sent, status) in counts.items()
            if (stored < sent if sent is not None else status not in monitors.FINAL)
        ]
        left = deadline - loop.time()
        if not waiting or left <= 0:
            return {
                str(m): {"sent": sent, "stored": stored} for m, (stored, sent, _) in counts.items()
            }
        await app[INGEST].next_write(min(left, LOOK_AGAIN_S))


def shortfalls(traced: list[Row], events: dict[str, Any]) -> list[str]:
    """Each rank whose monitor did not store what its agent sent, in words."""
    out = []
    for r in traced:
        e = events.get(str(r["monitor_id"]))
        who = f"rank {_n(r['rank'])} ({r['hostname'] or r['machine_id'][:12]})"
        if e is None or e["sent"] is None:
            out.append(f"{who}: its agent did not say how many events it sent")
        elif e["stored"] < e["sent"]:
            out.append(f"{who}: {e['sent'] - e['stored']} of {e['sent']} events not stored")
    return out


# -- the trace


async def trace_job_done(app: web.Application, trace_job_id: uuid.UUID) -> None:
    """A trace job ended: its job trace, if any, is DONE or FAILED with it."""
    async with app[DB].connection() as conn:
        jt_id = await repo.of_trace_job(conn, trace_job_id)
        if jt_id is None:
            return
        status = await trace_jobs.status_of(conn, trace_job_id)
        if status is None or status[0] == "PROCESSING":
            return
        if status[0] == "COMPLETED":
            jt = await repo.get(conn, jt_id)
            reason = "the trace is generated"
            if jt is not None and jt["complete"] is False:  # it keeps saying what it lacks
                reason += MISSING + str(jt["state_reason"]).partition(MISSING)[2]
            await repo.move(conn, jt_id, "DONE", reason, ("GENERATING",))
        else:
            await repo.move(conn, jt_id, "FAILED",
                            f"the trace could not be generated: {status[1]}",
                            ("GENERATING",))  # fmt: skip


async def resume(app: web.Application) -> None:
    """At start: job traces a stopped backend left STOPPING are stopped again, and those
    GENERATING follow their trace job."""
    async with app[DB].connection() as conn:
        rows = await repo.unsettled(conn)
    for r in rows:
        if r["state"] == "STOPPING":
            _spawn(app, _stop_and_generate(app, r["id"]))
        elif r["trace_job_id"] is not None:
            await trace_job_done(app, r["trace_job_id"])
