"""Shared bits of the benchmarks: JSON-line child processes and a report table."""

from __future__ import annotations

import json
import statistics
import subprocess
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
