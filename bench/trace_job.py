"""A trace job end to end: events in PostgreSQL to a Perfetto file, and where the time goes.

A fresh embedded PostgreSQL (temporary directory) is filled with --rows events of one
monitor (bench/events_query.py's fill: the ingest path's EventWriter, a PyTorch-like mix of
launches, copies, syncs and allocations). Then backend.trace_build.build_trace writes the
trace of all of them, --rounds times, as a trace job does; and one more pass, the same
streaming read, times its three stages apart: the fetch (COPY in the binary format),
from_copy (its rows to columns, event_data JSON included) and write_perfetto. Issue #4 sets
no target here: bench/trace_write.py measures the writer against its baseline; this says
what a user waits.
Prints one JSON object (progress on stderr).

    .venv/bin/python bench/trace_job.py [--rows 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import events_query  # noqa: E402
from common import run_in_temp_dir  # noqa: E402

from backend.db.embedded import EmbeddedPostgres  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.repo.events import copy_events  # noqa: E402
from backend.trace_build import TraceSpec, build_trace  # noqa: E402
from trace_export import ROW_COLUMNS, EventChunk, from_copy, write_perfetto  # noqa: E402


def stages(conn: psycopg.Connection[Any]) -> dict[str, float]:
    """One streaming read of every event as a trace job makes it (COPY, from_copy), each
    stage timed apart."""
    fetch_s = rows_s = 0.0
    n = 0

    def chunks() -> Iterator[EventChunk]:
        nonlocal fetch_s, rows_s, n
        with contextlib.closing(copy_events(conn, "TRUE", [], ROW_COLUMNS, 50_000)) as it:
            while True:
                t = time.perf_counter()
                got = next(it, None)
                fetch_s += time.perf_counter() - t
                if got is None:
                    return
                t = time.perf_counter()
                c = from_copy(*got, "CUDA")
                rows_s += time.perf_counter() - t
                n += got[1]
                yield c

    t = time.perf_counter()
    write_perfetto(chunks(), io.BytesIO())
    total = time.perf_counter() - t
    return {"fetch_rows_per_s": round(n / fetch_s), "from_copy_rows_per_s": round(n / rows_s),
            "write_events_per_s": round(n / (total - fetch_s - rows_s)),
            "all_events_per_s": round(n / total)}  # fmt: skip


async def bench(args: argparse.Namespace, tmp: Path, stack: contextlib.AsyncExitStack
                ) -> dict[str, Any]:  # fmt: skip
    server = EmbeddedPostgres(tmp / "pg")
    stack.callback(server.stop)
    dsn = server.start()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)
    t0_ns = (
        time.time_ns() - args.age_s * events_query.S
    ) // events_query.S * events_query.S - args.span_s * events_query.S
    filled = await events_query.fill(args, dsn, t0_ns)
    runs = []
    with (
        psycopg.connect(dsn, autocommit=True) as conn,
        psycopg.connect(dsn, autocommit=True) as side,
    ):
        for _ in range(args.rounds):  # as backend.trace_jobs runs it: COPY on conn
            t = time.perf_counter()
            built = build_trace(conn, TraceSpec(uuid.uuid4(), "", "perfetto", False),
                                tmp / "traces", stop=threading.Event(), side=side)  # fmt: skip
            runs.append((time.perf_counter() - t, built))
            events_query.log(f"trace job: {built.events:,} events in {runs[-1][0]:.2f} s")
        parts = stages(conn)
    best, built = min(runs, key=lambda r: r[0])
    return {"rows": filled["rows_written"], "fill_rows_per_s": filled["rows_per_s"],
            "trace_job": {"events_per_s": round(built.events / best), "seconds": round(best, 2),
                          "bytes_per_event": round(built.file_size / built.events, 2)},
            "stages": parts}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2, help="trace jobs; the fastest is kept")
    args = ap.parse_args()
    # events_query.fill's knobs: one monitor tracing one process, over ten minutes
    args.pids, args.monitors, args.span_s, args.age_s = 1, 1, 600, 3600
    args.per_write, args.chunk_batches, args.seed = 64, 16, 7
    print(json.dumps(asyncio.run(run_in_temp_dir(bench, args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
