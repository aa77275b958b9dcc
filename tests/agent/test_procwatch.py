"""xputrace-procwatch on the real kernel: its JSON lines for fork, exec and exit."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.bpf

DEADLINE_S = 10.0


class Watch:
    """xputrace-procwatch with the given flags, its lines read as they come."""

    def __init__(self, build_dir: Path, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [str(build_dir / "xputrace-procwatch"), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.buf = b""
        self.lines: list[dict[str, Any]] = []
        self.ready = self.until(lambda e: e["event"] == "ready")

    def until(self, match: Any) -> dict[str, Any]:
        """The first line (from the start) that match accepts; waits for it with a deadline."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + DEADLINE_S
        seen = 0
        while True:
            for ev in self.lines[seen:]:
                if match(ev):
                    return ev
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no such line")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            *full, self.buf = (self.buf + chunk).split(b"\n")
            self.lines.extend(json.loads(line) for line in full)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            stats = self.until(lambda e: e["event"] == "stats")
            assert self.proc.wait(DEADLINE_S) == 0
        finally:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
        return stats


def of(pid: int, kind: str) -> Any:
    return lambda e: e["event"] == kind and e["pid"] == pid


def stat_start_ticks(pid: int) -> int:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rfind(b")") + 2 :].split()[19])


def test_every_line_with_exit_codes_and_signals(build_dir: Path) -> None:
    w = Watch(build_dir, "-d", "0")  # no hold: every fork, exec and exit
    try:
        assert w.ready["clk_tck"] == os.sysconf("SC_CLK_TCK")
        code = subprocess.Popen(["sh", "-c", "exit 3"])
        code.wait()
        killed = subprocess.Popen(["sh", "-c", "kill -9 $$"])
        killed.wait()
        fork = w.until(of(code.pid, "fork"))
        exec_ = w.until(of(code.pid, "exec"))
        end = w.until(of(code.pid, "exit"))
        assert fork["ppid"] == exec_["ppid"] == os.getpid()
        assert fork["start_ticks"] == exec_["start_ticks"] == end["start_ticks"]
        assert fork["parent_start_ticks"] == stat_start_ticks(os.getpid())
        assert exec_["comm"] == "sh" and fork["time_ns"] <= exec_["time_ns"] <= end["time_ns"]
        assert (end["exit_code"], end["signal"], end["core"]) == (3, None, False)
        k = w.until(of(killed.pid, "exit"))
        assert (k["exit_code"], k["signal"]) == (None, signal.SIGKILL)
    finally:
        stats = w.stop()
    assert stats["dropped"] == 0 and stats["printed"] == stats["sent"] and stats["brief"] == 0


def test_start_ticks_match_proc_and_threads_are_not_processes(build_dir: Path) -> None:
    w = Watch(build_dir, "-d", "0")
    code = (
        "import sys, threading; t = threading.Thread(target=sys.stdin.readline); "
        "t.start(); print(flush=True); t.join()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"\n"  # thread started
        assert w.until(of(child.pid, "exec"))["start_ticks"] == stat_start_ticks(child.pid)
        assert child.stdin is not None
        child.stdin.write(b"\n")
        child.stdin.close()
        assert child.wait(DEADLINE_S) == 0
        w.until(of(child.pid, "exit"))
    finally:
        w.stop()
        child.stdout.close()
    # One fork (the process), not one more for its thread; one exit, from its last thread.
    assert [e["event"] for e in w.lines if e.get("pid") == child.pid] == ["fork", "exec", "exit"]


def test_brief_processes_are_held_and_dropped(build_dir: Path) -> None:
    w = Watch(build_dir, "-d", "200")
    brief = subprocess.Popen(["/bin/true"])
    brief.wait()
    lasting = subprocess.Popen(["sh", "-c", "read x"], stdin=subprocess.PIPE)
    try:
        exec_ = w.until(of(lasting.pid, "exec"))
        assert exec_["time_ns"] - exec_["start_ns"] < 200_000_000
    finally:
        assert lasting.stdin is not None
        lasting.stdin.close()
        lasting.wait()
    w.until(of(lasting.pid, "exit"))
    stats = w.stop()
    assert not [e for e in w.lines if e.get("pid") == brief.pid]
    assert stats["brief"] >= 1 and stats["dropped"] == 0
