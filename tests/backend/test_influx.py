"""Aggregates into a real InfluxDB (Debian's influxd 1.6.7): through the real ingest, exactly;
and across an InfluxDB outage, nothing lost within the buffer, the overflow counted exactly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend.aggregates import Aggregator, Point
from backend.control import curve_context
from backend.influx import InfluxConfig, InfluxWriter
from backend.ingest import Ingest
from tests.backend.aggregate_data import Capture, S, make_capture
from tests.backend.influx_fixtures import InfluxServer
from tests.pg_fixtures import free_tcp_endpoint
from xpucore import abi


def recent_t0() -> int:
    return (time.time_ns() // S - 3600) * S


def stored(
    server: InfluxServer, db: str, measurement: str
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """{(interval, tags...): fields} of every point of a measurement."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for series in server.query(f'SELECT * FROM "{measurement}" GROUP BY *', db):
        tags = series["tags"]
        for row in series["values"]:
            rec = dict(zip(series["columns"], row, strict=True))
            t = rec.pop("time")
            fields = {k: v for k, v in rec.items() if v is not None}
            if measurement == "xpu_calls" or measurement == "xpu_latency_hist":
                key: tuple[Any, ...] = (
                    t // S,
                    tags["machine"],
                    tags["monitor_id"],
                    int(tags["pid"]),
                    int(tags["device"]),
                    tags["function"],
                )
            elif measurement == "xpu_memory":
                key = (
                    t // S,
                    tags["machine"],
                    tags["monitor_id"],
                    int(tags["pid"]),
                    int(tags["device"]),
                )
            else:
                key = (t // S, tags["machine"], tags["monitor_id"])
            assert key not in out
            out[key] = fields
    return out


def check_all(server: InfluxServer, db: str, cap: Capture) -> None:
    calls = stored(server, db, "xpu_calls")
    assert calls.keys() == cap.calls.keys()
    for key, want in cap.calls.items():
        got = calls[key]
        for name in (
            "calls",
            "errors",
            "duration_sum_ns",
            "duration_max_ns",
            "bytes_copied",
            "bytes_allocated",
            "duration_mean_ns",
        ):
            assert got[name] == want[name], (key, name)
        assert want["true_p99_ns"] <= got["p99_ns"] <= want["duration_max_ns"]
    hist = stored(server, db, "xpu_latency_hist")
    assert {k: {int(b[1:]): c for b, c in v.items()} for k, v in hist.items()} == {
        k: a["hist"] for k, a in cap.calls.items()
    }
    memory = {
        k: (v["held_bytes"], v["held_max_bytes"])
        for k, v in stored(server, db, "xpu_memory").items()
    }
    assert memory == cap.memory
    drops = {
        k: (v["kernel"], v["inflight"], v["send"])
        for k, v in stored(server, db, "xpu_drops").items()
    }
    assert drops == cap.drops


async def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_ingest_to_influxdb_exact(
    influx_server: InfluxServer, influx_db: str, migrated_dsn: str, tmp_path: Path
) -> None:
    """Capture batches sent to the real ingest (CURVE, PostgreSQL) come out of InfluxDB as the
    reference computes them, once each although every batch is sent twice."""
    cap = make_capture(recent_t0())
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db))
    await writer.start()
    agg = Aggregator(lambda pts: writer.submit([p.line() for p in pts]))
    seen: list[tuple[str, int]] = []  # (monitor, seq) in the order the aggregator got them
    add = agg.add

    def recording_add(batches: Iterable[abi.Batch]) -> None:
        batches = list(batches)
        seen.extend((b.monitor_id, b.seq) for b in batches)
        add(batches)

    agg.add = recording_add  # type: ignore[method-assign]
    enrolled = tmp_path / "enrolled"
    enrolled.mkdir()
    client_public, client_secret = zmq.curve_keypair()
    (enrolled / "agent.key").write_text(
        f'metadata\ncurve\n    public-key = "{client_public.decode()}"\n'
    )
    server_public, server_secret = zmq.curve_keypair()
    ctx, auth = curve_context(enrolled)
    pool = AsyncConnectionPool(
        migrated_dsn, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    endpoint = free_tcp_endpoint()
    ingest = Ingest(ctx, endpoint, server_secret, server_public, pool, aggregator=agg)
    await ingest.start()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.curve_serverkey = server_public
        sock.curve_publickey, sock.curve_secretkey = client_public, client_secret
        sock.linger = 0
        sock.connect(endpoint)
        for raw in [*cap.batches, *cap.batches[:5]]:  # a few resent: stored once
            await sock.send(raw)
        acks = 0
        while acks < len(cap.batches) + 5:
            abi.decode_ack(await asyncio.wait_for(sock.recv(), 30))
            acks += 1
        await ingest.flushed()
        assert ingest.stats.duplicates == 5
        assert agg.stats.batches == len(cap.batches)
        for mon in {m for m, _ in seen}:  # in the order sent: a free never overtakes its alloc
            assert [q for m, q in seen if m == mon] == sorted(q for m, q in seen if m == mon)
    finally:
        sock.close(linger=0)
        await ingest.close()
        await pool.close()
        auth.stop()
        ctx.term()
    agg.flush()  # shutdown: everything pending
    await writer.flushed()
    await writer.close()
    assert writer.stats.overflowed_lines == writer.stats.rejected_lines == 0
    check_all(influx_server, influx_db, cap)


def lines_of(agg_points: list[Point]) -> list[str]:
    return [p.line() for p in agg_points]


@pytest.mark.parametrize("room", ["enough", "short"])
async def test_influxdb_outage(own_influx: InfluxServer, room: str) -> None:
    """InfluxDB stops mid-ingest and comes back: within the buffer nothing is lost; beyond
    it exactly the lines that did not fit are missing, and the count says so."""
    server = own_influx
    db = server.new_database()
    cap = make_capture(recent_t0())
    emitted: list[list[str]] = []

    def sink(pts: list[Point]) -> None:
        emitted.append(lines_of(pts))

    agg = Aggregator(sink)
    half = len(cap.decoded) // 2
    for b in cap.decoded[:half]:
        agg.add([b])
    first = [line for chunk in emitted for line in chunk]
    # the rest, computed without a writer: how many lines the outage has to hold
    rest_agg = Aggregator(lambda p: None)
    rest_lines: list[str] = []
    rest_agg.sink = lambda pts: rest_lines.extend(lines_of(pts))
    for b in cap.decoded:
        rest_agg.add([b])
    rest_agg.flush()
    second_n = len(rest_lines) - len(first)
    capacity = second_n + 10 if room == "enough" else second_n - 37
    writer = InfluxWriter(
        InfluxConfig(server.url, database=db),
        max_buffer_lines=capacity,
        batch_lines=100,
        min_backoff_s=0.05,
        max_backoff_s=0.2,
    )
    await writer.start()
    try:
        writer.submit(first)
        await writer.flushed()
        assert writer.stats.written_lines == len(first)
        server.stop()
        agg.sink = lambda pts: writer.submit(lines_of(pts))
        for b in cap.decoded[half:]:
            agg.add([b])
        agg.flush()
        await wait_for(lambda: writer.stats.failed_requests >= 2)  # it has tried, and failed
        assert writer.stats.written_lines == len(first)
        server.start()
        await writer.flushed()
    finally:
        await writer.close()
    assert writer.stats.rejected_lines == 0
    if room == "enough":
        assert writer.stats.overflowed_lines == 0
        check_all(server, db, cap)
    else:
        assert writer.stats.overflowed_lines == 37
        n = sum(
            len(s["values"])
            for m in ("xpu_calls", "xpu_latency_hist", "xpu_memory", "xpu_drops")
            for s in server.query(f'SELECT * FROM "{m}" GROUP BY *', db)
        )
        kept = rest_lines[: len(rest_lines) - 37]  # the buffer keeps the oldest
        assert (
            n
            == len({line.rsplit(" ", 2)[0].split(" ")[0] + line.rsplit(" ", 1)[1] for line in kept})
            == len(kept)
        )
        report = server.query("SELECT last(overflowed_lines) FROM xputrace_writer", db)
        assert report[0]["values"][0][1] == 37


async def test_v2_write_request(aiohttp_server: Any) -> None:
    """The v2 API (not in Debian's 1.6.7, so a recording server stands in): path, org,
    bucket, precision and the token header."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def write(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/v2/write", write)
    srv = await aiohttp_server(app)
    writer = InfluxWriter(
        InfluxConfig(str(srv.make_url("/")), api="v2", token="sekret", org="acme", bucket="xpu")
    )
    await writer.start()
    writer.submit(["m f=1i 1", "m f=2i 2"])
    await writer.flushed()
    await writer.close()
    req = seen[0]
    assert dict(req.query) == {"org": "acme", "bucket": "xpu", "precision": "ns"}
    assert req.headers["Authorization"] == "Token sekret"
    assert bodies[0] == b"m f=1i 1\nm f=2i 2\n"
