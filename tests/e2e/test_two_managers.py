"""Two managers on one host, as two machines: each its own identity (key, machine id,
hostname), each reporting only the jobs under its own launcher (--jobs-root-pid)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.typedefs import CONTROL
from manager.jobs.procfs import ProcessHandle
from tests.launchers import Launcher
from tests.platform import Platform, eventually, open_platform
from xpucore import protocol

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="procwatch's BPF needs root")

#: Maps libcudart (a CUDA job), says so, and holds until its stdin closes.
CUDA_HOLD = (
    "import ctypes, sys; ctypes.CDLL(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"
)


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
async def platform(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    build_dir: Path,
    launchers: tuple[Launcher, Launcher],
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        build_dir / "xputrace-agent",
        manager_args=("--jobs-root-pid", str(launchers[0].pid)),
        extra_managers=("node-b",),
    ) as p:
        yield p


async def test_each_manager_reports_only_its_launchers_jobs(
    platform: Platform, launchers: tuple[Launcher, Launcher], cudart12: Path
) -> None:
    p = platform
    b = await p.add_manager("node-b", ("--jobs-root-pid", str(launchers[1].pid)))
    machines = {m["id"]: m for m in (await p.get("/api/v1/machines"))["machines"]}
    assert set(machines) == {p.machine_id, b.machine_id}
    assert machines[b.machine_id]["hostname"] == "node-b"
    assert machines[p.machine_id]["hostname"] != "node-b"

    pids = [la.spawn([sys.executable, "-c", CUDA_HOLD, str(cudart12)])[0] for la in launchers]

    async def both() -> Any:
        jobs = (await p.get("/api/v1/jobs", filter=f"pid = {pids[0]} OR pid = {pids[1]}"))["jobs"]
        return jobs if len(jobs) >= 2 else None

    jobs = await eventually(both, "both jobs listed")
    # one row each, from the manager whose launcher started it: neither reports the other's
    assert sorted((j["pid"], j["nodeId"]) for j in jobs) == sorted(
        [(pids[0], p.machine_id), (pids[1], b.machine_id)]
    )
    for machine, pid, other in ((p.machine_id, pids[0], pids[1]), (b.machine_id, pids[1], pids[0])):
        listed = (await p.get(f"/api/v1/machines/{machine}/jobs"))["jobs"]
        assert [j["pid"] for j in listed] == [pid]
        # and the manager itself does not know the other's job: it refuses to stop it
        with ProcessHandle(other) as h:
            ticks = h.stat.start_ticks
        reply = await p.client.app[CONTROL].command(
            machine, protocol.stop_job(other, ticks, 1.0, None)
        )
        assert (reply["status"], reply["error_code"]) == ("FAILURE", "TARGET_NOT_FOUND"), reply
