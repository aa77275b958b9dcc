"""GET /api/v1/metrics/summary: the same numbers from InfluxDB's aggregates and from
PostgreSQL's events, and the numbers the reference gives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend.aggregates import Aggregator
from backend.app import create_app
from backend.db.events_copy import EventWriter
from backend.histogram import percentile
from backend.influx import InfluxConfig, InfluxWriter
from backend.metrics_summary import METRICS
from tests.backend.aggregate_data import INTERVALS, MONITORS, Capture, S, make_capture
from tests.backend.influx_fixtures import InfluxServer
from tests.pg_fixtures import backend_settings

URL = "/api/v1/metrics/summary"


def rfc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // S))


@pytest.fixture
async def api(influx_server: InfluxServer, influx_db: str, migrated_dsn: str, tmp_path: Path,
              aiohttp_client: Any) -> tuple[TestClient, dict[str, str], Capture]:
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
    settings = backend_settings(migrated_dsn, tmp_path, influx_url=influx_server.url,
                                influx_database=influx_db)
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
    assert m["api_calls_per_s"]["current"] == sum(a["calls"] for k, a in mine.items()
                                                  if k[0] == last)
    merged: dict[int, int] = {}
    for a in mine.values():
        for b, c in a["hist"].items():
            merged[b] = merged.get(b, 0) + c
    assert m["latency_p99_ns"]["avg_6s"] == percentile(merged, 0.99, m["latency_max_ns"]["avg_6s"])
    held_end = sum(v[0] for k, v in cap.memory.items()
                   if k[1] == machine and k[0] == max(x[0] for x in cap.memory if x[1:] == k[1:]))
    assert m["device_memory_bytes"]["current"] == held_end
    drops = sum(sum(v) for k, v in cap.drops.items() if k[1] == machine)
    assert m["events_dropped_per_s"]["avg_6s"] == drops / INTERVALS > 0


async def test_summary_narrowed(api: Any) -> None:
    """A process, a function, a range starting after allocations (memory carried in)."""
    client, auth, cap = api
    t0 = cap.t0
    mid = f"timestamp >= '{rfc(t0 + 2 * S)}' AND timestamp < '{rfc(t0 + 4 * S)}'"
    pid = MONITORS[0][2][1]
    s = await both(client, auth, filter=f"pid = {pid} AND {mid}",
                   metrics="device_memory_bytes,api_calls_per_s")
    assert set(s["metrics"]) == {"device_memory_bytes", "api_calls_per_s"}
    assert s["metrics"]["device_memory_bytes"]["avg_2s"] > 0
    s = await both(client, auth, filter=f"function = cudaMemcpy AND {mid}")
    want = sum(a["calls"] for k, a in cap.calls.items()
               if k[-1] == "cudaMemcpy" and 2 <= k[0] - t0 // S < 4)
    assert s["metrics"]["api_calls_per_s"]["avg_2s"] == want / 2
    await both(client, auth, filter=f"monitor_id = '{MONITORS[1][0]}' AND time_range = '1h'")


async def test_summary_bad_input(api: Any) -> None:
    client, auth, _ = api
    for params, field in (({"metrics": "cpu_utilization"}, "metrics"),
                          ({"filter": "colour = 'red'"}, "filter"),
                          ({"filter": "time_range = 'soon'"}, "filter"),
                          ({"source": "mysql"}, "source")):
        r = await client.get(URL, params=params, headers=auth)
        assert r.status == 400
        body = await r.json()
        assert body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"].startswith(f"{field}:")
    r = await client.get(URL)
    assert r.status == 401
