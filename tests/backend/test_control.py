"""The backend's control ROUTER: only enrolled manager keys get through; a machine id stays
bound to the key that first presented it; commands are answered by request id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from backend.control import ControlServer, MachineUnavailable, NoReply, curve_context
from manager import keys as manager_keys
from tests.pg_fixtures import free_tcp_endpoint


class Manager:
    """A DEALER speaking the manager's side of the protocol, with the given key pair."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        server_public: bytes,
        cert: Path,
        machine_id: str,
    ) -> None:
        public, secret = zmq.auth.load_certificate(str(cert))
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.routing_id = machine_id.encode()
        self.sock.curve_serverkey, self.sock.curve_publickey = server_public, public
        self.sock.curve_secretkey = secret
        self.sock.linger = 0
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        self.sock.connect(endpoint)

    async def handshake(self) -> int:
        """The first handshake event: succeeded or which failure."""
        while True:
            if await self.monitor.poll(10_000):
                return int((await recv_monitor_message(self.monitor))["event"])
            raise TimeoutError("no handshake event")

    async def send(self, msg: dict[str, Any]) -> None:
        await self.sock.send(json.dumps(msg).encode())

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


@pytest.fixture
async def control(tmp_path: Path) -> Any:
    enrolled = tmp_path / "enrolled"
    enrolled.mkdir()
    good_pub, good = manager_keys.generate(tmp_path / "good")
    _, bad = manager_keys.generate(tmp_path / "bad")
    shutil.copy(good_pub, enrolled / "good.key")
    server_public, server_secret = zmq.curve_keypair()
    ctx, auth = curve_context(enrolled)
    events: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()

    async def on_event(machine_id: str, key: str, msg: dict[str, Any]) -> None:
        await events.put((machine_id, key, msg))

    async def on_late_reply(
        machine_id: str, command: dict[str, Any], reply: dict[str, Any]
    ) -> None:
        await events.put((machine_id, "late", {"command": command, "reply": reply}))

    server = ControlServer(
        ctx,
        free_tcp_endpoint(),
        server_secret,
        server_public,
        on_event,
        on_late_reply,
        late_reply_s=30.0,
    )
    await server.start()
    managers: list[Manager] = []

    def manager(cert: Path, machine_id: str) -> Manager:
        m = Manager(ctx, server.endpoint, server_public, cert, machine_id)
        managers.append(m)
        return m

    yield server, events, manager, good, bad
    for m in managers:
        m.close()
    await server.close()
    auth.stop()
    ctx.term()


async def test_unknown_key_cannot_talk_or_be_commanded(control: Any) -> None:
    server, events, manager, good, bad = control
    intruder = manager(bad, "intruder")
    assert await intruder.handshake() == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    # A DEALER with no connected peer may block on send: try without waiting.
    with contextlib.suppress(zmq.Again):
        await intruder.sock.send(b'{"event": "HELLO", "machine_id": "intruder"}', zmq.NOBLOCK)
    with pytest.raises(MachineUnavailable):
        await server.command("intruder", {"command": "GET_STATUS"}, timeout_s=0.5)
    honest = manager(good, "honest")
    assert await honest.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    await honest.send({"event": "HELLO", "machine_id": "honest"})
    machine_id, key, msg = await asyncio.wait_for(events.get(), 10)
    assert (machine_id, msg["event"]) == ("honest", "HELLO")
    assert key == zmq.auth.load_certificate(str(good))[0].decode()
    assert events.empty()  # nothing ever came from the intruder


async def test_commands_are_answered_by_request_id(control: Any) -> None:
    server, events, manager, good, _ = control
    m = manager(good, "box")
    assert await m.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    await m.send({"event": "HELLO", "machine_id": "box"})
    await asyncio.wait_for(events.get(), 10)

    async def answer() -> None:
        cmd = json.loads(await m.sock.recv())
        await m.send({"request_id": "someone-else", "status": "SUCCESS"})  # ignored
        await m.send(
            {"request_id": cmd["request_id"], "status": "SUCCESS", "monitor_id": cmd["monitor_id"]}
        )

    task = asyncio.create_task(answer())
    reply = await server.command("box", {"command": "STOP_MONITOR", "monitor_id": "m1"})
    await task
    assert reply["status"] == "SUCCESS" and reply["monitor_id"] == "m1"
    with pytest.raises(MachineUnavailable, match="did not answer"):
        await server.command("box", {"command": "GET_STATUS"}, timeout_s=0.3)
    with pytest.raises(MachineUnavailable, match="not connected"):
        await server.command("nobody", {"command": "GET_STATUS"})
    await m.sock.send(b"not json")
    await m.sock.send(b"[1, 2]")
    await m.send({"neither": "reply nor event"})
    await m.send({"event": "HEARTBEAT", "machine_id": "box"})
    machine_id, _, msg = await asyncio.wait_for(events.get(), 10)
    assert (machine_id, msg["event"]) == ("box", "HEARTBEAT")
    assert server.rejected == 3


async def test_a_reply_after_the_wait_goes_to_on_late_reply(control: Any) -> None:
    server, events, manager, good, _ = control
    m = manager(good, "box")
    assert await m.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
    await m.send({"event": "HELLO", "machine_id": "box"})
    await asyncio.wait_for(events.get(), 10)
    mid = "123e4567-e89b-42d3-a456-426614174000"
    with pytest.raises(NoReply, match="did not answer START_MONITOR"):
        await server.command("box", {"command": "START_MONITOR", "monitor_id": mid}, timeout_s=0.2)
    assert server.in_flight("box", overdue_only=True) == {mid: {"START_MONITOR"}}
    assert server.in_flight("elsewhere") == {}
    cmd = json.loads(await m.sock.recv())
    await m.send({"request_id": cmd["request_id"], "status": "SUCCESS", "agent_pid": 42})
    machine_id, kind, late = await asyncio.wait_for(events.get(), 10)
    assert (machine_id, kind) == ("box", "late")
    assert late["command"]["monitor_id"] == mid and late["reply"]["agent_pid"] == 42
    assert server.in_flight("box") == {}
    # answered once: a second copy of the reply is dropped
    await m.send({"request_id": cmd["request_id"], "status": "SUCCESS"})
    await m.send({"event": "HEARTBEAT", "machine_id": "box"})
    assert (await asyncio.wait_for(events.get(), 10))[2]["event"] == "HEARTBEAT"
