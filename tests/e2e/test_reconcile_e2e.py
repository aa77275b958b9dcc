"""One truth about a monitor's status, end to end as root: the real manager process and the
real agent on a CUDA workload (tests/monitor_scenarios.py): a START or STOP answered after
the backend's wait, kill -9 of the manager mid-run, an agent no monitor wants, DELETE in
every status, and a STOP that fails (the agent in a frozen cgroup)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import monitor_scenarios as scenario
from tests.agent.procs import JsonLineProc
from tests.backend.test_monitor_lifecycle import FAST, _no_pid
from tests.platform import Platform, open_platform

pytestmark = pytest.mark.bpf

FREEZER = Path("/sys/fs/cgroup/freezer")


@pytest.fixture
def target(build_dir: Path) -> Iterator[dict[str, Any]]:
    """A CUDA workload, waiting for "go" (the real agent attaches to its libcudart)."""
    work = JsonLineProc(
        [str(build_dir / "tests/workloads/cuda_calls"), "--threads", "1", "--iters", "1"]
    )
    try:
        yield {"pid": work.read_json("ready")["pid"]}
    finally:
        work.kill()


async def _platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path, **backend: Any
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        build_dir / "xputrace-agent",
        manager_args=("--agent-stop-timeout", "3"),
        **{**FAST, **backend},
    ) as p:
        yield p


@pytest.fixture
async def platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path
) -> AsyncIterator[Platform]:
    async for p in _platform(aiohttp_client, migrated_dsn, tmp_path, build_dir):
        yield p


async def test_start_answered_after_the_wait_is_applied(
    platform: Platform, target: dict[str, Any]
) -> None:
    await scenario.start_answered_late(platform, target)


async def test_stop_answered_after_the_wait_is_applied(
    platform: Platform, target: dict[str, Any]
) -> None:
    await scenario.stop_answered_late(platform, target)


async def test_manager_kill_9_machine_unknown_then_monitor_error(
    platform: Platform, target: dict[str, Any]
) -> None:
    await scenario.manager_killed_and_back(platform, target)


async def test_agent_no_monitor_wants_is_stopped(
    platform: Platform, target: dict[str, Any]
) -> None:
    await scenario.unwanted_agent_is_stopped(platform, target)


async def test_delete_answers_in_every_status(platform: Platform, target: dict[str, Any]) -> None:
    await scenario.delete_in_every_state(platform, target, _no_pid())


async def test_failed_stop_answers_an_error_body(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path, target: dict[str, Any]
) -> None:
    if not (FREEZER / "freezer.state").exists() and not FREEZER.is_dir():
        pytest.fail("this test needs the cgroup v1 freezer at /sys/fs/cgroup/freezer")
    # the manager gives up after SIGTERM (3 s) and SIGKILL (5 s): the backend waits longer
    async for p in _platform(aiohttp_client, migrated_dsn, tmp_path, build_dir, stop_wait_s=20.0):
        await scenario.stop_failed(p, target, FREEZER / f"xputrace-{uuid.uuid4().hex[:8]}")
