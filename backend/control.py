"""The backend's end of the control channel: a CURVE ROUTER that managers dial.

Only enrolled managers get through: the ZAP authenticator accepts the public
keys found (as ZeroMQ certificates, NAME.key) in the enrolled-keys folder. A
manager's DEALER routing id is its machine id; the first HELLO binds that id to
the manager's key, and a later HELLO for the same id under another key is
refused. Commands are the seed's JSON (seeds/003 part 2); replies are matched
to them by request_id; events (HELLO, HEARTBEAT, MONITOR_STATUS, GOODBYE) go to
the on_event callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["ControlServer", "MachineUnavailable", "curve_context"]

log = logging.getLogger(__name__)

EventHandler = Callable[[str, str, dict[str, Any]], Awaitable[None]]
MAX_MESSAGE = 1 << 20


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


class ControlServer:
    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, secret_key: bytes,
                 public_key: bytes, on_event: EventHandler) -> None:
        """ctx must have a ZAP authenticator running (see curve_context)."""
        self.endpoint = endpoint
        self._secret, self._public = secret_key, public_key
        self._on_event = on_event
        self._ctx = ctx
        self._sock: zmq.asyncio.Socket | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
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
        for fut in self._pending.values():
            fut.cancel()
        if self._sock is not None:
            self._sock.close(linger=0)

    async def command(self, machine_id: str, message: dict[str, Any],
                      timeout_s: float = 15.0) -> dict[str, Any]:
        """Sends a command to the machine's manager and waits for its reply."""
        assert self._sock is not None
        request_id = message.setdefault("request_id", str(uuid.uuid4()))
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        try:
            try:
                await self._sock.send_multipart([machine_id.encode(),
                                                 json.dumps(message).encode()])
            except zmq.ZMQError as e:  # EHOSTUNREACH with ROUTER_MANDATORY: not connected
                raise MachineUnavailable(f"machine '{machine_id}' is not connected") from e
            try:
                return await asyncio.wait_for(fut, timeout_s)
            except TimeoutError:
                raise MachineUnavailable(
                    f"machine '{machine_id}' did not answer {message.get('command')} "
                    f"in {timeout_s:g} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def _receive(self) -> None:
        assert self._sock is not None
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            try:
                await self._dispatch(frames)
            except Exception:
                self.rejected += 1
                log.exception("control message from %r dropped", frames[0].bytes[:80])

    async def _dispatch(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            self.rejected += 1
            return
        machine_id = frames[0].bytes.decode("utf-8", "replace")
        key = str(frames[1].get("User-Id") or "")  # the ZAP user id: the key, in Z85
        try:
            msg = json.loads(frames[1].bytes)
        except ValueError:
            self.rejected += 1
            return
        if not isinstance(msg, dict):
            self.rejected += 1
            return
        bound = self._keys.setdefault(machine_id, key)
        if bound != key:
            self.rejected += 1
            log.warning("machine id %s presented by another key; dropped", machine_id)
            return
        if isinstance(msg.get("request_id"), str) and "event" not in msg:
            fut = self._pending.get(msg["request_id"])
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        if isinstance(msg.get("event"), str):
            await self._on_event(machine_id, key, msg)
            return
        self.rejected += 1
