"""Ingest throughput with per-interval aggregation on vs off, same run.

The synthetic batches of bench/ingest_copy.py are written to a fresh, migrated database the
way the ingest writes them (``EventWriter.write`` on ``--writers`` connections taking
turns, ``--per-write`` events a call); with aggregation on, each writer hands the stored
batches to ``Aggregator.add`` after its write, on the event loop, as backend.ingest does, and
the closed intervals are rendered to line protocol (the InfluxDB writer's input). Runs
alternate, the table is emptied before each, the best of ``--repeat`` counts.

Prints one JSON object: events/s off and on, their ratio (target: on >= 0.9 x off), and the
aggregator's own cost with no database (events/s of ``add`` alone).

    .venv/bin/python bench/ingest_aggregates.py [--events 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_copy import BATCH_EVENTS, reset, synthetic_batches

from backend.aggregates import Aggregator, Point
from backend.db.embedded import EmbeddedPostgres
from backend.db.migrate import migrate
from backend.event_writer import EventWriter
from backend.repo.partitions import DAY_NS
from xpucore import abi

TARGET_RATIO = 0.9


def new_aggregator(clock: int, lines: list[int]) -> Aggregator:
    def sink(points: list[Point]) -> None:
        lines[0] += len([p.line() for p in points])

    return Aggregator(sink, clock_ns=lambda: clock)


async def write_all(
    dsn: str,
    batches: list[abi.Batch],
    per_write: int,
    clock: int,
    writers: int,
    aggregator: Aggregator | None,
) -> float:
    w = EventWriter(clock_ns=lambda: clock)
    per = max(1, per_write // BATCH_EVENTS)
    chunks = iter(range(0, len(batches), per))
    conns = [await psycopg.AsyncConnection.connect(dsn) for _ in range(writers)]
    try:

        async def run(conn: psycopg.AsyncConnection[Any]) -> None:
            for i in chunks:
                res = await w.write(conn, batches[i : i + per])
                assert len(res.stored) == len(batches[i : i + per]), res
                if aggregator is not None:
                    aggregator.add(res.stored)

        t = time.perf_counter()
        await asyncio.gather(*(run(c) for c in conns))
        if aggregator is not None:
            aggregator.flush()
        return time.perf_counter() - t
    finally:
        for c in conns:
            await c.close()


def aggregate_only(batches: list[abi.Batch], clock: int, per_write: int) -> float:
    lines = [0]
    agg = new_aggregator(clock, lines)
    per = max(1, per_write // BATCH_EVENTS)
    t = time.perf_counter()
    for i in range(0, len(batches), per):
        agg.add(batches[i : i + per])
    agg.flush()
    return time.perf_counter() - t


def run(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.events
    start = (time.time_ns() // DAY_NS) * DAY_NS + 3600 * 10**9
    clock = start + 3600 * 10**9
    batches = synthetic_batches(n, start, args.monitors)
    asyncio.run(_migrate(dsn, clock))
    best: dict[str, float] = {}
    lines = [0]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(args.repeat):
            for mode in ("off", "on"):
                reset(conn)
                agg = new_aggregator(clock, lines) if mode == "on" else None
                secs = asyncio.run(
                    write_all(dsn, batches, args.per_write, clock, args.writers, agg)
                )
                best[mode] = min(best.get(mode, float("inf")), secs)
                if agg is not None:
                    assert agg.stats.events == n, agg.stats
            best["aggregate_only"] = min(
                best.get("aggregate_only", float("inf")),
                aggregate_only(batches, clock, args.per_write),
            )
    rate = {k: n / v for k, v in best.items()}
    ratio = rate["on"] / rate["off"]
    return {
        "events": n,
        "monitors": args.monitors,
        "writers": args.writers,
        "repeat": args.repeat,
        "off_events_per_s": round(rate["off"]),
        "on_events_per_s": round(rate["on"]),
        "ratio_on_vs_off": round(ratio, 3),
        "aggregate_only_events_per_s": round(rate["aggregate_only"]),
        "lines_per_run": lines[0] // args.repeat,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "cpus": os.cpu_count(),
    }


async def _migrate(dsn: str, clock: int) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)
        await EventWriter().ensure_partitions(conn, [clock // DAY_NS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--per-write", type=int, default=262_144)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--monitors", type=int, default=4)
    ap.add_argument("--writers", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="xputrace-bench-")
    os.chmod(tmp, 0o711)
    server = EmbeddedPostgres(Path(tmp) / "pg")
    server.start()
    admin = server.dsn_for("postgres")
    dbname = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        print(json.dumps(run(psycopg.conninfo.make_conninfo(admin, dbname=dbname), args), indent=2))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
