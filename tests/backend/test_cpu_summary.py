"""The metrics summary's cpu_utilization (backend.cpu_summary) on a real PostgreSQL and on a real
InfluxDB: known job samples (MACHINE's through a scripted manager on the real CURVE channel,
OTHER's applied as its JOB_METRICS would be) give the exact sums of each job's latest sample and
mean, per machine, per process job, per distributed job (its ranks on both machines) and per
pid, the same from either store; a job's first sample (no CPU yet) and samples outside the
range are left out; the filters that do not fit are 400s naming their field."""

from __future__ import annotations

import uuid
from typing import Any

from backend import job_events
from backend.device_summary import DEVICE_METRICS
from backend.repo import jobs as jobs_repo
from backend.repo import machines
from backend.typedefs import DB, INFLUX
from tests.backend.test_distributed_jobs_api import rank_job
from tests.backend.test_job_metrics_api import (  # noqa: F401 (store_env: a fixture)
    SAMPLES_A,
    A,
    a_sample,
    latest_at,
    sample,
    send,
    store_env,
)
from tests.backend.test_jobs_api import MACHINE, OTHER, Env, now
from tests.platform import eventually
from xpucore import job_wire, protocol

URL = "/api/v1/metrics/summary"
R0, R2 = (10, 1010), (20, 1020)  # ranks 0 (on MACHINE) and 2 (on OTHER) of one job
WHOLE = "timestamp >= '2025-12-29T09:20:00Z' AND timestamp < '2025-12-29T09:22:00Z'"
# CPU % samples (seconds after T0, cpu): the first of each job has none; 120 s and 130 s are
# past the range's end (09:22:00, excluded)
CPU_R0 = [(10, None), (30, 100.0), (50, 200.0)]
CPU_R2 = [(10, None), (30, 25.0), (50, 75.0), (130, 999.0)]
# A (SAMPLES_A): 10, 50, 90, 0 after its first: mean 37.5, latest 0; R0: 150, 200; R2: 50, 75


async def _setup(env: Env) -> str:
    """The jobs and their samples; the distributed job's id."""
    app = env.client.server.app
    await env.seen(*A)
    await env.manager.send(protocol.job_seen(MACHINE, rank_job(R0[0], 0, MACHINE), now()))
    await env.status_of(*R0, "running")
    async with app[DB].connection() as conn:
        assert await machines.record_hello(conn, OTHER, "k2", {"hostname": "gpu2"})
        rank2 = job_wire.check_job(rank_job(R2[0], 2, OTHER), OTHER)
        await job_events.apply_seen(conn, OTHER, rank2)
        gid = await jobs_repo.group_of(conn, jobs_repo.job_id(MACHINE, *R0))
        assert gid is not None and gid == await jobs_repo.group_of(
            conn, jobs_repo.job_id(OTHER, *R2)
        )
    for row in SAMPLES_A:
        await send(env, a_sample(row))
    await send(env, sample(A, 120, 999.0, 10))
    for at, c in CPU_R0:
        await send(env, sample(R0, at, c, 10))
    await latest_at(env, A, 120)
    await latest_at(env, R0, 50)
    async with app[DB].connection() as conn:  # one sample of a job a message
        for at, c in CPU_R2:
            msg = protocol.job_metrics(OTHER, 10.0, [sample(R2, at, c, 10)], now())
            samples = job_wire.check_metrics(msg)
            assert await job_events.apply_metrics(conn, OTHER, samples, app.get(INFLUX)) == 1
    return str(gid)


async def cpu(env: Env, filter_: str, **params: str) -> Any:
    body = await env.get(URL, filter=filter_, metrics="cpu_utilization", **params)
    return body["summary"]


async def test_cpu_utilization_per_machine_job_and_pid(store_env: Env) -> None:  # noqa: F811
    env = store_env
    gid = await _setup(env)
    a = str(jobs_repo.job_id(MACHINE, *A))
    r2 = str(jobs_repo.job_id(OTHER, *R2))

    async def stored() -> Any:  # InfluxDB writes behind
        got = (await cpu(env, WHOLE))["metrics"]["cpu_utilization"]
        return got if got == {"current": 275.0, "avg_2m": 237.5} else None

    await eventually(stored, "every sample stored", 10.0)
    source = "influxdb" if env.settings.influx_url else "postgresql"
    for extra, current, avg in (
        ("", 275.0, 237.5),  # A 0 + R0 200 + R2 75; 37.5 + 150 + 50
        (f"machine_id = '{MACHINE}'", 200.0, 187.5),
        (f"machine_id = '{OTHER}'", 75.0, 50.0),
        (f"job_id = '{a}'", 0.0, 37.5),
        (f"job_id = '{gid}'", 275.0, 200.0),  # its ranks, on both machines
        (f"job_id = '{gid}' AND machine_id = '{OTHER}'", 75.0, 50.0),
        (f"job_id = '{r2}'", 75.0, 50.0),
        ("pid = 10", 200.0, 150.0),
        (f"pid = 500 AND machine_id = '{OTHER}'", None, None),
        (f"job_id = '{uuid.UUID(int=7)}'", None, None),
        ("monitor_id = 'm1' AND function = cudaMalloc", 275.0, 237.5),  # they do not apply
    ):
        s = await cpu(env, f"{extra} AND {WHOLE}" if extra else WHOLE)
        assert s["source"] == source and s["time_range"] == "2m"
        assert s["metrics"] == {"cpu_utilization": {"current": current, "avg_2m": avg}}, extra
    # 09:20:30 to 09:21:00: A's sample at 40 s, R0's and R2's at 30 s and 50 s
    narrow = "timestamp >= '2025-12-29T09:20:30Z' AND timestamp < '2025-12-29T09:21:00Z'"
    want = {"current": 50.0 + 200.0 + 75.0, "avg_30s": 50.0 + 150.0 + 50.0}
    assert (await cpu(env, narrow))["metrics"]["cpu_utilization"] == want
    # only first samples (no CPU yet): nothing to sum
    first = "timestamp >= '2025-12-29T09:20:00Z' AND timestamp < '2025-12-29T09:20:20Z'"
    assert (await cpu(env, first))["metrics"]["cpu_utilization"] == {
        "current": None,
        "avg_20s": None,
    }
    # with job_id and no metrics: the accelerator metrics and cpu_utilization
    body = await env.get(URL, filter=f"job_id = '{gid}' AND {WHOLE}")
    m = body["summary"]["metrics"]
    assert set(m) == {*DEVICE_METRICS, "cpu_utilization"}
    assert m["cpu_utilization"] == {"current": 275.0, "avg_2m": 200.0}
    # beside the call metrics
    body = await env.get(
        URL, filter=f"machine_id = '{OTHER}' AND {WHOLE}", metrics="api_calls_per_s,cpu_utilization"
    )
    assert body["summary"]["metrics"] == {
        "api_calls_per_s": {"current": 0.0, "avg_2m": 0.0},
        "cpu_utilization": {"current": 75.0, "avg_2m": 50.0},
    }


async def test_cpu_utilization_refusals_name_the_field(store_env: Env) -> None:  # noqa: F811
    env = store_env
    other = "postgresql" if env.settings.influx_url else "influxdb"
    for params, field in (
        ({"metrics": "cpu_utilization", "filter": "device = 0"}, "filter"),
        ({"metrics": "cpu_utilization", "source": other}, "source"),
        ({"metrics": "cpu_utilisation"}, "metrics"),
    ):
        r = await env.client.get(URL, headers=env.team.viewer, params=params)
        body = await r.json()
        assert r.status == 400, (params, body)
        assert body["error"]["message"].startswith(f"{field}: "), body
