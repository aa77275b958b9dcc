"""A real manager process measures its machine's clock against the backend's (xpucore.
clock_sync) and the machine's JSON shows it: on one host the true offset is 0 and must lie
within the bound; with the manager's clock skewed 5 s ahead (its test aid) the backend must
measure -5 s within the bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.manager import fake_agent
from tests.platform import Platform, eventually, open_platform

S = 10**9
SMALL_NS = 50_000_000  # a bound on loopback, on a loaded 2-core machine: well under 50 ms


@asynccontextmanager
async def manager_with(
    aiohttp_client: Any, dsn: str, tmp_path: Path, *flags: str
) -> AsyncIterator[Platform]:
    agent = fake_agent.install(tmp_path / "agent")  # no monitor is started: any agent does
    async with open_platform(
        aiohttp_client, dsn, tmp_path, agent, manager_args=("--no-jobs", *flags)
    ) as p:
        yield p


async def measured(p: Platform) -> dict[str, Any]:
    async def clock() -> Any:
        return (await p.machine())["clock"]

    return await eventually(clock, "the machine's clock measured", 30.0)  # type: ignore[no-any-return]


async def test_one_hosts_clock_is_measured_within_its_bound(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    async with manager_with(aiohttp_client, migrated_dsn, tmp_path) as p:
        clock = await measured(p)
        assert 0 < clock["error_bound_ns"] < SMALL_NS, clock
        assert abs(clock["offset_ns"]) <= clock["error_bound_ns"], clock  # true offset: 0
        listed = (await p.get("/api/v1/machines"))["machines"]
        assert listed[0]["clock"]["offset_ns"] == clock["offset_ns"]


async def test_a_skewed_clock_is_measured(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    skew = 5 * S
    async with manager_with(
        aiohttp_client, migrated_dsn, tmp_path, "--test-clock-skew-ns", str(skew)
    ) as p:
        clock = await measured(p)
        assert 0 < clock["error_bound_ns"] < SMALL_NS, clock
        # the manager's clock is 5 s ahead: 5 s must be taken off its stamps
        assert abs(clock["offset_ns"] - (-skew)) <= clock["error_bound_ns"], clock
