"""Drives tests/workloads/launcher.py: a parent process that starts workloads on request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.agent.procs import JsonLineProc

__all__ = ["LAUNCHER", "Launcher"]

LAUNCHER = Path(__file__).resolve().parent / "workloads" / "launcher.py"


class Launcher(JsonLineProc):
    def __init__(self) -> None:
        super().__init__([sys.executable, str(LAUNCHER)])
        self.pid: int = self.read_json("launcher")["launcher"]

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, Any]:
        """Starts argv as the launcher's child: (its pid, its first stdout line)."""
        self.send_json({"spawn": argv, "env": env})
        got = self.read_json("spawned")
        return got["spawned"], got["first"]

    def send(self, pid: int, line: str = "go") -> Any:
        """A line to child pid's stdin; its next stdout line."""
        self.send_json({"send": pid, "line": line})
        return self.read_json("sent")["reply"]

    def send_json(self, obj: dict[str, Any]) -> None:
        self.send_line(json.dumps(obj))
