"""Events query latency at 10M rows: pid + time range through the REST API (target p99 <= 50 ms).

Fills `events` (embedded PostgreSQL, all indexes) with --rows synthetic rows from 64 agents
(bench/ingest_copy.py's realistic mix) through EventWriter, then serves the real app and
times --queries GET /api/v1/events?filter=pid = P AND timestamp >= T0 AND timestamp < T1
(page_size 100, random pid, random 1 s window). Baseline in the same run: the same SQL
straight through psycopg.

usage: python bench/events_query.py [--rows 10000000] [--queries 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from ingest_copy import synthetic_batches  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.db.embedded import EmbeddedPostgres  # noqa: E402
from backend.db.events_copy import DAY_NS, EventWriter  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.handlers.events import rfc3339_ns  # noqa: E402
from tests.pg_fixtures import backend_settings  # noqa: E402

MONITORS = 64


def ms(xs: list[float], p: float) -> float:
    return round(sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000, 2)


async def fill(dsn: str, rows: int, start_ns: int) -> float:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)
    writer = EventWriter()
    chunk = 1_048_576  # generate and write a slice at a time: bounded memory
    t0 = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await writer.ensure_partitions(conn, [start_ns // DAY_NS, start_ns // DAY_NS + 1])
        for i, first in enumerate(range(0, rows, chunk)):
            batches = synthetic_batches(min(chunk, rows - first),
                                        start_ns + i * 1_600_000_000, MONITORS, seed=i + 1)
            for j in range(0, len(batches), 16):
                res = await writer.write(conn, batches[j:j + 16])
                assert not res.rejected, res.rejected[:1]
        await conn.execute("ANALYZE events")
        await conn.commit()
    return time.perf_counter() - t0


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    server = EmbeddedPostgres(tmp / "pg")
    dsn = server.start()
    start_ns = time.time_ns() - 3 * 3600 * 10**9
    try:
        fill_s = await fill(dsn, args.rows, start_ns)
        with psycopg.connect(dsn) as conn:
            lo, hi, n = conn.execute("SELECT min(ts), max(ts), count(*) FROM events").fetchone()
            pids = [r[0] for r in conn.execute("SELECT DISTINCT pid FROM events")]
        rng = random.Random(7)
        windows = []
        for _ in range(args.queries):
            t0 = rng.randrange(lo, max(lo + 1, hi - 10**9))
            windows.append((rng.choice(pids), t0, t0 + 10**9))
        settings = backend_settings(dsn, tmp)
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"
        api, rows_back = [], 0
        try:
            async with aiohttp.ClientSession() as http:
                body = {"email": "bench@example.com", "password": "long enough pw"}
                await (await http.post(f"{base}/auth:register", json=body)).read()
                tok = await (await http.post(f"{base}/auth:login", json=body)).json()
                auth = {"Authorization": f"Bearer {tok['access_token']}"}
                for pid, t0, t1 in windows:
                    flt = (f"pid = {pid} AND timestamp >= '{rfc3339_ns(t0)}' "
                           f"AND timestamp < '{rfc3339_ns(t1)}'")
                    s = time.perf_counter()
                    r = await http.get(f"{base}/events", headers=auth,
                                       params={"filter": flt, "page_size": "100"})
                    got = (await r.json())["events"]
                    api.append(time.perf_counter() - s)
                    assert r.status == 200
                    rows_back += len(got)
        finally:
            await runner.cleanup()
        db = []
        with psycopg.connect(dsn) as conn:
            for pid, t0, t1 in windows:
                s = time.perf_counter()
                conn.execute("SELECT * FROM events WHERE pid = %s AND ts >= %s AND ts < %s "
                             "ORDER BY ts, id LIMIT 101", (pid, t0, t1)).fetchall()
                db.append(time.perf_counter() - s)
    finally:
        server.stop()
    report: dict[str, object] = {
        "rows": n, "fill_s": round(fill_s, 1), "fill_rows_per_s": round(n / fill_s),
        "queries": len(windows), "mean_rows_returned": round(rows_back / len(windows), 1),
        "api_ms": {"p50": ms(api, 0.5), "p95": ms(api, 0.95), "p99": ms(api, 0.99),
                   "max": round(max(api) * 1000, 2)},
        "database_only_ms": {"p50": ms(db, 0.5), "p99": ms(db, 0.99)},
        "target": "api p99 <= 50 ms at 10M rows",
    }
    report["pass"] = ms(api, 0.99) <= 50 and n >= 10_000_000
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xputrace-bench-") as tmp:
        os.chmod(tmp, 0o755)
        report = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
