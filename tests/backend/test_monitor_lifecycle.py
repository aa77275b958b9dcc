"""The monitor lifecycle against a real manager process running the agent stand-in
(tests/manager/fake_agent.py), on a real PostgreSQL: late START and STOP replies applied,
a manager killed with SIGKILL and started again, an agent no monitor wants stopped, DELETE
in every status. No BPF needed; tests/e2e/test_reconcile_e2e.py plays the same with the
real agent."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests import monitor_scenarios as scenario
from tests.manager import fake_agent
from tests.platform import Platform, open_platform

FAST = {
    "start_wait_s": 1.0,
    "stop_wait_s": 1.0,
    "status_wait_s": 5.0,
    "heartbeat_timeout_s": 1.5,
    "reconcile_interval_s": 2.0,
}
OpenPlatform = Callable[..., Any]


@pytest.fixture
def opened(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Callable[..., Any]:
    """opened(**backend settings) → an async context of the platform with the stand-in."""
    agent = fake_agent.install(tmp_path / "agent")

    def make(manager_args: tuple[str, ...] = (), **backend: Any) -> Any:
        return open_platform(
            aiohttp_client,
            migrated_dsn,
            tmp_path,
            agent,
            manager_args=manager_args,
            **{**FAST, **backend},
        )

    return make


@pytest.fixture
async def platform(opened: OpenPlatform) -> AsyncIterator[Platform]:
    async with opened(("--agent-stop-timeout", "3")) as p:
        yield p


ME = {"pid": os.getpid()}


async def test_start_answered_after_the_wait_is_applied(platform: Platform) -> None:
    await scenario.start_answered_late(platform, ME)


async def test_stop_answered_after_the_wait_is_applied(platform: Platform) -> None:
    await scenario.stop_answered_late(platform, ME)


async def test_manager_killed_machine_unknown_then_monitor_error(platform: Platform) -> None:
    await scenario.manager_killed_and_back(platform, ME)


async def test_agent_no_monitor_wants_is_stopped(platform: Platform) -> None:
    await scenario.unwanted_agent_is_stopped(platform, ME)


async def test_delete_answers_in_every_status(platform: Platform) -> None:
    await scenario.delete_in_every_state(platform, ME, _no_pid())


def _no_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid
