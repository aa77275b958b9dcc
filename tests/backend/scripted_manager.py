"""A scripted manager for backend tests: a CURVE DEALER with an enrolled key that says what
the test tells it to (HELLO, jobs' events) and answers the commands it receives as told."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from backend.app import server_keys
from backend.settings import Settings
from manager import keys as manager_keys
from xpucore import protocol

__all__ = ["ScriptedManager", "enroll"]


def enroll(settings: Settings, folder: Path) -> Path:
    """A manager key pair, enrolled with the backend; its secret certificate."""
    pub, secret = manager_keys.generate(folder)
    settings.enrolled_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(pub, settings.enrolled_dir / f"{folder.name}.key")
    return Path(secret)


class ScriptedManager:
    def __init__(self, settings: Settings, cert: Path, machine_id: str) -> None:
        server_public, _ = server_keys(settings)
        public, secret = zmq.auth.load_certificate(str(cert))
        self.machine_id = machine_id
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.routing_id = machine_id.encode()
        self.sock.curve_serverkey, self.sock.curve_publickey = server_public, public
        self.sock.curve_secretkey = secret
        self.sock.linger = 0
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.sock.connect(settings.control_endpoint)

    async def connected(self) -> None:
        while True:
            if not await self.monitor.poll(10_000):
                raise TimeoutError("no handshake")
            if (await recv_monitor_message(self.monitor))["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return

    async def send(self, msg: dict[str, Any]) -> None:
        await self.sock.send(protocol.encode(msg))

    async def hello(self) -> None:
        await self.send(
            protocol.hello(self.machine_id, "gpu1", "Linux", [], "test", {}, [], datetime.now(UTC))
        )

    async def command(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next command the backend sends but GET_STATUS (reconciliation), which is
        answered: no monitors here."""
        while True:
            frame = await asyncio.wait_for(self.sock.recv(), timeout)
            msg: dict[str, Any] = json.loads(frame)
            if msg.get("command") != "GET_STATUS":
                return msg
            await self._no_monitors(msg)

    async def clock_echo(self, seq: int, timeout: float = 10.0) -> dict[str, Any]:
        """The CLOCK_ECHO answering probe seq (GET_STATUS meanwhile answered, others
        dropped)."""
        while True:
            msg = await self.command(timeout)
            if msg.get("event") == protocol.CLOCK_ECHO and msg.get("seq") == seq:
                return msg

    async def _no_monitors(self, msg: dict[str, Any]) -> None:
        await self.send(
            {
                "request_id": msg["request_id"],
                "status": "SUCCESS",
                "agent_manager_status": "RUNNING",
                "machine_id": self.machine_id,
                "active_monitors": [],
                "version": "test",
            }
        )

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
        self.ctx.term()
