"""Per-user quotas (issue #20 section 2) on a real PostgreSQL: monitors running (with a real
manager process and the agent stand-in), trace jobs queued and their fair queue, events
stored; and new monitors refused while the database volume is nearly full."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.repo import machines, monitors
from backend.repo.partitions import DAY_NS
from backend.retention import Retention
from backend.settings import Settings
from backend.storage import describe
from backend.typedefs import DB, TASKS, TRACE_JOBS
from tests.backend.accounts import add_user, first_admin
from tests.backend.test_traces_api import Hold
from tests.backend.trace_data import MACHINE, NOW, calls, store
from tests.manager import fake_agent
from tests.pg_fixtures import backend_settings
from tests.platform import open_platform

MON = f"/api/v1/machines/{MACHINE}/monitors"
START = {"monitor_type": "CUDA", "target": {"pid": 4242}}
GENERATE = "/api/v1/traces:generate"


async def expect(r: Any, status: int, code: str, *needles: str) -> str:
    body = await r.json()
    assert r.status == status, body
    assert body == {"error": {"code": status, "status": code, "message": body["error"]["message"]}}
    message: str = body["error"]["message"]
    for needle in needles:
        assert needle in message, message
    return message


@dataclass
class Two:
    """Two users on one backend (no manager connected): a, the admin, and b, an operator."""

    client: TestClient
    dsn: str
    a: dict[str, str]
    b: dict[str, str]
    monitor: uuid.UUID  # 1500 events (pid 100: 1000, pid 200: 500), owned by nobody


async def two(aiohttp_client: Any, dsn: str, tmp_path: Path, **settings: Any) -> Two:
    client = await aiohttp_client(create_app(backend_settings(dsn, tmp_path, **settings)))
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
        mon = await monitors.create_monitor(conn, MACHINE, "CUDA", {"pid": 100}, {}, "train")
    await store(dsn, mon["id"], calls(1000, 100))
    await store(dsn, mon["id"], calls(500, 200, start_ns=500, step_ns=2000), seq=1)
    a = await first_admin(client, "a@example.com")
    return Two(client, dsn, a, await add_user(client, a, "b@example.com", "operator"), mon["id"])


async def generate(t: Two, auth: dict[str, str], filter: str) -> Any:
    return await t.client.post(GENERATE, json={"filter": filter, "trace_name": "t"}, headers=auth)


async def settled_jobs(t: Two) -> list[tuple[str, str]]:
    """(e-mail of the owner, status) of every job, in the order they started; once no job is
    PROCESSING any more."""
    async with await psycopg.AsyncConnection.connect(t.dsn) as conn:
        for _ in range(1200):
            cur = await conn.execute("SELECT count(*) FROM trace_jobs WHERE status = 'PROCESSING'")
            if (await cur.fetchone() or (1,))[0] == 0:
                break
            await asyncio.sleep(0.05)
        cur = await conn.execute(
            "SELECT u.email, j.status FROM trace_jobs j JOIN users u ON u.id = j.user_id "
            "ORDER BY j.start_time, j.id"
        )
        return [(str(e), str(s)) for e, s in await cur.fetchall()]


# --- trace jobs --------------------------------------------------------------------------------


async def test_one_users_twenty_jobs_do_not_hold_back_anothers_one(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    """A queues 20 full-table jobs, then B one tiny job: B's starts as soon as a worker is
    free (third, with two workers), not after A's queue drained (21st)."""
    t = await two(
        aiohttp_client, migrated_dsn, tmp_path, trace_chunk_rows=100, max_trace_jobs_per_user=50
    )
    hold = Hold("counted")
    t.client.server.app[TRACE_JOBS].checkpoint = hold
    try:
        for _ in range(20):
            assert (await generate(t, t.a, "")).status == 202
        await hold.reach(2)  # both workers busy with A's first two
        assert (await generate(t, t.b, "pid = 200 AND tid = 1")).status == 202
    finally:
        hold.until.set()
    order = await settled_jobs(t)
    assert [s for _, s in order] == ["COMPLETED"] * 21
    assert [e for e, _ in order].index("b@example.com") == 2, order


async def test_trace_jobs_queued_or_running_are_limited_per_user(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    t = await two(
        aiohttp_client, migrated_dsn, tmp_path, max_trace_jobs_per_user=2, trace_workers=1
    )
    hold = Hold("counted")
    t.client.server.app[TRACE_JOBS].checkpoint = hold
    try:
        # five at once: the count and the insert are one step per user, two get in
        answers = await asyncio.gather(*(generate(t, t.a, "pid = 100") for _ in range(5)))
        assert sorted(r.status for r in answers) == [202, 202, 429, 429, 429]
        refused = next(r for r in answers if r.status == 429)
        await expect(
            refused,
            429,
            "RESOURCE_EXHAUSTED",
            "XPUTRACE_MAX_TRACE_JOBS_PER_USER",
            "you have 2 trace jobs queued or running, the quota is 2",
        )
        assert (await generate(t, t.b, "pid = 200")).status == 202  # b has a quota of its own
    finally:
        hold.until.set()
    await settled_jobs(t)
    assert (await generate(t, t.a, "pid = 100")).status == 202  # done jobs count no more
    await settled_jobs(t)


# --- events stored -----------------------------------------------------------------------------


async def test_no_new_monitor_while_the_users_events_are_over_the_quota(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    t = await two(aiohttp_client, migrated_dsn, tmp_path, max_events_per_user=1000)
    r = await t.client.post(MON, json=START, headers=t.b)  # b's, below the quota
    assert r.status == 201, await r.text()
    mine = uuid.UUID((await r.json())["id"])
    await asyncio.gather(*t.client.server.app[TASKS])  # its START has failed (no manager)
    await store(t.dsn, mine, calls(1200, 300))
    r = await t.client.post(MON, json=START, headers=t.b)
    await expect(
        r,
        429,
        "RESOURCE_EXHAUSTED",
        "XPUTRACE_MAX_EVENTS_PER_USER",
        "your monitors stored 1200 events, the quota is 1000",
    )
    r = await t.client.post(MON, json=START, headers=t.a)  # a's monitors stored nothing
    assert r.status == 201, await r.text()
    # retention drops the day of b's events: b may start monitors again
    app = t.client.server.app
    retention = Retention(app[DB], Settings(retention_days=30), clock_ns=lambda: NOW + 40 * DAY_NS)
    assert (await retention.run_once()).dropped == [NOW // DAY_NS]
    r = await t.client.post(MON, json=START, headers=t.b)
    assert r.status == 201, await r.text()
    await asyncio.gather(*app[TASKS])


# --- the database volume -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "needles"),
    [
        (
            {"database_full_percent": 0.001, "database_data_dir": "TMP"},
            (
                "% full",
                "the file system of",
                "XPUTRACE_DATABASE_FULL_PERCENT=0.001",
                "XPUTRACE_RETENTION_DAYS",
            ),
        ),
        (
            {"database_full_percent": 90.0, "database_volume_bytes": 1_000_000},
            ("% full", "XPUTRACE_DATABASE_VOLUME_BYTES", "XPUTRACE_DATABASE_FULL_PERCENT=90"),
        ),
    ],
)
async def test_a_nearly_full_database_volume_refuses_new_monitors(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    settings: dict[str, Any],
    needles: tuple[str, ...],
) -> None:
    """The real file system of a directory (the embedded server's data dir stands there), or
    the real size of the database against a volume of 1 MB."""
    if settings.get("database_data_dir") == "TMP":
        settings["database_data_dir"] = tmp_path
    t = await two(aiohttp_client, migrated_dsn, tmp_path, **settings)
    r = await t.client.post(MON, json=START, headers=t.b)
    await expect(r, 507, "RESOURCE_EXHAUSTED", *needles)
    async with t.client.server.app[DB].connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM monitors WHERE created_by IS NOT NULL")
        assert await cur.fetchone() == (0,)


async def test_room_on_the_volume_lets_monitors_start(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    t = await two(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        database_full_percent=99.9,
        database_volume_bytes=10**15,
    )
    r = await t.client.post(MON, json=START, headers=t.b)
    assert r.status == 201, await r.text()
    await asyncio.gather(*t.client.server.app[TASKS])


def test_an_unmeasured_volume_is_said_at_start() -> None:
    assert "NOT checked" in describe(Settings())
    assert "the file system of /x" in describe(Settings(database_data_dir=Path("/x")))


# --- monitors running --------------------------------------------------------------------------


@pytest.fixture
async def platform(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> AsyncIterator[Any]:
    agent = fake_agent.install(tmp_path / "agent")
    async with open_platform(
        aiohttp_client, migrated_dsn, tmp_path, agent, max_running_monitors_per_user=2
    ) as p:
        yield p


async def test_monitors_running_are_limited_per_user(platform: Any) -> None:
    """ops@ (the platform's admin: admins are held to quotas too) runs two; the third is 429
    until one is stopped; another user starts theirs meanwhile."""
    p = platform
    body = {"monitor_type": "CUDA", "target": {"pid": os.getpid()}}
    first, second = await p.start(body), await p.start(body)
    for mid in (first, second):
        await p.status_becomes(mid, "RUNNING")
    r = await p.client.post(p.monitors_path, headers=p.auth, json=body)
    await expect(
        r,
        429,
        "RESOURCE_EXHAUSTED",
        "XPUTRACE_MAX_RUNNING_MONITORS_PER_USER",
        "you have 2 monitors STARTING or RUNNING, the quota is 2",
    )
    other = await add_user(p.client, p.auth, "other@example.com", "operator")
    r = await p.client.post(p.monitors_path, headers=other, json=body)
    assert r.status == 201, await r.text()
    theirs = (await r.json())["id"]
    await p.status_becomes(theirs, "RUNNING")
    assert (await p.delete(first))[0] == 204
    third = await p.start(body)
    await p.status_becomes(third, "RUNNING")
    for mid in (second, third, theirs):
        assert (await p.client.delete(f"{p.monitors_path}/{mid}", headers=p.auth)).status == 204
