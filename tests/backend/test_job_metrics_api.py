"""Process metrics of AI jobs (issue #14, seed 000 section 3.5) on a real PostgreSQL, and on
a real InfluxDB: known samples sent by a scripted manager come back per interval with the
documented aggregates from either store; state T suspends a job and another state resumes
it, a snapshot and a description leave it suspended; bad ranges are 400s naming the field;
retention deletes old samples."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.repo import jobs as jobs_repo
from backend.retention import Retention
from backend.settings import Settings
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD
from tests.backend.test_jobs_api import MACHINE, T0, Env, open_env
from tests.platform import eventually
from xpucore import protocol

MI = 1 << 20
A, B = (500, 1), (501, 1)  # (pid, start ticks)


def sample(
    key: tuple[int, int], at_s: int, cpu: float | None, rss_mi: int, **over: Any
) -> dict[str, Any]:
    return {
        "pid": key[0],
        "start_ticks": key[1],
        "time": T0 + at_s * 1000,
        "state": "S",
        "cpu_percent": cpu,
        "rss_bytes": rss_mi * MI,
        "threads": 2,
        "read_bytes": 0,
        "write_bytes": 0,
        "io_source": "io",
        "open_files": 3,
        "accel_memory_bytes": None,
        **over,
    }


# Job A's samples: (seconds after T0, cpu %, RSS MiB, threads, open files, read, written, state)
SAMPLES_A = [
    (0, None, 100, 4, 10, 0, 0, "R"),
    (20, 10.0, 300, 6, 12, 1000, 50, "S"),
    (40, 50.0, 200, 5, 11, 2000, 70, "R"),
    (60, 90.0, 50, 2, 3, 3000, 80, "T"),  # SIGSTOP
    (70, 0.0, 60, 2, 3, 3000, 90, "S"),  # SIGCONT
]


def a_sample(row: tuple[Any, ...]) -> dict[str, Any]:
    at, cpu, rss, threads, files, read, written, state = row
    return sample(
        A,
        at,
        cpu,
        rss,
        threads=threads,
        open_files=files,
        read_bytes=read,
        write_bytes=written,
        state=state,
    )


def point(at_s: int, **values: Any) -> dict[str, Any]:
    jid = str(jobs_repo.job_id(MACHINE, *A))
    out = {
        "jobId": jid,
        "pid": A[0],
        "timestamp": datetime.fromtimestamp(T0 / 1000 + at_s, UTC).isoformat(),
        "accelMemoryBytes": None,
        **values,
    }
    out["memoryMb"] = round(out["rssBytes"] / MI, 1)
    return out


#: interval 1m over A's samples, the late one at 30 s (cpu 30, 10 MiB) and a repeat included
PER_MINUTE = [
    point(0, cpuPercent=30.0, rssBytes=300 * MI, threadCount=6, openFiles=12,
          readBytes=2000, writeBytes=70, suspended=False, samples=4),
    point(60, cpuPercent=45.0, rssBytes=60 * MI, threadCount=2, openFiles=3,
          readBytes=3000, writeBytes=90, suspended=True, samples=2),
]  # fmt: skip


async def send(env: Env, *samples: dict[str, Any]) -> None:
    await env.manager.send(protocol.job_metrics(MACHINE, 10.0, list(samples), datetime.now(UTC)))


async def latest_at(env: Env, key: tuple[int, int], at_s: int) -> None:
    want = datetime.fromtimestamp(T0 / 1000 + at_s, UTC).isoformat()

    async def check() -> Any:
        m = (await env.job(*key))["latestMetrics"]
        return m is not None and m["timestamp"] == want

    await eventually(check, f"job {key} latest sample at {at_s} s", 10.0)


async def metrics(env: Env, key: tuple[int, int] = A, **params: Any) -> Any:
    """The job's process metrics; up to an hour after T0 unless params say (this machine's
    clock may be far past T0: a range up to now is the default)."""
    jid = jobs_repo.job_id(MACHINE, *key)
    params = {"endTime": "2025-12-29T10:20:00Z", **params}
    return await env.get(f"/api/v1/jobs/{jid}/process-metrics", **params)


@pytest.fixture(params=["postgresql", "influxdb"])
async def store_env(
    request: pytest.FixtureRequest, aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> AsyncIterator[Env]:
    extra: dict[str, Any] = {}
    if request.param == "influxdb":
        server = request.getfixturevalue("influx_server")
        extra = {"influx_url": server.url, "influx_database": request.getfixturevalue("influx_db")}
    async with open_env(aiohttp_client, migrated_dsn, tmp_path, **extra) as e:
        yield e


async def test_samples_per_interval_and_suspension(store_env: Env) -> None:
    env = store_env
    await env.seen(*A)
    await env.seen(*B)
    await env.status_of(*B, "running")
    await send(env, a_sample(SAMPLES_A[0]))
    await send(env, a_sample(SAMPLES_A[1]), sample(B, 20, 5.0, 999))  # B is not A
    await send(env, a_sample(SAMPLES_A[2]))
    await send(env, a_sample(SAMPLES_A[3]))
    await env.status_of(*A, "suspended")
    # a suspended job is running to its manager: its snapshot lists it, its description says
    # running; neither ends nor resumes it
    await env.snapshot(A, B)
    await env.seen(*A)
    await env.seen(502, 1)  # sentinel: what came before it has been applied
    await env.status_of(502, 1, "running")
    assert (await env.job(*A))["status"] == "suspended"
    await send(env, a_sample(SAMPLES_A[4]))
    await env.status_of(*A, "running")
    history = await env.history(*A)
    assert [h[:2] for h in history] == [
        (None, "running"),
        ("running", "suspended"),
        ("suspended", "running"),
    ]
    assert history[1][2] == "stopped by a signal (state T in /proc/500/stat)"
    assert history[2][2] == "continued (state S in /proc/500/stat)"
    # late and repeated samples: stored once, the latest stays the latest
    await send(env, sample(A, 30, 30.0, 10, threads=1, open_files=1), sample(B, 80, 1.0, 1))
    await latest_at(env, B, 80)
    await send(env, a_sample(SAMPLES_A[1]), sample(B, 90, 1.0, 1))
    await latest_at(env, B, 90)
    latest = (await env.job(*A))["latestMetrics"]
    assert (latest["cpuPercent"], latest["rssBytes"], latest["state"]) == (0.0, 60 * MI, "S")
    assert latest["memoryMb"] == 60.0 and latest["writeBytes"] == 90

    async def per_minute() -> Any:
        body = await metrics(env, startTime="2025-12-29T09:00:00Z", interval="1m")
        return body if body["metrics"] == PER_MINUTE else None

    body = await eventually(per_minute, "the samples stored", 10.0)  # InfluxDB writes behind
    assert body["interval"] == "1m" and body["pid"] == A[0]
    assert body["source"] == ("influxdb" if env.settings.influx_url else "postgresql")
    assert body["aggregates"]["cpuPercent"] == "mean" and body["aggregates"]["rssBytes"] == "max"
    ten = (await metrics(env, interval="10s"))["metrics"]  # from the job's start: T0
    assert [(p["timestamp"][14:19], p["cpuPercent"], p["samples"]) for p in ten] == [
        ("20:00", None, 1),  # minutes and seconds past 09:00
        ("20:20", 10.0, 1),
        ("20:30", 30.0, 1),
        ("20:40", 50.0, 1),
        ("21:00", 90.0, 1),
        ("21:10", 0.0, 1),
    ]
    assert [p["suspended"] for p in ten] == [False] * 4 + [True, False]
    window = await metrics(
        env, startTime="2025-12-29T09:20:20Z", endTime="2025-12-29T09:21:00Z", interval="20s"
    )
    assert [(p["timestamp"][14:19], p["samples"]) for p in window["metrics"]] == [
        ("20:20", 2),
        ("20:40", 1),
    ]
    auto = await metrics(env, endTime="2025-12-29T09:21:20Z")  # no interval: the finest
    assert auto["interval"] == "10s" and len(auto["metrics"]) == 6
    b = (await metrics(env, B, interval="1h"))["metrics"]
    assert [(p["samples"], p["rssBytes"]) for p in b] == [(3, 999 * MI)]


async def test_bad_ranges_name_their_field(store_env: Env) -> None:
    env = store_env
    await env.seen(*A)
    await env.status_of(*A, "running")
    jid = jobs_repo.job_id(MACHINE, *A)
    for params, field in (
        ({"interval": "7x"}, "interval"),
        ({"interval": "0s"}, "interval"),
        ({"interval": "1.5m"}, "interval"),
        ({"interval": "8d"}, "interval"),
        ({"interval": "1s", "startTime": "2020-01-01T00:00:00Z"}, "interval"),
        ({"startTime": "yesterday"}, "startTime"),
        ({"startTime": "2025-12-29 09:20:00"}, "startTime"),
        ({"endTime": "2025-12-29T09:00:00+25:00"}, "endTime"),
        ({"startTime": "2025-12-29T09:20:00Z", "endTime": "2025-12-29T09:20:00Z"}, "endTime"),
        ({"startTime": "1000-01-01T00:00:00Z", "endTime": "9000-01-01T00:00:00Z"}, "startTime"),
    ):
        r = await env.client.get(
            f"/api/v1/jobs/{jid}/process-metrics", headers=env.team.viewer, params=params
        )
        assert r.status == 400, (params, await r.text())
        error = (await r.json())["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert error["message"].startswith(f"{field}: "), (params, error)
    r = await env.client.get(
        f"/api/v1/jobs/{jobs_repo.job_id(MACHINE, 9, 9)}/process-metrics", headers=env.team.viewer
    )
    assert r.status == 404


async def test_retention_deletes_old_samples(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as env:
        await env.seen(*A)
        await env.status_of(*A, "running")
        await send(env, a_sample(SAMPLES_A[0]))
        await send(env, a_sample(SAMPLES_A[1]))
        await latest_at(env, A, 20)
        pool = env.client.server.app[DB]
        month = 30 * 86400 * 10**9  # retention_days 30: the samples at T0 and T0 + 20 s
        for past_t0_s, left in ((1, [1]), (19, [1]), (21, [])):
            clock = T0 * 10**6 + month + past_t0_s * 10**9
            retention = Retention(pool, Settings(retention_days=30), clock_ns=lambda c=clock: c)
            done = await retention.run_once()
            assert done.job_metrics == (1 if past_t0_s != 19 else 0)
            body = await metrics(env, interval="1h", startTime="2025-12-29T00:00:00Z")
            assert [p["samples"] for p in body["metrics"]] == left


async def test_cli_prints_a_jobs_metrics(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": PASSWORD)
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as env:
        await env.seen(*A)
        await env.status_of(*A, "running")
        for row in SAMPLES_A[:3]:
            await send(env, a_sample(row))
        await latest_at(env, A, 40)
        url = str(env.client.make_url("/")).rstrip("/")

        def xputrace(*argv: str) -> tuple[int, str]:
            rc = cli.main(["--url", url, *argv])
            return rc, capsys.readouterr().out

        assert (await asyncio.to_thread(xputrace, "login", "op@example.com"))[0] == 0
        jid = str(jobs_repo.job_id(MACHINE, *A))
        rc, out = await asyncio.to_thread(
            xputrace, "jobs", "metrics", jid, "--interval", "1m", "--end", "2025-12-29T10:00:00Z"
        )
        assert rc == 0
        (line,) = out.splitlines()
        assert (json.loads(line)["cpuPercent"], json.loads(line)["samples"]) == (30.0, 3)
        rc, _ = await asyncio.to_thread(xputrace, "jobs", "metrics", jid, "--interval", "1x")
        assert rc != 0
