"""Serving the application until SIGINT or SIGTERM, then shutting it down in full.

aiohttp's ``run_app`` raises GracefulExit inside the loop for each of these signals. A second
one during the teardown (Ctrl-C in a terminal reaches the whole process group, and a script
supervising the backend sends its own SIGTERM) raises again, and ``run_app`` then cancels
every task: the cleanup contexts stop where they are, with ``CleanupError('Multiple errors
on cleanup stage', [CancelledError(), ...])``, and what they were writing out (the ingest's
last batches, the aggregates' last intervals) is lost. Here the first signal starts the
shutdown; later ones are logged and change nothing: every cleanup context runs to its end
(each bounds its own waits), and ``serve`` returns normally.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from types import FrameType

from aiohttp import web

__all__ = ["SIGNALS", "serve"]

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop:
    """The first SIGINT or SIGTERM, handed to the event loop: a signal handler only
    schedules; the loop logs and sets the event."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.received: list[str] = []  # before the loop ran

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.loop is None or self.loop.is_closed():
            self.received.append(name)
        else:
            self.loop.call_soon_threadsafe(self.note, name)

    def note(self, name: str) -> None:
        assert self.event is not None
        if self.event.is_set():
            log.warning("%s: already shutting down; finishing what is pending first", name)
            return
        log.info("%s: shutting down", name)
        self.event.set()

    async def attach(self) -> asyncio.Event:
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        for name in self.received:
            self.note(name)
        return self.event


def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    keepalive_timeout: float = 75.0,
    shutdown_timeout: float = 60.0,
) -> None:
    """Runs app on host:port until SIGINT or SIGTERM, then runs its whole teardown and
    returns; raises what its startup raised (after tearing down what had started).
    SIGINT and SIGTERM are ignored once it returns: the caller is finishing."""
    stop = _Stop()
    for sig in SIGNALS:
        signal.signal(sig, stop.on_signal)
    try:
        asyncio.run(_serve(app, host, port, ssl_context, stop, keepalive_timeout, shutdown_timeout))
    finally:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


async def _serve(
    app: web.Application,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    stop: _Stop,
    keepalive_timeout: float,
    shutdown_timeout: float,
) -> None:
    stopping = await stop.attach()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    try:
        await runner.setup()  # the cleanup contexts' startup: a signal meanwhile waits for it
        if not stopping.is_set():
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
            log.info(
                "Running on %s://%s:%d (Ctrl-C or SIGTERM to stop)",
                "https" if ssl_context is not None else "http",
                host,
                port,
            )
            await stopping.wait()
    finally:
        await runner.cleanup()
    log.info("stopped")
