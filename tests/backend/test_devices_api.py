"""Accelerator samples (issue #15) through the real CURVE control channel from a scripted
manager, on a real PostgreSQL (and a real influxd): 4 GPUs and 8 NPUs with known, changing
values come back exactly in /devices, in /device-metrics at the right times with 1m
aggregation, and in the metrics summary; a device's process is joined to its job; bad samples
are dropped by field; API errors name the field; a viewer reads it all."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.repo import jobs as jobs_repo
from tests.backend.influx_fixtures import InfluxServer
from tests.backend.test_jobs_api import MACHINE, Env, open_env
from tests.platform import eventually
from xpucore import protocol

MiB = 1 << 20
T0 = (time.time_ns() // 300_000_000_000 - 2) * 300_000  # Unix ms, whole 5 minutes, 10+ min ago
TIMES = [T0, T0 + 20_000, T0 + 40_000, T0 + 60_000]  # three in the first minute, one after
JOB_PID, STRAY_PID = 4242, 999


def gpu(i: int, k: int) -> dict[str, Any]:
    """GPU i at sample k."""
    return {
        "kind": "gpu",
        "index": i,
        "uuid": f"GPU-{i:04d}",
        "name": "NVIDIA H100",
        "bus_id": f"0000:{i + 1:02x}:00.0",
        "health": "ok",
        "health_detail": None,
        "power_w": 100.0 + 10 * i + k,
        "temperature_c": 40.0 + i + 2 * k,
        "utilization_pct": float(10 * i + 5 * k),
        "memory_utilization_pct": float(i + k),
        "memory_used_bytes": (1000 + 100 * i + 10 * k) * MiB,
        "memory_total_bytes": 81_920 * MiB,
        "hbm_used_bytes": None,
        "hbm_total_bytes": None,
        "sm_clock_mhz": 1400 + k,
        "pcie_tx_bytes_per_s": 1024 * (i + 1),
        "pcie_rx_bytes_per_s": 2048 * (i + 1),
        "xid_errors": 0,
        "retired_pages": i,
        "processes": [
            {"pid": JOB_PID, "memory_bytes": 512 * MiB},
            {"pid": STRAY_PID, "memory_bytes": 64 * MiB},
        ]
        if i == 0
        else [],
    }


def npu(i: int, k: int) -> dict[str, Any]:
    return {
        "kind": "npu",
        "index": i,
        "uuid": None,
        "name": "Ascend 910B",
        "bus_id": f"0000:{0x80 + i:02x}:00.0",
        "health": "warning" if i == 7 else "ok",
        "health_detail": "ECC 1" if i == 7 else None,
        "power_w": 200.0 + i + 4 * k,
        "temperature_c": 50.0 + i,
        "utilization_pct": float(3 * i + 10 * k),
        "memory_utilization_pct": None,
        "memory_used_bytes": (2000 + i + 8 * k) * MiB,
        "memory_total_bytes": 16_384 * MiB,
        "hbm_used_bytes": (30_000 + 10 * i + k) * MiB,
        "hbm_total_bytes": 65_536 * MiB,
        "sm_clock_mhz": None,
        "pcie_tx_bytes_per_s": None,
        "pcie_rx_bytes_per_s": None,
        "xid_errors": None,
        "retired_pages": None,
        "processes": [],
    }


def devices_at(k: int) -> list[dict[str, Any]]:
    return [gpu(i, k) for i in range(4)] + [npu(i, k) for i in range(8)]


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def send(env: Env, ms: int, devices: list[dict[str, Any]], errors: Any = ()) -> None:
    msg = protocol.device_metrics(MACHINE, ms, devices, list(errors), datetime.now(UTC))
    await env.manager.send(msg)


async def sampled(env: Env, ms: int) -> dict[str, Any]:
    """/devices once every device holds the sample taken at ms."""

    async def check() -> Any:
        body = await env.get(f"/api/v1/machines/{MACHINE}/devices")
        at = {d["sampled_at"] for d in body["devices"]}
        return body if at == {iso_ms(ms)} else None

    return await eventually(check, f"sample {ms}", 10.0)  # type: ignore[no-any-return]


async def feed(env: Env) -> dict[str, Any]:
    """A job on pid JOB_PID, then the four samples; the last /devices."""
    await env.seen(JOB_PID, 77)
    await env.status_of(JOB_PID, 77, "running")
    for k, ms in enumerate(TIMES):
        await send(env, ms, devices_at(k))
    return await sampled(env, TIMES[-1])


def expected_minute(dev: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One 1m row: the means and maxima backend.device_samples.AGGREGATION names."""
    from backend.device_samples import AGGREGATION

    out: dict[str, Any] = {}
    for v, how in AGGREGATION.items():
        got = [s[v] for s in samples if s[v] is not None]
        out[v] = None if not got else (sum(got) / len(got) if how == "mean" else max(got))
    return out


async def check_metrics(env: Env) -> None:
    body = await env.get(
        f"/api/v1/machines/{MACHINE}/device-metrics",
        startTime=iso_ms(T0),
        endTime=iso_ms(T0 + 120_000),
        interval="1m",
    )
    rows = body["metrics"]
    assert len(rows) == 12 * 2
    assert body["aggregation"]["utilization_pct"] == "mean"
    assert body["aggregation"]["memory_used_bytes"] == "max"
    for dev in devices_at(0):
        mine = [r for r in rows if (r["kind"], r["index"]) == (dev["kind"], dev["index"])]
        assert [r["time"] for r in mine] == [iso_ms(T0), iso_ms(T0 + 60_000)]
        make = gpu if dev["kind"] == "gpu" else npu
        first = expected_minute(dev, [make(dev["index"], k) for k in range(3)])
        second = expected_minute(dev, [make(dev["index"], 3)])
        for row, want in ((mine[0], first), (mine[1], second)):
            for v, x in want.items():
                assert (
                    row[v] == pytest.approx(x, rel=1e-12, abs=0)
                    if x is not None
                    else (row[v] is None)
                ), (dev["kind"], dev["index"], v)
        assert mine[0]["uuid"] == dev["uuid"]
    # the cluster-wide list, one device
    one = await env.get(
        "/api/v1/device-metrics",
        startTime=iso_ms(T0),
        endTime=iso_ms(T0 + 120_000),
        interval="5m",
        kind="npu",
        device="3",
    )
    assert [(r["machine_id"], r["kind"], r["index"]) for r in one["metrics"]] == [
        (MACHINE, "npu", 3)
    ]
    assert one["metrics"][0]["memory_used_bytes"] == (2000 + 3 + 8 * 3) * MiB  # max of 4


async def check_summary(env: Env) -> None:
    window = f"timestamp >= '{iso_ms(T0)}' AND timestamp < '{iso_ms(T0 + 120_000)}'"
    names = "gpu_memory_usage,gpu_utilization,npu_memory_usage,npu_utilization"
    body = await env.get(
        "/api/v1/metrics/summary",
        filter=f"machine_id = '{MACHINE}' AND {window}",
        metrics=names,
    )
    m = body["summary"]["metrics"]
    assert list(m) == names.split(",")
    avg = next(k for k in m["gpu_utilization"] if k.startswith("avg_"))
    last = devices_at(3)
    gpus = [d for d in last if d["kind"] == "gpu"]
    npus = [d for d in last if d["kind"] == "npu"]
    assert m["gpu_memory_usage"]["current"] == sum(d["memory_used_bytes"] for d in gpus)
    assert m["npu_memory_usage"]["current"] == sum(d["memory_used_bytes"] for d in npus)
    assert m["gpu_utilization"]["current"] == pytest.approx(
        sum(d["utilization_pct"] for d in gpus) / 4
    )

    def mean_of(kind: str, v: str, i: int) -> float:
        make = gpu if kind == "gpu" else npu
        return sum(make(i, k)[v] for k in range(4)) / 4

    assert m["gpu_memory_usage"][avg] == pytest.approx(
        sum(mean_of("gpu", "memory_used_bytes", i) for i in range(4))
    )
    assert m["npu_utilization"][avg] == pytest.approx(
        sum(mean_of("npu", "utilization_pct", i) for i in range(8)) / 8
    )
    # per device, per job: GPU 0 is the one the job's process holds memory on
    jid = jobs_repo.job_id(MACHINE, JOB_PID, 77)
    for restriction in ("device = 0", f"job_id = '{jid}'"):
        one = await env.get(
            "/api/v1/metrics/summary",
            filter=f"{restriction} AND {window}",
            metrics="gpu_memory_usage",
        )
        assert (
            one["summary"]["metrics"]["gpu_memory_usage"]["current"]
            == gpu(0, 3)["memory_used_bytes"]
        ), restriction


async def check_processes(env: Env) -> None:
    body = await env.get(f"/api/v1/machines/{MACHINE}/device-processes", kind="gpu")
    jid = str(jobs_repo.job_id(MACHINE, JOB_PID, 77))
    assert [(p["index"], p["pid"], p["memory_bytes"], p["job_id"]) for p in body["processes"]] == [
        (0, STRAY_PID, 64 * MiB, None),
        (0, JOB_PID, 512 * MiB, jid),
    ] or [(p["index"], p["pid"], p["memory_bytes"], p["job_id"]) for p in body["processes"]] == [
        (0, JOB_PID, 512 * MiB, jid),
        (0, STRAY_PID, 64 * MiB, None),
    ]
    assert [p["job_name"] for p in body["processes"] if p["job_id"]] == ["train.py"]
    assert (await env.get(f"/api/v1/machines/{MACHINE}/device-processes", kind="npu"))[
        "processes"
    ] == []


def check_devices(body: dict[str, Any]) -> None:
    assert body["errors"] == []
    got = {(d["kind"], d["index"]): d for d in body["devices"]}
    assert len(got) == 12
    for want in devices_at(3):
        d = got[(want["kind"], want["index"])]
        for k, v in want.items():
            if k != "processes":
                assert d[k] == v, (want["kind"], want["index"], k)


@pytest.fixture
async def pg_env(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Any:
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as e:
        yield e


async def test_samples_in_devices_metrics_and_summary(pg_env: Env) -> None:
    body = await feed(pg_env)
    check_devices(body)
    lines = cli.devices_table(body).splitlines()  # xputrace devices
    assert lines[0].split()[:4] == ["MACHINE", "DEVICE", "NAME", "HEALTH"]
    assert lines[1].split()[1:8] == ["gpu0", "NVIDIA", "H100", "ok", "15", "1030/81920", "103"]
    assert lines[-1].split()[1:7] == ["npu7", "Ascend", "910B", "warning", "51", "2031/16384"]
    await check_metrics(pg_env)
    await check_summary(pg_env)
    await check_processes(pg_env)


async def test_samples_from_influxdb(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    influx_server: InfluxServer,
    influx_db: str,
) -> None:
    async with open_env(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        influx_url=influx_server.url,
        influx_database=influx_db,
    ) as env:
        check_devices(await feed(env))

        async def written() -> Any:
            s = influx_server.query('SELECT count("DCGM_FI_DEV_GPU_UTIL") FROM xpu_gpu', influx_db)
            return s and s[0]["values"][0][1] == 16

        await eventually(written, "InfluxDB holds the GPU points", 10.0)
        # dcgm-exporter's names and units (MiB), tagged with the job on GPU 0
        s = influx_server.query(
            "SELECT \"DCGM_FI_DEV_FB_USED\", job FROM xpu_gpu WHERE device = '0' ORDER BY time",
            influx_db,
        )
        jid = str(jobs_repo.job_id(MACHINE, JOB_PID, 77))
        assert [v[1:] for v in s[0]["values"]] == [[1000.0 + 10 * k, jid] for k in range(4)]
        s = influx_server.query(
            'SELECT "npu_chip_info_hbm_used_memory", npu_chip_info_health_status FROM xpu_npu'
            " WHERE device = '7' ORDER BY time",
            influx_db,
        )
        assert [v[1:] for v in s[0]["values"]] == [[30_070.0 + k, 0.0] for k in range(4)]
        await check_metrics(env)
        await check_summary(env)


async def test_bad_samples_dropped_by_field(pg_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "backend.device_events")
    await send(pg_env, T0, devices_at(0))
    await sampled(pg_env, T0)
    bad = devices_at(1)
    bad[2]["power_w"] = -5.0
    await send(pg_env, T0 + 1000, bad)
    await send(pg_env, T0 + 2000, [{**gpu(0, 1), "index": 5000}])
    # a machine with no library says so; the devices keep their last samples
    await send(pg_env, T0 + 3000, [], [{"library": "dcmi", "message": "libdcmi.so: not found"}])

    async def errors() -> Any:
        body = await pg_env.get(f"/api/v1/machines/{MACHINE}/devices")
        return body if body["errors"] else None

    body = await eventually(errors, "library error reported", 10.0)
    assert body["errors"] == [{"library": "dcmi", "message": "libdcmi.so: not found"}]
    assert {d["sampled_at"] for d in body["devices"]} == {iso_ms(T0)}
    assert "devices[2].power_w" in caplog.text and "devices[0].index" in caplog.text


async def test_errors_name_the_field(pg_env: Env) -> None:
    base = f"/api/v1/machines/{MACHINE}/device-metrics"
    for path, params, field in [
        (base, {"interval": "2m"}, "interval"),
        (base, {"startTime": "yesterday"}, "startTime"),
        (base, {"endTime": "2026-13-01T00:00:00Z"}, "endTime"),
        (base, {"device": "x"}, "device"),
        ("/api/v1/device-metrics", {"kind": "tpu"}, "kind"),
        ("/api/v1/metrics/summary", {"metrics": "gpu_usage"}, "metrics"),
        ("/api/v1/metrics/summary", {"filter": "device = a"}, "filter"),
        (
            "/api/v1/metrics/summary",
            {"filter": "device = 0", "metrics": "api_calls_per_s"},
            "filter",
        ),
    ]:
        r = await pg_env.client.get(path, headers=pg_env.team.viewer, params=params)
        body = await r.json()
        assert r.status == 400, (path, params, body)
        assert body["error"]["message"].startswith(f"{field}: "), body
    r = await pg_env.client.get("/api/v1/machines/nope/devices", headers=pg_env.team.viewer)
    assert r.status == 404
