"""Distributed jobs end to end (issue #14 section 3), as root: two managers on this host, two
machines of their own (``Platform.add_manager``), each reporting only the ranks its launcher
started (``--jobs-root-pid``); real rank processes mapping the wheel's libcudart, with the
launcher variables torchrun or Slurm give them. The backend makes one job of the ranks of one
launch across both machines, counts the missing ones, and keeps apart two single-machine jobs
that both name a loopback rendezvous."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from tests.launchers import Launcher
from tests.platform import ManagerProcess, Platform, eventually, open_platform

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")

ROOT = Path(__file__).resolve().parents[2]
CUDA_CTYPES = ROOT / "tests" / "workloads" / "cuda_ctypes.py"
WORLD = 4


class Cluster:
    """The platform's two machines: node A (the platform's own manager) and node-b, each with
    its launcher."""

    def __init__(self, p: Platform, b: ManagerProcess, launchers: tuple[Launcher, Launcher]):
        self.p, self.b = p, b
        self.launchers = dict(zip((p.machine_id, b.machine_id), launchers, strict=True))
        self.pids: dict[int, tuple[str, int]] = {}  # pid -> (machine, rank)

    @property
    def machines(self) -> tuple[str, str]:
        return self.p.machine_id, self.b.machine_id

    def start_rank(self, machine: str, rank: int, env: dict[str, str], cudart: Path) -> int:
        """A rank process on machine (its launcher's child), mapping libcudart."""
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CUDA_VISIBLE_DEVICES": "0,1"}
        pid, ready = self.launchers[machine].spawn(
            [sys.executable, str(CUDA_CTYPES), str(cudart)], {**full, **env}
        )
        assert ready["ready"] and ready["pid"] == pid
        self.pids[pid] = (machine, rank)
        return pid

    async def distributed(self, pids: list[int], ranks_seen: int) -> list[dict[str, Any]]:
        """The distributed jobs the given pids are ranks of, once ranks_seen of them are."""

        async def grouped() -> Any:
            listed = (await self.p.get("/api/v1/jobs", filter="kind = 'distributed'"))["jobs"]
            ours = []
            for job in listed:
                body = await self.p.get(f"/api/v1/jobs/{job['jobId']}/ranks")
                if {r["pid"] for r in body["ranks"]} & set(pids):
                    ours.append((job, body))
            seen = sum(len(body["ranks"]) for _, body in ours)
            return ours if seen >= ranks_seen else None

        return await eventually(grouped, f"{ranks_seen} ranks grouped")  # type: ignore[no-any-return]


@pytest.fixture
def launchers() -> Iterator[tuple[Launcher, Launcher]]:
    pair = (Launcher(), Launcher())
    try:
        yield pair
    finally:
        for la in pair:
            la.finish()
            la.kill()


@pytest.fixture
async def cluster(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    build_dir: Path,
    launchers: tuple[Launcher, Launcher],
) -> AsyncIterator[Cluster]:
    async with open_platform(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        build_dir / "xputrace-agent",
        manager_args=("--jobs-root-pid", str(launchers[0].pid)),
        extra_managers=("node-b",),
    ) as p:
        b = await p.add_manager("node-b", ("--jobs-root-pid", str(launchers[1].pid)))
        yield Cluster(p, b, launchers)


def master_env(rank: int, addr: str, port: int, world: int = WORLD) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank % 2),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
    }


def slurm_env(rank: int, job_id: str) -> dict[str, str]:
    return {
        "SLURM_JOB_ID": job_id,
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank % 2),
        "SLURM_NTASKS": str(WORLD),
    }


def _port() -> int:
    return random.randint(20_000, 60_000)


async def _check_one_job_of_four(
    c: Cluster, envs: list[dict[str, str]], cudart: Path, launcher: dict[str, str]
) -> dict[str, Any]:
    """Ranks 0-2 first (1 missing), then rank 3: one distributed job of 4 ranks on 2 nodes.
    Ranks 0 and 1 run on node A, 2 and 3 on node-b. Returns the job."""
    a, b = c.machines
    where = [a, a, b, b]
    pids = [c.start_rank(where[r], r, envs[r], cudart) for r in range(3)]
    ((job, body),) = await c.distributed(pids, 3)
    assert (body["worldSize"], body["ranksSeen"], body["missing"]) == (WORLD, 3, 1)
    assert (job["ranksSeen"], job["ranksMissing"]) == (3, 1)
    pids.append(c.start_rank(b, 3, envs[3], cudart))
    ((job, body),) = await c.distributed(pids, 4)
    assert (body["worldSize"], body["ranksSeen"], body["missing"]) == (WORLD, 4, 0)
    hosts = {a: (await c.p.get(f"/api/v1/machines/{a}"))["hostname"], b: "node-b"}
    assert [(r["nodeId"], r["hostname"], r["pid"], r["rank"], r["localRank"], r["device"])
            for r in body["ranks"]] == [
        (where[r], hosts[where[r]], pids[r], r, r % 2, str(r % 2)) for r in range(WORLD)
    ]  # fmt: skip
    assert all(r["status"] == "running" for r in body["ranks"])
    job = await c.p.get(f"/api/v1/jobs/{job['jobId']}")
    assert (job["kind"], job["worldSize"], job["ranksSeen"], job["ranksMissing"]) == (
        "distributed",
        WORLD,
        4,
        0,
    )
    assert sorted(job["nodeIds"]) == sorted(c.machines) and job["nodeId"] == a  # rank 0's
    assert job["launcher"] == launcher
    # the list shows the job once, not its ranks; each machine lists its own two processes
    top = (await c.p.get("/api/v1/jobs"))["jobs"]
    assert [j["jobId"] for j in top] == [job["jobId"]]
    for machine in c.machines:
        procs = (await c.p.get(f"/api/v1/machines/{machine}/jobs"))["jobs"]
        assert sorted(j["pid"] for j in procs) == sorted(
            pid for pid, (m, _) in c.pids.items() if m == machine
        )
        assert {j["distributedJobId"] for j in procs} == {job["jobId"]}
    return job  # type: ignore[no-any-return]


async def test_four_ranks_on_two_managers_are_one_job(
    cluster: Cluster,
    cudart12: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    addr, port = socket.gethostname(), _port()  # a rendezvous every node can reach
    envs = [master_env(r, addr, port) for r in range(WORLD)]
    job = await _check_one_job_of_four(
        cluster, envs, cudart12, {"kind": "master", "id": f"{addr}:{port}"}
    )
    # the CLI prints the same ranks as a table
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": "long enough pw")
    url = str(cluster.p.client.make_url("/")).rstrip("/")
    for argv in (["login", "ops@example.com"], ["jobs", "ranks", job["jobId"]]):
        capsys.readouterr()
        assert await asyncio.to_thread(cli.main, ["--url", url, *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"job {job['jobId']}: world size 4, 4 rank(s) seen, 0 missing"
    assert lines[1].split() == [
        "RANK",
        "LOCAL",
        "HOST",
        "PID",
        "DEVICE",
        "STATUS",
        "MACHINE",
        "JOB",
    ]
    by_pid = {pid: rank for pid, (_, rank) in cluster.pids.items()}
    rows = [line.split() for line in lines[2:]]
    assert [(int(r[0]), int(r[1]), by_pid[int(r[3])]) for r in rows] == [
        (r, r % 2, r) for r in range(WORLD)
    ]
    assert [r[2] for r in rows][2:] == ["node-b", "node-b"]


async def test_slurm_tasks_group_the_same_way(cluster: Cluster, cudart12: Path) -> None:
    job_id = str(_port())
    envs = [slurm_env(r, job_id) for r in range(WORLD)]
    await _check_one_job_of_four(cluster, envs, cudart12, {"kind": "slurm", "id": job_id})


async def test_loopback_rendezvous_on_two_machines_are_two_jobs(
    cluster: Cluster, cudart12: Path
) -> None:
    """Two single-machine jobs of 2 ranks, both at 127.0.0.1 on the same port: not merged."""
    port = _port()
    pids = [
        cluster.start_rank(machine, r, master_env(r, "127.0.0.1", port, world=2), cudart12)
        for machine in cluster.machines
        for r in range(2)
    ]
    found = await cluster.distributed(pids, 4)
    assert len(found) == 2
    by_node = {}
    for job, body in found:
        assert (body["worldSize"], body["ranksSeen"], body["missing"]) == (2, 2, 0)
        (node,) = {r["nodeId"] for r in body["ranks"]}
        assert job["nodeIds"] == [node] and [r["rank"] for r in body["ranks"]] == [0, 1]
        by_node[node] = sorted(r["pid"] for r in body["ranks"])
    assert by_node == {cluster.machines[0]: pids[:2], cluster.machines[1]: pids[2:]}
