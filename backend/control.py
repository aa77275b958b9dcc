"""The backend's end of the control channel: a CURVE ROUTER that managers dial.

Only enrolled managers get through: the ZAP authenticator accepts the public
keys found (as ZeroMQ certificates, NAME.key) in the enrolled-keys folder. A
manager's DEALER routing id is its machine id; the first HELLO binds that id to
the manager's key, and a later HELLO for the same id under another key is
refused. Messages are xpucore.protocol's (the seed's JSON, seeds/003 part 2):
commands go out as its builders make them; replies are matched to them by
request_id; events (HELLO, HEARTBEAT, MONITOR_STATUS, GOODBYE) go to the
on_event callback. A CLOCK_PROBE is answered here, at once, with a CLOCK_ECHO
(xpucore.clock_sync): its t2 is stamped as the frames arrive, its t3 as the echo
leaves, so that only the network and the two sockets lie between the stamps.

A command not answered within its wait raises NoReply, but the manager goes on
with it: its reply, when it comes (within late_reply_s), goes to on_late_reply
with the command it answers, so that what the manager did is applied after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator

from xpucore import clock_sync, protocol
from xpucore.job_wire import WireError

__all__ = ["ControlServer", "MachineUnavailable", "NoReply", "curve_context"]

log = logging.getLogger(__name__)

EventHandler = Callable[[str, str, dict[str, Any]], Awaitable[None]]
# (machine id, the command sent, its reply)
LateReplyHandler = Callable[[str, dict[str, Any], dict[str, Any]], Awaitable[None]]
MAX_MESSAGE = 1 << 20
MAX_OVERDUE = 10_000  # commands whose late reply is still awaited; beyond: the oldest forgotten


def curve_context(enrolled_dir: Path) -> tuple[zmq.asyncio.Context, ThreadAuthenticator]:
    """A context whose CURVE sockets admit only the keys certified in enrolled_dir.

    A thread authenticator: a second AsyncioAuthenticator in one event loop was seen to
    never answer ZAP requests, stalling every handshake.
    """
    ctx = zmq.asyncio.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(enrolled_dir))
    return ctx, auth


class MachineUnavailable(Exception):
    """The machine's manager is not connected, or did not answer in time."""


class NoReply(MachineUnavailable):
    """The command went out but was not answered in time; the manager may still carry it
    out, and its reply then goes to on_late_reply."""


class ControlServer:
    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        secret_key: bytes,
        public_key: bytes,
        on_event: EventHandler,
        on_late_reply: LateReplyHandler | None = None,
        late_reply_s: float = 600.0,
    ) -> None:
        """ctx must have a ZAP authenticator running (see curve_context)."""
        self.endpoint = endpoint
        self._secret, self._public = secret_key, public_key
        self._on_event = on_event
        self._on_late_reply = on_late_reply
        self._late_reply_s = late_reply_s
        self._ctx = ctx
        self._sock: zmq.asyncio.Socket | None = None
        # request id -> (machine id, command, its reply's future)
        self._pending: dict[str, tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]] = {}
        # request id -> (machine id, command, when its reply is no longer awaited)
        self._overdue: dict[str, tuple[str, dict[str, Any], float]] = {}
        self._keys: dict[str, str] = {}  # machine id -> manager public key (Z85)
        self._task: asyncio.Task[None] | None = None
        self.rejected = 0  # messages dropped: malformed, oversized or from the wrong key

    async def start(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = self._secret
        sock.curve_publickey = self._public
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting manager keeps its routing id
        sock.linger = 0
        sock.bind(self.endpoint)
        self._sock = sock
        self._task = asyncio.create_task(self._receive(), name="control-receive")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, _, fut in self._pending.values():
            fut.cancel()
        if self._sock is not None:
            self._sock.close(linger=0)

    async def command(
        self, machine_id: str, message: dict[str, Any], timeout_s: float = 15.0
    ) -> dict[str, Any]:
        """Sends a command to the machine's manager and waits for its reply.

        Raises MachineUnavailable when it could not be sent (the manager is not connected),
        NoReply when it was sent but not answered within timeout_s."""
        assert self._sock is not None
        request_id = message.setdefault("request_id", str(uuid.uuid4()))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = (machine_id, message, fut)
        try:
            try:
                await self._sock.send_multipart([machine_id.encode(), protocol.encode(message)])
            except zmq.ZMQError as e:  # EHOSTUNREACH with ROUTER_MANDATORY: not connected
                raise MachineUnavailable(f"machine '{machine_id}' is not connected") from e
            try:
                return await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                if self._on_late_reply is not None:
                    self._forget_overdue(loop.time())
                    self._overdue[request_id] = (
                        machine_id,
                        message,
                        loop.time() + self._late_reply_s,
                    )
                raise NoReply(
                    f"machine '{machine_id}' did not answer {protocol.command_of(message)} "
                    f"in {timeout_s:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)

    def in_flight(self, machine_id: str, *, overdue_only: bool = False) -> dict[str, set[str]]:
        """monitor id -> the commands sent to the machine for it and not answered yet
        (overdue_only: only those whose wait has run out)."""
        self._forget_overdue(asyncio.get_running_loop().time())
        sent = [(m, c) for m, c, _ in self._overdue.values()]
        if not overdue_only:
            sent += [(m, c) for m, c, _ in self._pending.values()]
        out: dict[str, set[str]] = {}
        for m, cmd in sent:
            if m == machine_id and isinstance(cmd.get("monitor_id"), str):
                out.setdefault(cmd["monitor_id"], set()).add(str(protocol.command_of(cmd)))
        return out

    def _forget_overdue(self, now: float) -> None:
        for rid, (_, _, until) in list(self._overdue.items()):
            if until <= now or len(self._overdue) >= MAX_OVERDUE:
                del self._overdue[rid]

    async def _receive(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            received_ns = time.time_ns()
            try:
                await self._dispatch(frames, received_ns)
            except Exception:
                self.rejected += 1
                log.exception("control message from %r dropped", frames[0].bytes[:80])

    async def _dispatch(self, frames: list[zmq.Frame], received_ns: int) -> None:
        if len(frames) != 2:
            self.rejected += 1
            return
        machine_id = frames[0].bytes.decode("utf-8", "replace")
        key = str(frames[1].get("User-Id") or "")  # the ZAP user id: the key, in Z85
        try:
            msg = protocol.decode(frames[1].bytes)
        except protocol.CommandError:  # not a JSON object
            self.rejected += 1
            return
        bound = self._keys.setdefault(machine_id, key)
        if bound != key:
            self.rejected += 1
            log.warning("machine id %s presented by another key; dropped", machine_id)
            return
        if protocol.is_reply(msg):
            pending = self._pending.get(msg["request_id"])
            if pending is not None and pending[0] == machine_id:
                if not pending[2].done():
                    pending[2].set_result(msg)
                return
            overdue = self._overdue.get(msg["request_id"])
            if overdue is not None and overdue[0] == machine_id:
                del self._overdue[msg["request_id"]]
                assert self._on_late_reply is not None
                await self._on_late_reply(machine_id, overdue[1], msg)
            return
        if protocol.event_of(msg) == protocol.Event.CLOCK_PROBE:
            await self._echo(frames[0].bytes, msg, received_ns)
            return
        if protocol.is_event(msg):
            await self._on_event(machine_id, key, msg)
            return
        self.rejected += 1

    async def _echo(self, routing_id: bytes, msg: dict[str, Any], t2: int) -> None:
        """Answers a CLOCK_PROBE; never waits (an echo that cannot leave now is dropped: a
        late one would only be a sample with a long round trip)."""
        assert self._sock is not None
        try:
            seq, t1 = clock_sync.check_probe(msg)
        except WireError as e:
            self.rejected += 1
            log.warning("CLOCK_PROBE from %r refused: %s", routing_id[:80], e)
            return
        echo = protocol.encode(protocol.clock_echo(seq, t1, t2, time.time_ns()))
        with contextlib.suppress(zmq.ZMQError):
            await self._sock.send_multipart([routing_id, echo], flags=zmq.NOBLOCK)
