"""The manager's side of the clock measurement over real ZeroMQ with CURVE: it probes after
HELLO and with each heartbeat, believes only the echo of the probe it awaits, and reports
its estimate in its heartbeats; the test backend plays a clock 1000 s ahead."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manager.identity import Identity
from manager.settings import Settings
from tests.manager.backend_double import Backend
from tests.manager.conftest import MACHINE_ID, run, running
from xpucore import protocol

IDENT = MACHINE_ID.encode()
S = 10**9


async def echo(backend: Backend, probe: dict[str, Any], ahead_ns: int, **over: Any) -> int:
    """Answers probe as a backend whose clock is ahead_ns ahead; its t3."""
    t2 = time.time_ns() + ahead_ns
    msg = {**protocol.clock_echo(probe["seq"], probe["t1"], t2, t2 + 1000), **over}
    await backend.send_raw(IDENT, protocol.encode(msg))
    return int(msg["t3"])


async def beat_with_clock(backend: Backend) -> dict[str, Any]:
    while True:
        beat = await backend.event("HEARTBEAT")
        if "clock" in beat:
            return beat


def test_the_echo_of_the_awaited_probe_is_measured_and_reported(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            s = settings(backend=backend.endpoint, heartbeat_interval_s=1.0)  # no race
            async with running(s, identity) as control:
                await backend.event("HELLO")
                first = await backend.event("CLOCK_PROBE")  # at once, before any heartbeat
                assert first["machine_id"] == MACHINE_ID
                assert abs(first["t1"] - time.time_ns()) < 10 * S
                with caplog.at_level(logging.WARNING, "manager.control"):
                    await echo(backend, first, 0, t2="late")  # malformed: refused by field
                    await echo(backend, first, 0, t1=first["t1"] + 1)  # no probe sent this
                    second = await backend.event("CLOCK_PROBE")  # sent after a heartbeat
                await echo(backend, first, 0)  # an echo of a probe no longer awaited
                t3 = await echo(backend, second, 1000 * S)
                beat = await beat_with_clock(backend)
                clock = beat["clock"]
                assert set(clock) == {"offset_ns", "error_ns", "measured_at_ns"}
                assert clock["measured_at_ns"] == t3
                assert 0 < clock["error_ns"] < S
                assert abs(clock["offset_ns"] - 1000 * S) <= clock["error_ns"]
                assert len(control.clock) == 1  # neither the stale nor the forged one
        assert "CLOCK_ECHO refused: t2: must be an integer" in caplog.text

    run(go())
