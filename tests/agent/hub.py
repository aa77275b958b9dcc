"""The SYSCALL tracer in hub mode (`xputrace-agent --monitor-type SYSCALL --hub`), driven over
its command pipe as the manager drives it. Every wait is for a line it prints, with a deadline."""

from __future__ import annotations

import json
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.agent.procs import DEADLINE_S, Capture, JsonLineProc, capture_from
from xpucore import abi

Line = dict[str, Any]


class Hub(JsonLineProc):
    """The hub; its stdout lines are kept (answers come in any order) and matched by predicate."""

    def __init__(self, build: Path, *args: str) -> None:
        super().__init__(
            [
                str(build / "xputrace-agent"),
                "--monitor-id",
                "syscall-hub",
                "--monitor-type",
                "SYSCALL",
                "--machine-id",
                "testmachine",
                "--hub",
                *args,
            ]
        )
        self.lines: list[Line] = []
        try:
            self.ready = self.wait(lambda o: o.get("hub") is True)
        except BaseException:
            self.kill()
            raise

    def wait(self, match: Callable[[Line], bool], timeout: float = DEADLINE_S) -> Line:
        """The first line (kept or to come) that match accepts; it is taken off the list."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            for i, obj in enumerate(self.lines):
                if match(obj):
                    return self.lines.pop(i)
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    self.lines.append(obj)
            if any(match(o) for o in self.lines):
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"hub: no matching line in {timeout}s: {self.lines}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise EOFError(f"hub exited ({self.proc.wait()}): {self.stderr_text()}")
                self._buf += chunk

    def add(self, monitor_id: str, out: Path | None, *args: str) -> Line:
        """Adds a monitor writing out (None: args say where it sends); its answer (ready or
        error)."""
        output = ["--output", str(out)] if out is not None else []
        self.send_line(
            "\t".join(
                [
                    "add",
                    "--monitor-id",
                    monitor_id,
                    "--monitor-type",
                    "SYSCALL",
                    "--machine-id",
                    "testmachine",
                    *output,
                    *args,
                ]
            )
        )
        return self.wait(lambda o: o.get("monitor_id") == monitor_id)

    def remove(self, monitor_id: str, out: Path) -> Capture:
        """Ends a monitor; what it wrote, with the stats of its stopped line."""
        self.send_line(f"remove\t{monitor_id}")
        end = self.wait(lambda o: o.get("monitor_id") == monitor_id and "stopped" in o)
        return read_capture(out, end)

    def exclude(self, pid: int) -> None:
        self.send_line(f"exclude\t{pid}")
        assert self.wait(lambda o: "excluded" in o) == {"excluded": pid}


def read_capture(out: Path, end: Line) -> Capture:
    with open(out, "rb") as f:
        batches = list(abi.iter_batches(f))
    return capture_from(batches, end["stats"], end["reason"], end["exit_code"], [])
