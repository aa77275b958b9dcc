"""Statistics (issue #15 section 4) from a scripted manager on the real CURVE channel and a
real PostgreSQL: known device samples and jobs give exact counts and means in /stats/cluster
and /stats/machines/{id}; a job holding memory on two GPUs is in /stats/jobs with both, its
memory and device time; /stats/trends per interval; errors name the field; the CLI tables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.repo import jobs as jobs_repo
from tests.backend.test_devices_api import T0, TIMES, MiB, devices_at, iso_ms, sampled, send
from tests.backend.test_jobs_api import MACHINE, Env, description, open_env
from tests.platform import eventually
from xpucore import protocol

A_PID, B_PID, STRAY_PID = 4242, 5151, 999
A = str(jobs_repo.job_id(MACHINE, A_PID, 1))
B = str(jobs_repo.job_id(MACHINE, B_PID, 2))
B_END = T0 + 90_000  # in the second minute


def sample(k: int) -> list[dict[str, Any]]:
    """devices_at(k), with job A on GPUs 0 and 1 (and a stray pid on GPU 0), job B on NPU 2
    at the first two samples only."""
    devs = devices_at(k)
    for d in devs:
        d["processes"] = []
    devs[0]["processes"] = [
        {"pid": A_PID, "memory_bytes": (512 + 10 * k) * MiB},
        {"pid": STRAY_PID, "memory_bytes": 64 * MiB},
    ]
    devs[1]["processes"] = [{"pid": A_PID, "memory_bytes": 256 * MiB}]
    if k < 2:
        devs[4 + 2]["processes"] = [{"pid": B_PID, "memory_bytes": 100 * MiB}]
    return devs


async def feed(env: Env) -> None:
    now = datetime.now(UTC)
    await env.manager.send(
        protocol.job_seen(MACHINE, description(A_PID, 1, start=T0 - 60_000), now)
    )
    b = description(B_PID, 2, name="serve.py", framework=None, job_type="inference", start=T0)
    await env.manager.send(protocol.job_seen(MACHINE, b, now))
    await env.status_of(A_PID, 1, "running")
    await env.status_of(B_PID, 2, "running")
    for k, ms in enumerate(TIMES):
        await send(env, ms, sample(k))
    await sampled(env, TIMES[-1])
    await env.manager.send(
        protocol.job_changed(MACHINE, B_PID, 2, "exited", 0, None, False, B_END, "done", now)
    )
    await env.status_of(B_PID, 2, "exited")


def device_figures(body: dict[str, Any]) -> None:
    last = devices_at(3)
    assert body["devices"] == {
        "total": 12,
        "by_kind": {"gpu": 4, "npu": 8},
        "by_health": {"ok": 11, "warning": 1, "critical": 0, "unknown": 0},
    }
    for v in ("utilization_pct", "temperature_c", "power_w"):
        assert body[f"{v}_mean"] == pytest.approx(sum(d[v] for d in last) / 12, rel=1e-12), v
    assert body["memory_used_bytes"] == sum(d["memory_used_bytes"] for d in last)
    assert body["memory_total_bytes"] == sum(d["memory_total_bytes"] for d in last)
    assert body["jobs"] == {
        "total": 2,
        "by_status": {"exited": 1, "running": 1},
        "by_type": {"inference": 1, "training": 1},
        "by_framework": {"torch": 1, "unknown": 1},
    }


def check_top_jobs(body: dict[str, Any]) -> None:
    a, b = body["jobs"]
    assert (a["job_id"], a["job_name"], a["machine_id"], a["status"]) == (
        A,
        "train.py",
        MACHINE,
        "running",
    )
    # two GPUs held at four samples 20 s apart: 60 s each
    assert a["device_seconds"] == 120.0
    assert a["memory_bytes"] == a["peak_memory_bytes"] == (542 + 256) * MiB
    assert [
        (d["kind"], d["index"], d["uuid"], d["device_seconds"], d["memory_bytes"],
         d["peak_memory_bytes"])
        for d in a["devices"]
    ] == [
        ("gpu", 0, "GPU-0000", 60.0, 542 * MiB, 542 * MiB),
        ("gpu", 1, "GPU-0001", 60.0, 256 * MiB, 256 * MiB),
    ]  # fmt: skip
    # B: NPU 2 at the first two samples only, gone now
    assert (b["job_id"], b["status"], b["device_seconds"], b["memory_bytes"]) == (
        B,
        "exited",
        20.0,
        0,
    )
    assert b["peak_memory_bytes"] == 100 * MiB
    assert [(d["kind"], d["index"]) for d in b["devices"]] == [("npu", 2)]


def check_trends(body: dict[str, Any]) -> None:
    pts = body["points"]
    assert [p["time"] for p in pts] == [iso_ms(T0 + 60_000 * i) for i in range(3)]
    for p, ks in zip(pts[:2], ([0, 1, 2], [3]), strict=True):
        samples = [devices_at(k) for k in ks]
        assert p["devices"] == 12
        for v in ("utilization_pct", "temperature_c"):
            want = sum(s[i][v] for s in samples for i in range(12)) / (12 * len(ks))
            assert p[f"{v}_mean"] == pytest.approx(want, rel=1e-12), v
        assert p["memory_used_bytes"] == sum(
            max(s[i]["memory_used_bytes"] for s in samples) for i in range(12)
        )
    assert [p["jobs_running"] for p in pts] == [2, 2, 1]  # B ended 90 s in
    assert pts[2]["devices"] == 0 and pts[2]["utilization_pct_mean"] is None
    assert pts[2]["memory_used_bytes"] == 0


@pytest.fixture
async def env(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Any:
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as e:
        await feed(e)
        yield e


async def test_cluster_and_machine(env: Env) -> None:
    body = await env.get("/api/v1/stats/cluster")  # a viewer reads it
    assert body["machines"] == {"total": 1, "by_status": {"ACTIVE": 1, "INACTIVE": 0}}
    device_figures(body)
    one = await env.get(f"/api/v1/stats/machines/{MACHINE}")
    assert (one["machine_id"], one["status"]) == (MACHINE, "ACTIVE")
    device_figures(one)
    lines = cli.stats_table(body).splitlines()  # xputrace stats
    assert lines[0].split() == ["machines", "1", "ACTIVE", "1", "INACTIVE", "0"]
    assert "jobs" in lines[2] and "running 1" in lines[2]


async def test_top_jobs_join_devices(env: Env) -> None:
    check_top_jobs(await env.get("/api/v1/stats/jobs"))
    check_top_jobs(await env.get("/api/v1/stats/jobs", machine_id=MACHINE, limit="5"))
    assert [j["job_id"] for j in (await env.get("/api/v1/stats/jobs", limit="1"))["jobs"]] == [A]
    now = await env.get("/api/v1/stats/jobs", order_by="memory")
    assert [(j["job_id"], j["memory_bytes"]) for j in now["jobs"]] == [(A, 798 * MiB)]
    peak = await env.get("/api/v1/stats/jobs", order_by="peak_memory")
    assert [j["job_id"] for j in peak["jobs"]] == [A, B]
    assert (await env.get("/api/v1/stats/jobs", machine_id="other"))["jobs"] == []
    # the device's process list names the same job
    procs = await env.get(f"/api/v1/machines/{MACHINE}/device-processes", kind="gpu", device="1")
    assert [(p["pid"], p["job_id"]) for p in procs["processes"]] == [(A_PID, A)]
    lines = cli.top_jobs_table(await env.get("/api/v1/stats/jobs")).splitlines()
    assert lines[0].split()[:4] == ["JOB", "NAME", "MACHINE", "STATUS"]
    assert lines[1].split()[1:] == ["train.py", MACHINE[:12], "running", "120", "798",
                                    "798", "gpu0,gpu1"]  # fmt: skip
    assert lines[2].split()[-1] == "npu2"


async def test_trends_per_interval(env: Env) -> None:
    body = await env.get(
        "/api/v1/stats/trends", startTime=iso_ms(T0), endTime=iso_ms(T0 + 180_000), interval="1m"
    )
    assert (body["interval"], body["source"]) == ("1m", "postgresql")
    check_trends(body)
    lines = cli.trends_table(body).splitlines()
    assert lines[0].split() == ["TIME", "DEVICES", "UTIL%", "TEMP", "C", "MEM", "MiB", "JOBS"]
    assert lines[3].split() == [iso_ms(T0 + 120_000), "0", "-", "-", "0", "1"]
    one = await env.get(
        "/api/v1/stats/trends",
        startTime=iso_ms(T0),
        endTime=iso_ms(T0 + 120_000),
        interval="5m",
        machine_id="nope",
    )
    assert one["machine_id"] == "nope"
    assert [(p["devices"], p["jobs_running"]) for p in one["points"]] == [(0, 0)]


async def test_errors_name_the_field(env: Env) -> None:
    for path, params, field in [
        ("/api/v1/stats/jobs", {"order_by": "cost"}, "order_by"),
        ("/api/v1/stats/jobs", {"limit": "0"}, "limit"),
        ("/api/v1/stats/jobs", {"limit": "101"}, "limit"),
        ("/api/v1/stats/jobs", {"machine_id": ""}, "machine_id"),
        ("/api/v1/stats/trends", {"interval": "2m"}, "interval"),
        ("/api/v1/stats/trends", {"startTime": "yesterday"}, "startTime"),
        ("/api/v1/stats/trends", {"endTime": "2026-13-01T00:00:00Z"}, "endTime"),
        ("/api/v1/stats/trends", {"startTime": iso_ms(T0), "endTime": iso_ms(T0)}, "startTime"),
    ]:
        r = await env.client.get(path, headers=env.team.viewer, params=params)
        body = await r.json()
        assert r.status == 400, (path, params, body)
        assert body["error"]["message"].startswith(f"{field}: "), body
    r = await env.client.get("/api/v1/stats/machines/nope", headers=env.team.viewer)
    assert r.status == 404
    r = await env.client.get("/api/v1/stats/cluster")
    assert r.status == 401


async def test_device_time_waits_for_a_second_sample(env: Env) -> None:
    """A sample older than a device's latest credits nothing."""
    await send(env, TIMES[1], sample(1))
    await send(env, TIMES[-1] + 20_000, sample(3))
    await sampled(env, TIMES[-1] + 20_000)

    async def credited() -> Any:
        body = await env.get("/api/v1/stats/jobs")
        return body if body["jobs"][0]["device_seconds"] == 160.0 else None

    body = await eventually(credited, "the fifth sample credited", 10.0)
    assert [d["device_seconds"] for d in body["jobs"][0]["devices"]] == [80.0, 80.0]
