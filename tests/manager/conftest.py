"""Manager test fixtures: key pairs, a fake agent, settings pointing into tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq

from manager import keys
from manager.control import ControlClient
from manager.identity import Identity
from manager.settings import Settings
from manager.supervisor import Monitor, Supervisor
from tests.manager import fake_agent

T = TypeVar("T")
MACHINE_ID = "ab" * 32
RAW_ID = "0123456789abcdef0123456789abcdef"  # the machine-id file of manager_cmd


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Runs one test scenario in a fresh event loop, with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def manager_keypair(tmp_path: Path) -> tuple[bytes, bytes]:
    """The manager's pair, written by keys.generate; its public cert is in tmp/enrolled."""
    _, secret = keys.generate(tmp_path / "enrolled", "manager")
    return keys.load_secret(secret)


@pytest.fixture
def enrolled(tmp_path: Path, manager_keypair: tuple[bytes, bytes]) -> Path:
    return tmp_path / "enrolled"


@pytest.fixture
def server_keypair() -> tuple[bytes, bytes]:
    return zmq.curve_keypair()


@pytest.fixture
def identity() -> Identity:
    return Identity(
        machine_id=MACHINE_ID,
        hostname="testhost",
        os_info="TestOS 1 (kernel 6.1)",
        accelerators=(),
        version="0.1.0",
    )


@pytest.fixture
def agent(tmp_path: Path) -> Callable[..., Path]:
    """agent(**mode) → path of a fake agent with that behaviour (see fake_agent)."""
    count = iter(range(1000))

    def make(**mode: Any) -> Path:
        return fake_agent.install(tmp_path / f"agent{next(count)}", **mode)

    return make


@pytest.fixture
def settings(
    tmp_path: Path, manager_keypair: tuple[bytes, bytes], server_keypair: tuple[bytes, bytes]
) -> Callable[..., Settings]:
    """settings(**overrides): fast timeouts, private dirs in tmp_path."""

    def make(**over: Any) -> Settings:
        values: dict[str, Any] = {
            "backend": "tcp://127.0.0.1:1",
            "server_public_key": server_keypair[0],
            "public_key": manager_keypair[0],
            "secret_key": manager_keypair[1],
            "runtime_dir": tmp_path / "run",
            "capture_dir": tmp_path / "captures",
            "heartbeat_interval_s": 0.2,
            "agent_ready_timeout_s": 5.0,
            "agent_stop_timeout_s": 3.0,
            "agent_kill_timeout_s": 3.0,
            "reply_timeout_s": 3.0,
            "auth_retry_s": 0.2,
        }
        values.update(over)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def running(
    settings: Settings, identity: Identity, events: list[Monitor] | None = None
) -> AsyncIterator[ControlClient]:
    """A supervisor and a control client dialing settings.backend."""
    control: ControlClient | None = None

    def on_status(m: Monitor) -> None:
        if events is not None:
            events.append(m)
        if control is not None:
            control.notify(m)

    async with Supervisor(settings, identity.machine_id, on_status=on_status) as sup:
        control = ControlClient(settings, identity, sup)
        async with control:
            yield control


@pytest.fixture
def manager_cmd(
    tmp_path: Path, enrolled: Path, server_keypair: tuple[bytes, bytes], agent: Callable[..., Path]
) -> Callable[..., list[str]]:
    server_key = tmp_path / "backend.key"
    server_key.write_bytes(server_keypair[0] + b"\n")
    (tmp_path / "machine-id").write_text(RAW_ID + "\n")
    fake = agent(record=str(tmp_path / "agent.json"))

    def make(endpoint: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "manager",
            "--backend",
            endpoint,
            "--server-key",
            str(server_key),
            "--key",
            str(enrolled / "manager.key_secret"),
            "--agent-path",
            str(fake),
            "--runtime-dir",
            str(tmp_path / "run"),
            "--machine-id-file",
            str(tmp_path / "machine-id"),
            "--heartbeat-interval",
            "0.2",
            "--agent-stop-timeout",
            "3",
            *extra,
        ]

    return make
