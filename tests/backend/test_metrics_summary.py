"""GET /api/v1/metrics/summary: the same numbers from InfluxDB's aggregates and from
PostgreSQL's events, and the numbers the reference gives."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend.aggregates import Aggregator
from backend.app import create_app
from backend.event_writer import EventWriter
from backend.histogram import percentile
from backend.influx import InfluxConfig, InfluxWriter
from backend.metrics_summary import METRICS, SummaryQuery, _held
from tests.backend.aggregate_data import INTERVALS, MONITORS, Capture, S, make_capture
from tests.backend.influx_fixtures import InfluxServer
from tests.pg_fixtures import backend_settings

URL = "/api/v1/metrics/summary"


def rfc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // S))


@pytest.fixture
async def api(
    influx_server: InfluxServer,
    influx_db: str,
    migrated_dsn: str,
    tmp_path: Path,
    aiohttp_client: Any,
) -> tuple[TestClient, dict[str, str], Capture]:
    cap = make_capture((time.time_ns() // S - 1800) * S)
    async with await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True) as conn:
        res = await EventWriter().write(conn, cap.decoded)
        assert res.batches == len(cap.decoded)
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db))
    await writer.start()
    agg = Aggregator(lambda pts: writer.submit([p.line() for p in pts]))
    agg.add(cap.decoded)
    agg.flush()
    await writer.flushed()
    await writer.close()
    settings = backend_settings(
        migrated_dsn, tmp_path, influx_url=influx_server.url, influx_database=influx_db
    )
    client = await aiohttp_client(create_app(settings))
    email, pw = "ops@example.com", "long enough pw"
    await client.post("/api/v1/auth:register", json={"email": email, "password": pw})
    r = await client.post("/api/v1/auth:login", json={"email": email, "password": pw})
    auth = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    return client, auth, cap


async def both(client: TestClient, auth: dict[str, str], **params: str) -> dict[str, Any]:
    """The summary from each source, which must be the same. A range relative to now
    (time_range = '1h') ends at the current interval: asked again when the two requests
    fell in different intervals."""
    for _ in range(3):
        out = {}
        for source in ("influxdb", "postgresql"):
            r = await client.get(URL, params={**params, "source": source}, headers=auth)
            assert r.status == 200, await r.text()
            body = (await r.json())["summary"]
            assert body.pop("source") == source
            out[source] = body
        if out["influxdb"]["end_ns"] == out["postgresql"]["end_ns"]:
            break
    assert out["influxdb"] == out["postgresql"]
    return out["influxdb"]


async def test_summary_same_from_both_sources(api: Any) -> None:
    client, auth, cap = api
    t0 = cap.t0
    whole = f"timestamp >= '{rfc(t0)}' AND timestamp < '{rfc(t0 + INTERVALS * S)}'"
    machine = MONITORS[0][1]
    s = await both(client, auth, filter=f"machine_id = '{machine}' AND {whole}")
    assert s["machine_id"] == machine and s["time_range"] == "6s"
    m = s["metrics"]
    assert set(m) == set(METRICS)
    mine = {k: v for k, v in cap.calls.items() if k[1] == machine}
    calls = sum(a["calls"] for a in mine.values())
    assert m["api_calls_per_s"]["avg_6s"] == calls / INTERVALS
    assert m["api_errors_per_s"]["avg_6s"] == sum(a["errors"] for a in mine.values()) / 6
    assert m["bytes_copied_per_s"]["avg_6s"] == sum(a["bytes_copied"] for a in mine.values()) / 6
    assert m["latency_max_ns"]["avg_6s"] == max(a["duration_max_ns"] for a in mine.values())
    last = max(k[0] for k in mine)
    assert s["current_interval_ns"] == last * S
    assert m["api_calls_per_s"]["current"] == sum(
        a["calls"] for k, a in mine.items() if k[0] == last
    )
    merged: dict[int, int] = {}
    for a in mine.values():
        for b, c in a["hist"].items():
            merged[b] = merged.get(b, 0) + c
    assert m["latency_p99_ns"]["avg_6s"] == percentile(merged, 0.99, m["latency_max_ns"]["avg_6s"])
    held_end = sum(
        v[0]
        for k, v in cap.memory.items()
        if k[1] == machine and k[0] == max(x[0] for x in cap.memory if x[1:] == k[1:])
    )
    assert m["device_memory_bytes"]["current"] == held_end
    drops = sum(sum(v) for k, v in cap.drops.items() if k[1] == machine)
    assert m["events_dropped_per_s"]["avg_6s"] == drops / INTERVALS > 0


async def test_summary_narrowed(api: Any) -> None:
    """A process, a function, a range starting after allocations (memory carried in)."""
    client, auth, cap = api
    t0 = cap.t0
    mid = f"timestamp >= '{rfc(t0 + 2 * S)}' AND timestamp < '{rfc(t0 + 4 * S)}'"
    pid = MONITORS[0][2][1]
    s = await both(
        client, auth, filter=f"pid = {pid} AND {mid}", metrics="device_memory_bytes,api_calls_per_s"
    )
    assert set(s["metrics"]) == {"device_memory_bytes", "api_calls_per_s"}
    assert s["metrics"]["device_memory_bytes"]["avg_2s"] > 0
    s = await both(client, auth, filter=f"function = cudaMemcpy AND {mid}")
    want = sum(
        a["calls"]
        for k, a in cap.calls.items()
        if k[-1] == "cudaMemcpy" and 2 <= k[0] - t0 // S < 4
    )
    assert s["metrics"]["api_calls_per_s"]["avg_2s"] == want / 2
    await both(client, auth, filter=f"monitor_id = '{MONITORS[1][0]}' AND time_range = '1h'")


async def test_summary_bad_input(api: Any) -> None:
    client, auth, _ = api
    for params, field in (
        ({"metrics": "cpu_usage"}, "metrics"),
        ({"filter": "colour = 'red'"}, "filter"),
        ({"filter": "time_range = 'soon'"}, "filter"),
        ({"source": "mysql"}, "source"),
    ):
        r = await client.get(URL, params=params, headers=auth)
        assert r.status == 400
        body = await r.json()
        assert body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"].startswith(f"{field}:")
    r = await client.get(URL)
    assert r.status == 401


def test_memory_held_is_summed_by_changes_not_intervals() -> None:
    """The device memory mean and current value, from the changes alone, equal the
    interval-by-interval reference on random holdings and ranges."""
    rng = random.Random(7)
    for _ in range(300):
        step = rng.choice([1, 5, 10])
        start = rng.randrange(0, 50) * step
        q = SummaryQuery(start, start + rng.randrange(1, 40) * step, step, "x")
        memory = {
            (str(p),): sorted(
                (rng.randrange(0, 600), rng.randrange(0, 1000)) for _ in range(rng.randrange(0, 8))
            )
            for p in range(3)
        }
        at = rng.randrange(q.start_ns, q.end_ns, step)
        steps = range(q.start_ns, q.end_ns, step)
        per_step = {t: sum(next((h for c, h in reversed(ch) if c <= t), 0)
                           for ch in memory.values()) for t in steps}  # fmt: skip
        now, mean = _held(q, memory, at)
        assert now == per_step[at]
        assert mean == pytest.approx(sum(per_step.values()) / len(per_step))


async def test_a_month_long_summary_never_blocks_the_event_loop(api: Any) -> None:
    """30 days of 1 s intervals (2.6M): other requests still answer within 100 ms."""
    client, auth, _ = api
    heavy = asyncio.create_task(
        client.get(
            URL, params={"filter": "time_range = '30d'", "source": "postgresql"}, headers=auth
        )
    )
    worst = 0.0
    probes = 0
    while not heavy.done() or probes < 3:
        t = time.monotonic()
        r = await client.get("/api/v1/machines", headers=auth)
        assert r.status == 200
        worst = max(worst, time.monotonic() - t)
        probes += 1
    r = await heavy
    assert r.status == 200, await r.text()
    assert (await r.json())["summary"]["time_range"] == "30d"
    assert worst < 0.1, f"a probe took {worst * 1000:.0f} ms while the summary ran"
