"""Distributed jobs (issue #14 section 3) on a real PostgreSQL: ranks reported by two machines
(one through the real CURVE control channel, one applied as its reports would be) are one job
with its ranks, missing ranks counted, its status derived from its ranks', loopback
rendezvous kept apart, and the lists that show jobs and processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend import job_events
from backend.repo import jobs as jobs_repo
from backend.repo import machines
from backend.typedefs import DB
from tests.backend.test_jobs_api import (
    MACHINE,
    OTHER,
    T0,
    Env,
    _answer_stop,
    description,
    now,
    open_env,
)
from xpucore import job_wire, protocol

MASTER = {"MASTER_ADDR": "node1", "MASTER_PORT": "29500", "WORLD_SIZE": "4"}


def rank_job(pid: int, rank: int, machine: str, env: dict[str, str] | None = None) -> Any:
    d = description(pid, 1000 + pid, machine=machine, start=T0 + rank)
    d["parameters"]["envVars"] = {
        **(MASTER if env is None else env),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank % 2),
        "CUDA_VISIBLE_DEVICES": "4,5",
    }
    return d


class Cluster:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.app = env.client.server.app

    async def on(self, machine: str, job: dict[str, Any]) -> None:
        """The job seen on machine: MACHINE's through its manager, OTHER's applied."""
        if machine == MACHINE:
            await self.env.manager.send(protocol.job_seen(MACHINE, job, now()))
            await self.env.status_of(job["pid"], job["startTicks"], "running")
            return
        async with self.app[DB].connection() as conn:
            await job_events.apply_seen(conn, OTHER, job_wire.check_job(job, OTHER))

    async def end(self, machine: str, pid: int, status: str, code: int | None = None) -> None:
        sig = 9 if status == "killed" else None
        end = job_wire.JobEnd(
            job_wire.JobKey(pid, 1000 + pid), status, code, sig, False, T0 + 9000, status
        )
        async with self.app[DB].connection() as conn:
            assert await job_events.apply_end(conn, machine, end)

    async def top(self, **params: Any) -> list[dict[str, Any]]:
        return (await self.env.get("/api/v1/jobs", **params))["jobs"]  # type: ignore[no-any-return]


@pytest.fixture
async def cluster(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_env(aiohttp_client, migrated_dsn, tmp_path) as env:
        c = Cluster(env)
        async with c.app[DB].connection() as conn:
            assert await machines.record_hello(conn, OTHER, "k2", {"hostname": "gpu2"})
        yield c


async def test_four_ranks_on_two_machines_are_one_job(cluster: Cluster) -> None:
    await cluster.on(MACHINE, rank_job(10, 0, MACHINE))
    await cluster.on(MACHINE, rank_job(11, 1, MACHINE))
    await cluster.on(OTHER, rank_job(20, 2, OTHER))
    (job,) = await cluster.top()
    assert job["kind"] == "distributed" and job["launcher"] == {
        "kind": "master",
        "id": "node1:29500",
    }
    assert (job["worldSize"], job["ranksSeen"], job["ranksMissing"]) == (4, 3, 1)
    assert job["nodeId"] == MACHINE and sorted(job["nodeIds"]) == sorted([MACHINE, OTHER])
    assert job["status"] == "running" and job["jobName"] == "train.py" and job["pid"] is None
    gid = job["jobId"]
    ranks = await cluster.env.get(f"/api/v1/jobs/{gid}/ranks")
    assert (ranks["worldSize"], ranks["ranksSeen"], ranks["missing"]) == (4, 3, 1)

    await cluster.on(OTHER, rank_job(21, 3, OTHER))
    ranks = await cluster.env.get(f"/api/v1/jobs/{gid}/ranks")
    assert ranks["missing"] == 0
    assert [
        (r["nodeId"], r["hostname"], r["pid"], r["rank"], r["localRank"], r["device"])
        for r in ranks["ranks"]
    ] == [
        (MACHINE, "gpu1", 10, 0, 0, "4"),
        (MACHINE, "gpu1", 11, 1, 1, "5"),
        (OTHER, "gpu2", 20, 2, 0, "4"),
        (OTHER, "gpu2", 21, 3, 1, "5"),
    ]
    # the machine's processes are its ranks; each knows its job
    procs = (await cluster.env.get(f"/api/v1/machines/{OTHER}/jobs"))["jobs"]
    assert sorted(p["pid"] for p in procs) == [20, 21]
    assert {p["distributedJobId"] for p in procs} == {gid} and procs[0]["kind"] == "process"
    assert [j["jobId"] for j in await cluster.top(filter='kind = "distributed"')] == [gid]
    assert await cluster.top(filter='kind = "process"') == []
    # the distributed job shows rank 0's parameters
    params = await cluster.env.get(f"/api/v1/jobs/{gid}/parameters")
    assert params["items"][0]["envVars"]["RANK"] == "0"

    # its status follows its ranks': the worst end, naming the rank
    for machine, pid in ((MACHINE, 10), (MACHINE, 11), (OTHER, 20)):
        await cluster.end(machine, pid, "exited", 0)
    assert (await cluster.env.get(f"/api/v1/jobs/{gid}"))["status"] == "running"
    await cluster.end(OTHER, 21, "killed")
    job = await cluster.env.get(f"/api/v1/jobs/{gid}")
    assert (job["status"], job["signal"], job["statusReason"]) == (
        "killed",
        9,
        "rank 3 (gpu2) killed by signal 9",
    )
    assert job["endTime"] == T0 + 9000
    hist = await cluster.env.get(f"/api/v1/jobs/{gid}/status-history")
    assert [(h["oldStatus"], h["newStatus"]) for h in hist["items"]] == [("running", "killed")]

    # an elastic restart of rank 3 soon after rejoins the same job, which runs again
    await cluster.on(OTHER, rank_job(22, 3, OTHER))
    job = await cluster.env.get(f"/api/v1/jobs/{gid}")
    assert (job["status"], job["ranksSeen"]) == ("running", 4)
    ranks = await cluster.env.get(f"/api/v1/jobs/{gid}/ranks")
    assert [r["pid"] for r in ranks["ranks"] if r["rank"] == 3] == [21, 22]


async def test_loopback_rendezvous_on_two_machines_stay_apart(cluster: Cluster) -> None:
    local = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2"}
    await cluster.on(MACHINE, rank_job(30, 0, MACHINE, local))
    await cluster.on(OTHER, rank_job(40, 0, OTHER, local))
    await cluster.on(OTHER, rank_job(41, 1, OTHER, local))
    jobs = await cluster.top()
    assert len(jobs) == 2
    by_node = {j["nodeId"]: j for j in jobs}
    assert (by_node[MACHINE]["ranksSeen"], by_node[MACHINE]["ranksMissing"]) == (1, 1)
    assert (by_node[OTHER]["ranksSeen"], by_node[OTHER]["ranksMissing"]) == (2, 0)


async def test_a_process_job_is_its_own_rank_and_slurm_ranks_group(cluster: Cluster) -> None:
    await cluster.env.seen(50, 1)
    await cluster.env.status_of(50, 1, "running")
    (single,) = await cluster.top()
    assert single["kind"] == "process" and single["distributedJobId"] is None
    ranks = await cluster.env.get(f"/api/v1/jobs/{single['jobId']}/ranks")
    assert (ranks["worldSize"], ranks["missing"], len(ranks["ranks"])) == (1, 0, 1)
    assert ranks["ranks"][0]["rank"] == 0 and ranks["ranks"][0]["pid"] == 50

    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2"}
    for machine, pid, procid in ((MACHINE, 60, "0"), (OTHER, 61, "1")):
        d = rank_job(pid, 0, machine)
        d["parameters"]["envVars"] = {**slurm, "SLURM_PROCID": procid}
        await cluster.on(machine, d)
    dist = [j for j in await cluster.top() if j["kind"] == "distributed"]
    assert len(dist) == 1 and dist[0]["launcher"] == {"kind": "slurm", "id": "4242"}
    assert (dist[0]["ranksSeen"], dist[0]["ranksMissing"]) == (2, 0)
    assert uuid.UUID(dist[0]["jobId"]) != jobs_repo.job_id(MACHINE, 60, 1060)


async def test_stop_a_distributed_job_stops_its_live_ranks(cluster: Cluster) -> None:
    await cluster.on(MACHINE, rank_job(70, 0, MACHINE))
    await cluster.on(MACHINE, rank_job(71, 1, MACHINE))
    (job,) = await cluster.top()
    answers = asyncio.gather(_answer_stop(cluster.env), _answer_stop(cluster.env))
    r = await cluster.env.client.post(
        f"/api/v1/jobs/{job['jobId']}:stop", headers=cluster.env.team.admin
    )
    assert r.status == 200, await r.text()
    assert sorted(c["pid"] for c in await answers) == [70, 71]
    body = await r.json()
    assert body["status"] == "stopped" and body["jobId"] == job["jobId"]
    r = await cluster.env.client.post(
        f"/api/v1/jobs/{job['jobId']}:stop", headers=cluster.env.team.admin
    )
    assert r.status == 409
