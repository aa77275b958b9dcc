"""Stopping asyncio tasks for certain.

On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives as the awaited
operation completes (CPython gh-86296, fixed in 3.12): the task then carries on, and a loop
that sends a heartbeat or a HELLO runs forever while its owner waits for it to end. This
was seen as a manager that logged "shutting down" and never exited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_all"]


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], retry_s: float = 0.5) -> None:
    """Cancels tasks and waits until every one has ended, cancelling again any that is still
    running after retry_s (one that swallowed the cancellation)."""
    left = {t for t in tasks if not t.done()}
    while left:
        for t in left:
            t.cancel()
        done, left = await asyncio.wait(left, timeout=retry_s)
        for t in done:  # retrieve outcomes so none is reported as never retrieved
            if not t.cancelled():
                t.exception()
