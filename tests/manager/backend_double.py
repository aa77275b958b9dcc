"""A test backend: a CURVE ROUTER behind a ZAP allow-list of enrolled manager keys.

It plays the backend's side of the control channel for the manager tests: it receives
HELLO/HEARTBEAT/MONITOR_STATUS/GOODBYE events, sends commands and waits for their replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.thread import ThreadAuthenticator

TIMEOUT_S = 10.0


class Backend:
    def __init__(self, keys_dir: Path, secret: bytes, endpoint: str = "tcp://127.0.0.1:*"):
        self.keys_dir = keys_dir  # *.key public certificates of enrolled managers
        self.secret = secret
        self.bind_to = endpoint
        self.endpoint = ""
        self.ctx = zmq.asyncio.Context()
        # ThreadAuthenticator, not AsyncioAuthenticator: a second asyncio one in the same
        # loop, started right after the first context was terminated (a backend restarted in
        # one test), never saw its ZAP requests and every handshake stalled.
        self.auth = ThreadAuthenticator(self.ctx)
        self.sock: zmq.asyncio.Socket | None = None
        self.events: dict[str, asyncio.Queue[tuple[bytes, dict[str, Any]]]] = {}
        self.replies: dict[str, asyncio.Future[tuple[bytes, dict[str, Any]]]] = {}
        self.received: list[tuple[bytes, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Backend:
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(self.keys_dir))
        sock = self.ctx.socket(zmq.ROUTER)
        sock.curve_server = True
        sock.curve_secretkey = self.secret
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.bind_to)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.sock = sock
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        self.auth.stop()
        self.ctx.term()

    async def _loop(self) -> None:
        assert self.sock is not None
        while True:
            frames = await self.sock.recv_multipart()
            ident, payload = frames[0], frames[-1]  # [ident, (b"",) json]
            msg = json.loads(payload)
            self.received.append((ident, msg))
            if "event" in msg:
                self.queue(msg["event"]).put_nowait((ident, msg))
            else:
                fut = self.replies.get(msg.get("request_id"))
                if fut is not None and not fut.done():
                    fut.set_result((ident, msg))
                else:
                    self.queue("REPLY").put_nowait((ident, msg))

    def queue(self, kind: str) -> asyncio.Queue[tuple[bytes, dict[str, Any]]]:
        return self.events.setdefault(kind, asyncio.Queue())

    async def event(self, kind: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        _, msg = await asyncio.wait_for(self.queue(kind).get(), timeout)
        return msg

    async def send_raw(self, ident: bytes, *frames: bytes) -> None:
        assert self.sock is not None
        await self.sock.send_multipart([ident, *frames])

    async def request(
        self, ident: bytes, cmd: dict[str, Any], timeout: float = TIMEOUT_S
    ) -> dict[str, Any]:
        """Sends cmd (request_id added if absent) and returns the reply with its request id."""
        cmd = dict(cmd)
        cmd.setdefault("request_id", f"req-{next(self._ids)}")
        fut = asyncio.get_running_loop().create_future()
        self.replies[cmd["request_id"]] = fut
        await self.send_raw(ident, json.dumps(cmd).encode())
        try:
            _, reply = await asyncio.wait_for(fut, timeout)
        finally:
            self.replies.pop(cmd["request_id"], None)
        return reply

    async def raw_request(
        self, ident: bytes, payload: bytes, timeout: float = TIMEOUT_S
    ) -> dict[str, Any]:
        """Sends frames nobody can match by request id; the next unmatched reply."""
        await self.send_raw(ident, payload)
        _, reply = await asyncio.wait_for(self.queue("REPLY").get(), timeout)
        return reply
