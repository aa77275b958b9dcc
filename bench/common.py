"""Shared bits of the benchmarks: JSON-line child processes and a report table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


class Child:
    """A benchmark helper process speaking JSON lines on stdout."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def read(self, key: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if key in obj:
                return obj
        err = self.proc.stderr.read() if self.proc.stderr else ""
        raise RuntimeError(f"{self.proc.args[0]} ended before '{key}': {err.strip()}")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


Bench = Callable[[argparse.Namespace, Path, contextlib.AsyncExitStack], Awaitable[dict[str, Any]]]


async def run_in_temp_dir(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """bench(args, tmp, stack) in a fresh temp dir; SIGTERM cancels it and still cleans up."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xputrace-bench-")))
        # The embedded server runs as an unprivileged user when we are root: it must reach it.
        os.chmod(tmp, 0o755)
        return await bench(args, tmp, stack)
