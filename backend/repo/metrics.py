"""Per-interval totals for the metrics summary, from PostgreSQL (``events``) or InfluxDB.

Both give backend.metrics_summary.IntervalTotals per interval start, counted exactly as
backend.aggregates counts them (same kinds of calls, same histogram buckets, same memory
ledger, same drop accounting), so the summary does not depend on the source.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import aiohttp
from psycopg import AsyncConnection

from backend.aggregates import DEV_OTHER, DropCounter, MemoryLedger, call_kinds, device_tag
from backend.histogram import BUCKET_SQL, EXPONENT_SQL
from backend.influx import InfluxConfig, query, quote_literal
from backend.metrics_summary import IntervalTotals, SummaryQuery

__all__ = ["influx_totals", "pg_totals"]

Memory = dict[tuple[str, ...], list[tuple[int, int]]]
_HOUR = 3600 * 10**9


def _kinds() -> dict[str, list[str]]:
    """The functions that copy, allocate and free, of the monitor types that have them (their
    names do not overlap: cuda*/cu*, acl*)."""
    k = [call_kinds("CUDA"), call_kinds("ACL")]
    return {name: sorted(k[0][name] | k[1][name]) for name in k[0]}


def _where(q: SummaryQuery, *, calls: bool, pid: bool = True) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if q.machine_id is not None:
        clauses.append("machine_id = %s")
        params.append(q.machine_id)
    if q.monitor_id is not None:
        clauses.append("monitor_id = %s")
        params.append(_uuid(q.monitor_id))
    if pid and q.pid is not None:
        clauses.append("pid = %s")
        params.append(q.pid)
    if calls and q.function is not None:
        clauses.append("event_type = %s")
        params.append(q.function)
    return clauses, params


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        return uuid.UUID(int=0)  # matches nothing


async def pg_totals(
    conn: AsyncConnection[Any], q: SummaryQuery
) -> tuple[dict[int, IntervalTotals], Memory]:
    kinds = _kinds()
    step = q.interval_ns
    out: dict[int, IntervalTotals] = defaultdict(IntervalTotals)
    where, params = _where(q, calls=True)
    cond = " AND ".join(["ts >= %s", "ts < %s", *where])
    base = [q.start_ns, q.end_ns, *params]
    ok = "ret = 0 AND flags & 1 = 0"
    cur = await conn.execute(
        f"SELECT ts / %s AS iv, count(*), count(*) FILTER (WHERE ret <> 0 AND flags & 1 = 0),"
        f" sum(duration_ns), max(duration_ns),"
        f" coalesce(sum(coalesce((event_data->>'bytes')::numeric,"  # a 2-D copy: width x height
        f"  (event_data->>'width')::numeric * (event_data->>'height')::numeric)) FILTER (WHERE {ok}"
        f"  AND event_type = ANY(%s)), 0),"
        f" coalesce(sum((event_data->>'bytes')::numeric) FILTER (WHERE {ok}"
        f"  AND event_type = ANY(%s) AND (event_data->>'ptr')::numeric <> 0), 0)"
        f" FROM events WHERE {cond} GROUP BY iv".encode(),
        [step, kinds["copy"], kinds["alloc"], *base],
    )
    for iv, calls, errors, dsum, dmax, copied, allocated in await cur.fetchall():
        t = out[iv * step]
        t.calls, t.errors, t.dsum, t.dmax = calls, errors, int(dsum), dmax
        t.copied, t.allocated = int(copied), int(allocated)
    cur = await conn.execute(
        f"SELECT ts / %s AS iv, {BUCKET_SQL} AS b, count(*) FROM events,"
        f" LATERAL {EXPONENT_SQL} AS x(e) WHERE {cond} GROUP BY iv, b".encode(),
        [step, *base],
    )
    for iv, b, n in await cur.fetchall():
        out[iv * step].hist[b] = n
    memory = await _pg_memory(conn, q, kinds)
    await _pg_drops(conn, q, out)
    return dict(out), memory


async def _pg_memory(
    conn: AsyncConnection[Any], q: SummaryQuery, kinds: dict[str, list[str]]
) -> Memory:
    """Every allocation and free before the end, replayed through the aggregator's ledger."""
    where, params = _where(q, calls=False)
    cond = " AND ".join(
        [
            "ts < %s",
            "(event_type = ANY(%s) AND ret = 0 AND flags & 1 = 0 OR event_type = ANY(%s))",
            *where,
        ]
    )
    cur = await conn.execute(
        f"SELECT ts, machine_id, monitor_id, pid, event_type = ANY(%s),"
        f" (event_data->>'ptr')::numeric, coalesce((event_data->>'bytes')::numeric, 0),"
        f" coalesce((event_data->>'device')::bigint + 1, 0)"
        f" FROM events WHERE {cond} ORDER BY ts, id".encode(),
        [kinds["alloc"], q.end_ns, kinds["alloc"], kinds["free"], *params],
    )
    ledger = MemoryLedger()
    memory: Memory = defaultdict(list)
    step = q.interval_ns
    for ts, machine, monitor, pid, alloc, ptr, size, dev in await cur.fetchall():
        key = (machine, str(monitor), str(pid))
        t = ts // step * step
        for code, held in ledger.apply(key, alloc, int(ptr), int(size), min(dev, DEV_OTHER)):
            changes = memory[(*key, device_tag(code) or "")]
            if changes and changes[-1][0] == t:
                changes[-1] = (t, held)
            else:
                changes.append((t, held))
    return dict(memory)


async def _pg_drops(
    conn: AsyncConnection[Any], q: SummaryQuery, out: dict[int, IntervalTotals]
) -> None:
    """Drops of the batches whose last event lies in the range (as the aggregator places
    them), from the running totals in event_batches, in the order they were stored."""
    where, params = _where(q, calls=False, pid=False)
    cond = " AND ".join(["ts >= %s", "ts < %s", *where])
    cur = await conn.execute(
        f"SELECT id >> 24, max(ts) FROM events WHERE {cond} GROUP BY 1".encode(),
        [q.start_ns, q.end_ns + _HOUR, *params],
    )  # a batch spans far less than an hour
    last_ts = {bid: ts for bid, ts in await cur.fetchall() if ts < q.end_ns}
    if not last_ts:
        return
    bwhere, bparams = _where(q, calls=False, pid=False)
    cond = " AND ".join(
        ["monitor_id IN (SELECT monitor_id FROM event_batches WHERE id = ANY(%s))", *bwhere]
    )
    cur = await conn.execute(
        f"SELECT id, monitor_id, agent_pid, kernel_drops, inflight_drops, send_drops"
        f" FROM event_batches WHERE {cond} ORDER BY id".encode(),
        [list(last_ts), *bparams],
    )
    counter = DropCounter()
    step = q.interval_ns
    for bid, monitor, agent_pid, k, i, s in await cur.fetchall():
        new = counter.delta(str(monitor), agent_pid, (k, i, s))
        if bid in last_ts and any(new):
            out[last_ts[bid] // step * step].dropped += sum(new)


def _influx_where(q: SummaryQuery, *, calls: bool, pid: bool = True) -> list[str]:
    clauses = []
    for tag, value in (
        ("machine", q.machine_id),
        ("monitor_id", q.monitor_id),
        ("pid", str(q.pid) if pid and q.pid is not None else None),
        ("function", q.function if calls else None),
    ):
        if value is not None:
            clauses.append(f'"{tag}" = {quote_literal(value)}')
    return clauses


async def influx_totals(
    session: aiohttp.ClientSession, config: InfluxConfig, q: SummaryQuery
) -> tuple[dict[int, IntervalTotals], Memory]:
    step = q.interval_ns
    span = [f"time >= {q.start_ns}", f"time < {q.end_ns}"]
    group = f"GROUP BY time({step}ns) fill(none)"
    out: dict[int, IntervalTotals] = defaultdict(IntervalTotals)
    cond = " AND ".join([*span, *_influx_where(q, calls=True)])
    for series in await query(
        session,
        config,
        (
            "SELECT sum(calls), sum(errors), sum(duration_sum_ns), max(duration_max_ns),"
            f" sum(bytes_copied), sum(bytes_allocated) FROM xpu_calls WHERE {cond} {group}"
        ),
    ):
        for t, calls, errors, dsum, dmax, copied, allocated in series["values"]:
            x = out[t]
            x.calls, x.errors, x.dsum, x.dmax = calls, errors, dsum, dmax
            x.copied, x.allocated = copied, allocated
    for series in await query(
        session, config, f"SELECT sum(/^b[0-9]+$/) FROM xpu_latency_hist WHERE {cond} {group}"
    ):
        buckets = [int(c.removeprefix("sum_b")) for c in series["columns"][1:]]
        for t, *counts in series["values"]:
            out[t].hist = {b: n for b, n in zip(buckets, counts, strict=True) if n}
    dcond = " AND ".join([*span, *_influx_where(q, calls=False, pid=False)])
    for series in await query(
        session, config, f"SELECT sum(total) FROM xpu_drops WHERE {dcond} {group}"
    ):
        for t, total in series["values"]:
            out[t].dropped = total
    mwhere = _influx_where(q, calls=False)
    memory: Memory = defaultdict(list)
    by = "GROUP BY machine, monitor_id, pid, device"
    before = " AND ".join([f"time < {q.start_ns}", *mwhere])
    during = " AND ".join([*span, *mwhere])
    for stmt in (
        f"SELECT last(held_bytes) FROM xpu_memory WHERE {before} {by}",
        f"SELECT held_bytes FROM xpu_memory WHERE {during} {by}",
    ):
        for series in await query(session, config, stmt):
            tags = series["tags"]
            key = (tags["machine"], tags["monitor_id"], tags["pid"], tags.get("device", ""))
            memory[key] += [(t, held) for t, held in series["values"]]
    return dict(out), {k: sorted(v) for k, v in memory.items()}


async def last_drop_totals(
    conn: AsyncConnection[Any], max_age_s: float = 86_400.0
) -> dict[tuple[str, int], tuple[int, int, int]]:
    """The running drop totals of the newest stored batch of each agent run still going (its
    last batch is not final, and came within max_age_s): where a restarted backend's
    aggregator takes up counting, so drops counted before the restart are not counted
    again."""
    cur = await conn.execute(
        "SELECT monitor_id, agent_pid, kernel_drops, inflight_drops, send_drops FROM ("
        " SELECT DISTINCT ON (monitor_id, agent_pid) monitor_id, agent_pid, kernel_drops,"
        " inflight_drops, send_drops, final, received_at FROM event_batches"
        " ORDER BY monitor_id, agent_pid, seq DESC) newest"
        " WHERE NOT final AND received_at > now() - make_interval(secs => %s)",
        [max_age_s],
    )
    return {(str(mid), pid): (k, i, s) for mid, pid, k, i, s in await cur.fetchall()}
