"""Machine clocks on the backend, over the real CURVE control channel and a real PostgreSQL,
with a scripted manager: a CLOCK_PROBE answered with its stamps, a heartbeat's clock stored,
shown and aged, a bad one refused by field, a manager that sends none unmeasured."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.app import create_app
from backend.repo import machine_clocks
from backend.typedefs import DB
from tests.backend.accounts import Team, make_team
from tests.backend.scripted_manager import ScriptedManager, enroll
from tests.pg_fixtures import backend_settings
from tests.platform import eventually
from xpucore import protocol

MACHINE = "0123456789abcdef0123456789abcdef"
S = 10**9


class Env:
    def __init__(self, team: Team, manager: ScriptedManager, client: Any) -> None:
        self.team, self.manager, self.client = team, manager, client
        self.seq = 0

    async def machine(self) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/machines/{MACHINE}", headers=self.team.viewer)
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]

    async def heartbeat(self, clock: Any) -> None:
        """A heartbeat with this clock (None: none), applied."""
        self.seq += 1
        msg = protocol.heartbeat(MACHINE, self.seq, [], datetime.now(UTC))
        if clock is not None:
            msg["clock"] = clock
        await self.manager.send(msg)
        await self.applied()

    async def applied(self) -> None:
        """Everything sent before is applied: a probe's echo comes back after it (one
        receive loop, in order)."""
        await self.manager.send(protocol.clock_probe(MACHINE, 10**6 + self.seq, 1))
        await self.manager.clock_echo(10**6 + self.seq)


@pytest.fixture
async def env(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> AsyncIterator[Env]:
    settings = backend_settings(migrated_dsn, tmp_path, reconcile_interval_s=3600.0)
    cert = enroll(settings, tmp_path / "manager")
    client = await aiohttp_client(create_app(settings))
    team = await make_team(client)
    manager = ScriptedManager(settings, cert, MACHINE)
    try:
        await manager.connected()
        await manager.hello()

        async def registered() -> Any:
            r = await client.get(f"/api/v1/machines/{MACHINE}", headers=team.viewer)
            return r.status == 200

        await eventually(registered, "HELLO applied", 10.0)
        yield Env(team, manager, client)
    finally:
        manager.close()


async def test_a_probe_is_echoed_with_the_backends_stamps(env: Env) -> None:
    t1 = time.time_ns()
    await env.manager.send(protocol.clock_probe(MACHINE, 7, t1))
    msg = await env.manager.clock_echo(7)
    t4 = time.time_ns()
    assert msg["event"] == "CLOCK_ECHO" and (msg["seq"], msg["t1"]) == (7, t1)
    assert t1 <= msg["t2"] <= msg["t3"] <= t4  # one host, one clock: causality in order


async def test_a_bad_probe_is_not_answered(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "backend.control"):
        await env.manager.send({**protocol.clock_probe(MACHINE, 1, 1), "t1": -5})
        await env.applied()
    assert "CLOCK_PROBE" in caplog.text and "t1: must be an integer" in caplog.text


async def test_a_heartbeats_clock_is_stored_shown_and_aged(env: Env) -> None:
    assert (await env.machine())["clock"] is None  # not measured yet
    measured = (time.time_ns() - S) // 1000 * 1000  # to the microsecond, as it is stored
    await env.heartbeat({"offset_ns": -5 * S, "error_ns": 120_000, "measured_at_ns": measured})
    clock = (await env.machine())["clock"]
    assert clock["offset_ns"] == -5 * S
    # grown by 30 ppm of its age: a second and a little, so 30 µs and a little
    assert 120_000 + 30_000 <= clock["error_bound_ns"] < 120_000 + 60_000
    assert datetime.fromisoformat(clock["measured_at"]).timestamp() * S == pytest.approx(
        measured, abs=1000
    )
    listed = await env.client.get("/api/v1/machines", headers=env.team.viewer)
    assert [m["clock"]["offset_ns"] for m in (await listed.json())["machines"]] == [-5 * S]
    async with env.client.app[DB].connection() as conn:
        got = await machine_clocks.clocks(conn, [MACHINE, "other"], now_ns=measured + 60 * S)
    assert list(got) == [MACHINE]
    assert (got[MACHINE].offset_ns, got[MACHINE].error_ns) == (-5 * S, 120_000 + 1_800_000)
    # a newer estimate replaces it; a heartbeat without one leaves it
    await env.heartbeat({"offset_ns": 7, "error_ns": 90, "measured_at_ns": measured + 1000})
    await env.heartbeat(None)
    assert (await env.machine())["clock"]["offset_ns"] == 7


async def test_a_bad_clock_is_refused_by_field(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    now = time.time_ns()
    good = {"offset_ns": 3, "error_ns": 50, "measured_at_ns": now}
    await env.heartbeat(good)
    with caplog.at_level(logging.WARNING, "backend.control_events"):
        for bad, field in (
            ({**good, "error_ns": -1}, "clock.error_ns"),
            ({**good, "offset_ns": 10**19}, "clock.offset_ns"),
            ({**good, "measured_at_ns": now + 3600 * S}, "clock.measured_at_ns"),
            ("soon", "clock"),
        ):
            await env.heartbeat(bad)
            assert f"clock refused: {field}:" in caplog.text, caplog.text
    clock = (await env.machine())["clock"]
    assert clock["offset_ns"] == 3  # the good one stands
    assert (await env.machine())["status"] == "ACTIVE"  # the heartbeats counted all the same


async def test_an_older_manager_is_unmeasured_and_a_new_connection_forgets(env: Env) -> None:
    await env.heartbeat(None)  # an older manager: no clock in its heartbeats
    assert (await env.machine())["clock"] is None
    await env.heartbeat({"offset_ns": 3, "error_ns": 50, "measured_at_ns": time.time_ns()})
    assert (await env.machine())["clock"] is not None
    await env.manager.hello()  # a new connection: measured anew
    await env.applied()
    assert (await env.machine())["clock"] is None
