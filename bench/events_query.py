"""Events query with pid + time range at 10M rows, through the REST API (issue #3: p99 <= 50 ms).

A fresh embedded PostgreSQL (temporary directory), migrated; `events` (all its indexes) filled
with --rows synthetic rows through the ingest path's EventWriter, from agent batches made by
bench/ingest_copy.py (xpucore.abi.encode_batch, a PyTorch-like mix of launches, copies, syncs
and allocations), rewritten to come from --monitors agents tracing --pids processes spread
evenly over --span-s seconds of wall clock, ending --age-s ago (the writer refuses events
older than 7 days). Then ANALYZE, and the real app (`create_app`) served on 127.0.0.1:

- api: --queries  GET /api/v1/events?filter=pid = P AND timestamp >= 'T0' AND timestamp < 'T1'
  &page_size=100 with a random pid and a random --window-s window (RFC 3339, nanoseconds),
  timed by the client (aiohttp, same process and event loop as the server);
- baseline (database only, same run, same queries): the SQL the handler runs, built by the
  same code (backend.filters.compile_filter, backend.repo.events.query_events, LIMIT
  page_size + 1), over one plain psycopg connection: no HTTP, JSON, auth or pool;
- page-through: every page (page_token) of one pid's window, api and row count checked
  against count(*).

The report has the fill rate, latencies (nearest-rank percentiles), api/baseline ratios and
EXPLAIN (ANALYZE, BUFFERS) of one query. Prints one JSON object (progress goes to stderr);
exit status 0 when api p99 <= 50 ms with at least 10M rows.

    .venv/bin/python bench/events_query.py [--rows 10000000] [--queries 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import run_in_temp_dir  # noqa: E402
from ingest_copy import BATCH_EVENTS, synthetic_batches  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.db.embedded import EmbeddedPostgres  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.event_writer import EventWriter  # noqa: E402
from backend.filters import compile_filter  # noqa: E402
from backend.handlers.events import rfc3339_ns  # noqa: E402
from backend.paging import OrderBy  # noqa: E402
from backend.repo.events import EVENT_FIELDS, TIEBREAK, query_events  # noqa: E402
from backend.repo.partitions import DAY_NS  # noqa: E402
from tests.pg_fixtures import backend_settings  # noqa: E402
from xpucore import abi  # noqa: E402

TARGET_P99_MS = 50.0
TARGET_ROWS = 10_000_000
S = 10**9
BASE_PID = 31337  # synthetic_batches: monitor k's events have pid BASE_PID + 100 * k


T_START = time.monotonic()


def log(msg: str) -> None:
    print(f"events_query: {time.monotonic() - T_START:6.1f}s {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile, in ms."""
    s = sorted(xs)
    return round(s[max(0, math.ceil(p * len(s)) - 1)] * 1000, 2)


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50": pct(xs, 0.5), "p95": pct(xs, 0.95), "p99": pct(xs, 0.99), "max": pct(xs, 1.0)}


def pid_of(monitor: int, k: int) -> int:
    return BASE_PID + 100 * monitor + k


def chunk_batches(
    args: argparse.Namespace, index: int, first: int, n: int, t0_ns: int, monitor_ids: list[str]
) -> list[abi.Batch]:
    """Rows [first, first + n) of the fill: ingest_copy's batches, spread over the span.

    synthetic_batches gives `monitors` agents' batches with one pid each, an event every
    1.5 us; here each agent traces pids_per_monitor processes (random per event), its
    clock is stretched so the rows of the whole fill cover span_s evenly, and it keeps one
    monitor id for the whole fill (seq continues from chunk to chunk).
    """
    per = args.pids // args.monitors
    step_ns = args.span_s * S / args.rows  # wall-clock time between consecutive rows
    start = t0_ns + int(first * step_ns)
    rng = np.random.default_rng(index + 1)
    out = []
    for b in synthetic_batches(n, start, args.monitors, seed=index + 1):
        ev = b.events.copy()
        mon = (int(ev["pid"][0]) - BASE_PID) // 100
        # mono_to_real_ns = start - 5e12 and ts_ns = 5e12 + (row in the chunk) * 1500 + ...
        ev["ts_ns"] = 5 * 10**12 + np.round(
            (ev["ts_ns"] - 5 * 10**12).astype(np.float64) * (step_ns / 1500)
        ).astype(np.uint64)
        k = (rng.integers(0, per, len(ev)) * 10).astype(ev["pid"].dtype)
        ev["tid"] += k
        ev["pid"] += k
        out.append(
            dataclasses.replace(
                b, events=ev, monitor_id=monitor_ids[mon], seq=index * 1_000_000 + b.seq
            )
        )
    return out


async def fill(args: argparse.Namespace, dsn: str, t0_ns: int) -> dict[str, Any]:
    """Writes the rows through EventWriter; generation of the next chunk overlaps the write."""
    rng = random.Random(args.seed)
    monitor_ids = [
        str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.monitors)
    ]
    chunk = args.chunk_batches * BATCH_EVENTS * args.monitors
    spans = [
        (i, first, min(chunk, args.rows - first))
        for i, first in enumerate(range(0, args.rows, chunk))
    ]
    writer = EventWriter()
    written = write_s = 0.0
    t_fill = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        end = t0_ns + args.span_s * S
        await writer.ensure_partitions(conn, range(t0_ns // DAY_NS, end // DAY_NS + 1))
        nxt = asyncio.create_task(
            asyncio.to_thread(chunk_batches, args, *spans[0], t0_ns, monitor_ids)
        )
        for j in range(len(spans)):
            batches = await nxt
            if j + 1 < len(spans):
                nxt = asyncio.create_task(
                    asyncio.to_thread(chunk_batches, args, *spans[j + 1], t0_ns, monitor_ids)
                )
            t = time.perf_counter()
            for k in range(0, len(batches), args.per_write):
                res = await writer.write(conn, batches[k : k + args.per_write])
                if res.rejected or res.duplicates:
                    raise RuntimeError(f"writer refused rows: {res}")
                written += res.events
            write_s += time.perf_counter() - t
            log(
                f"filled {int(written):,} rows, "
                f"{written / (time.perf_counter() - t_fill):,.0f} rows/s"
            )
        fill_s = time.perf_counter() - t_fill
        log("ANALYZE events")
        t = time.perf_counter()
        await conn.execute("ANALYZE events")
        analyze_s = time.perf_counter() - t
    return {
        "rows_written": int(written),
        "seconds": round(fill_s, 1),
        "rows_per_s": round(written / fill_s),
        "writer_only_rows_per_s": round(written / write_s),
        "analyze_s": round(analyze_s, 1),
    }


def filter_text(pid: int, t0: int, t1: int) -> str:
    return f"pid = {pid} AND timestamp >= '{rfc3339_ns(t0)}' AND timestamp < '{rfc3339_ns(t1)}'"


async def api_get(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], params: dict[str, str]
) -> dict[str, Any]:
    async with http.get(url, headers=auth, params=params) as r:
        if r.status != 200:
            raise RuntimeError(f"GET {url} {params}: {r.status} {await r.text()}")
        body: dict[str, Any] = await r.json()
        return body


async def one(conn: psycopg.AsyncConnection[Any], sql: str, args: Any = None) -> Any:
    row = await (await conn.execute(sql.encode(), args)).fetchone()
    assert row is not None
    return row


async def bench(
    args: argparse.Namespace, tmp: Path, stack: contextlib.AsyncExitStack
) -> dict[str, Any]:
    server = EmbeddedPostgres(tmp / "pg")
    stack.callback(server.stop)
    dsn = server.start()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)
        version = (await one(conn, "SHOW server_version"))[0]

    # Whole seconds: windows then fall anywhere in the span, never across its ends.
    t0_ns = (time.time_ns() - args.age_s * S) // S * S - args.span_s * S
    log(
        f"filling {args.rows:,} rows, {args.pids} pids, {args.monitors} monitors, "
        f"{rfc3339_ns(t0_ns)} + {args.span_s} s"
    )
    filled = await fill(args, dsn, t0_ns)

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows, lo, hi = await one(conn, "SELECT count(*), min(ts), max(ts) FROM events")
        # distinct pids by skipping along the (pid, ts) index: count(DISTINCT) sorts 10M rows
        npids, nmon, size = await one(
            conn,
            "WITH RECURSIVE p AS (SELECT min(pid) AS pid FROM events UNION ALL "
            "SELECT (SELECT min(pid) FROM events WHERE pid > p.pid) FROM p "
            "WHERE p.pid IS NOT NULL) SELECT (SELECT count(pid) FROM p), "
            "(SELECT count(DISTINCT monitor_id) FROM event_batches), "
            "(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            " WHERE inhparent = 'events'::regclass)",
        )
    log(f"table checked: {rows:,} rows")
    pids = sorted(
        {pid_of(m, 10 * k) for m in range(args.monitors) for k in range(args.pids // args.monitors)}
    )
    rng = random.Random(args.seed)
    window = args.window_s * S
    queries = []
    for _ in range(args.queries):
        start = rng.randrange(lo, hi - window)
        queries.append((rng.choice(pids), start, start + window))

    settings = backend_settings(dsn, tmp, api_requests_per_s=0)  # the queries, not the limit
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"
    http = await stack.enter_async_context(aiohttp.ClientSession())
    cred = {"email": "bench@example.com", "password": "long enough pw"}
    async with http.post(f"{base}/auth:register", json=cred) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{base}/auth:login", json=cred) as r:
        auth = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    size_s = str(args.page_size)

    # Warm-up (not timed): every pool connection, psycopg's statement preparation.
    for pid, t0, t1 in queries[: args.warmup]:
        await api_get(
            http, f"{base}/events", auth, {"filter": filter_text(pid, t0, t1), "page_size": size_s}
        )

    log(f"{len(queries)} api queries")
    api: list[float] = []
    api_rows: list[int] = []
    for pid, t0, t1 in queries:
        query = {"filter": filter_text(pid, t0, t1), "page_size": size_s}
        t = time.perf_counter()
        body = await api_get(http, f"{base}/events", auth, query)
        api.append(time.perf_counter() - t)
        api_rows.append(len(body["events"]))

    log(f"{len(queries)} database-only queries")
    order: OrderBy = [(col, "ASC") for col in TIEBREAK]  # default order_by: timestamp, id
    db: list[float] = []
    db_rows: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for pid, t0, t1 in queries[: args.warmup]:
            where, params = compile_filter(filter_text(pid, t0, t1), EVENT_FIELDS)
            await query_events(conn, where, params, order, None, args.page_size + 1)
        for pid, t0, t1 in queries:
            where, params = compile_filter(filter_text(pid, t0, t1), EVENT_FIELDS)
            t = time.perf_counter()
            got = await query_events(conn, where, params, order, None, args.page_size + 1)
            db.append(time.perf_counter() - t)
            db_rows.append(min(len(got), args.page_size))
        if db_rows != api_rows:
            raise RuntimeError("the api and the database returned different row counts")
        pid, t0, t1 = queries[0]
        where, params = compile_filter(filter_text(pid, t0, t1), EVENT_FIELDS)
        cur = await conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM events WHERE ({where}) "
            "ORDER BY ts ASC, id ASC LIMIT %s".encode(),
            [*params, args.page_size + 1],
        )
        explain = [r[0] for r in await cur.fetchall()]
        # The page-through: the window of the first query, every page.
        expected = (
            await one(
                conn,
                "SELECT count(*) FROM events WHERE pid = %s AND ts >= %s AND ts < %s",
                (pid, t0, t1),
            )
        )[0]

    log(f"page-through of pid {pid}, {args.window_s} s window ({expected} rows)")
    pages: list[float] = []
    seen: set[tuple[str, str]] = set()
    total, last, token = 0, "", ""
    t_all = time.perf_counter()
    while True:
        query = {"filter": filter_text(pid, t0, t1), "page_size": size_s}
        if token:
            query["page_token"] = token
        t = time.perf_counter()
        body = await api_get(http, f"{base}/events", auth, query)
        pages.append(time.perf_counter() - t)
        events = body["events"]
        # (timestamp, monitor) is unique in these rows; RFC 3339 Z with 9 digits sorts as text
        seen.update((e["timestamp"], e["monitor_id"]) for e in events)
        total += len(events)
        if events and events[0]["timestamp"] < last:
            raise RuntimeError("page-through went back in time")
        last = events[-1]["timestamp"] if events else last
        token = body["next_page_token"]
        if token and not events:
            raise RuntimeError("an empty page with a next_page_token")
        if not token:
            break
    page_through_s = time.perf_counter() - t_all
    if total != expected or len(seen) != total:
        raise RuntimeError(
            f"page-through: {total} events, {len(seen)} distinct, expected {expected}"
        )

    api_p99, db_p99 = pct(api, 0.99), pct(db, 0.99)
    return {
        "benchmark": "events_query",
        "postgresql": version,
        "table": {
            "rows": rows,
            "pids": npids,
            "monitors": nmon,
            "from": rfc3339_ns(lo),
            "to": rfc3339_ns(hi),
            "size_mb": round(size / 2**20),
        },
        "fill": filled,
        "queries": len(queries),
        "window_s": args.window_s,
        "page_size": args.page_size,
        "mean_rows_returned": round(sum(api_rows) / len(api_rows), 1),
        "api_ms": summary(api),
        "baseline_database_only_ms": summary(db),
        "api_vs_database_p50_ratio": round(pct(api, 0.5) / pct(db, 0.5), 2),
        "api_vs_database_p99_ratio": round(api_p99 / db_p99, 2),
        "page_through": {
            "pid": pid,
            "rows": expected,
            "pages": len(pages),
            "total_ms": round(page_through_s * 1000, 1),
            "page_ms": summary(pages),
        },
        "explain": explain,
        "target": {"api_p99_ms": TARGET_P99_MS, "rows": TARGET_ROWS},
        "pass": api_p99 <= TARGET_P99_MS and rows >= TARGET_ROWS,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=TARGET_ROWS, help="rows to fill (10000000)")
    ap.add_argument("--queries", type=int, default=500, help="timed queries (500)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed queries first (20)")
    ap.add_argument("--pids", type=int, default=64, help="traced processes (64)")
    ap.add_argument(
        "--monitors", type=int, default=16, help="agents, each tracing pids/monitors of them (16)"
    )
    ap.add_argument("--span-s", type=int, default=3600, help="wall-clock span of the rows (3600)")
    ap.add_argument("--age-s", type=int, default=3600, help="the span ends this long ago (3600)")
    ap.add_argument("--window-s", type=int, default=60, help="query time window (60)")
    ap.add_argument("--page-size", type=int, default=100, help="page_size (100)")
    ap.add_argument(
        "--per-write",
        type=int,
        default=64,
        help="batches of 4096 events per EventWriter.write() call (64)",
    )
    ap.add_argument(
        "--chunk-batches", type=int, default=16, help="batches per monitor generated at a time (16)"
    )
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.pids % args.monitors or args.pids // args.monitors > 10:
        ap.error("--pids must be a multiple of --monitors, at most 10 per monitor")
    if args.window_s >= args.span_s or args.age_s + args.span_s > 6 * 86_400:
        ap.error("--window-s must be below --span-s, and the span within the last 6 days")
    if args.rows < args.monitors * BATCH_EVENTS or args.queries < 1:
        ap.error("--rows must fill at least one batch per monitor; --queries at least 1")
    try:
        report = asyncio.run(run_in_temp_dir(bench, args))
    except asyncio.CancelledError:
        log("terminated; cleaned up")
        return 143
    log("done; cleaned up")
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
