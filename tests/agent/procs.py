"""Agent and workload processes driven over their JSON-line stdout protocols.

Every wait here is for a line the process prints, with a deadline; nothing
sleeps to let something happen.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xpucore import abi

DEADLINE_S = 30.0


class JsonLineProc:
    """A child whose stdout is JSON lines; stdin is a pipe for "go" lines."""

    def __init__(self, argv: list[str], **kw: Any) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **kw,
        )
        self._buf = b""

    def read_json(self, key: str, timeout: float = DEADLINE_S) -> dict[str, Any]:
        """The next stdout line that is a JSON object holding key."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and key in obj:
                    return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[0]}: no '{key}' line in {timeout}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.stderr_text()
                    raise EOFError(
                        f"{self.argv[0]} exited ({self.proc.wait()}) before '{key}': {err}"
                    )
                self._buf += chunk

    def send_line(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = DEADLINE_S) -> int:
        """Closes stdin (EOF ends the workloads) and waits for the exit."""
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stderr_text(self) -> str:
        return self.proc.stderr.read().decode() if self.proc.stderr else ""

    def kill(self) -> None:
        """Ends the process if it still runs and closes its pipes; safe to repeat."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f:
                    f.close()
            except BrokenPipeError:
                pass


@dataclass
class Capture:
    """What an agent run produced: all events, the batches' headers, its stats."""

    events: np.ndarray
    batches: list[abi.Batch]
    stats: dict[str, int]
    stderr: str
    returncode: int
    final_drops: dict[str, int] = field(default_factory=dict)
    libraries: list[str] = field(default_factory=list)  # what the agent attached to
    # the Python stack frames of XPU_BATCH_STACKS batches (abi.PY_FRAME_DTYPE)
    py_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, abi.PY_FRAME_DTYPE))
    py_stats: dict[str, int] = field(default_factory=dict)  # the agent's py_stacks line
    py_calls: dict[str, int] = field(default_factory=dict)  # its py_calls line (PYTHON)
    agent_ready: dict[str, Any] = field(default_factory=dict)  # the agent's ready line

    def names(self) -> np.ndarray:
        names = abi.function_names()
        return np.array([names[int(f)] for f in self.events["func"]])


def capture_from(
    all_batches: list[abi.Batch], stats: dict[str, int], stderr: str, rc: int, libraries: list[str]
) -> Capture:
    batches = [b for b in all_batches if not b.stacks]
    frames = [b.events for b in all_batches if b.stacks]
    events = np.concatenate([b.events for b in batches]) if batches else abi.empty_events(0)
    last = batches[-1] if batches else None
    drops = {
        "kernel_drops": last.kernel_drops if last else 0,
        "inflight_drops": last.inflight_drops if last else 0,
        "send_drops": last.send_drops if last else 0,
    }
    py_frames = np.concatenate(frames) if frames else np.zeros(0, abi.PY_FRAME_DTYPE)
    return Capture(events, batches, stats, stderr, rc, drops, libraries, py_frames)


class Agent(JsonLineProc):
    """xputrace-agent writing a capture file (out), or sending where args say."""

    def __init__(
        self,
        build: Path,
        out: Path | None,
        *args: str,
        monitor_id: str = "test",
        monitor_type: str = "CUDA",
    ) -> None:
        self.out = out
        super().__init__(
            [
                str(build / "xputrace-agent"),
                "--monitor-id",
                monitor_id,
                "--monitor-type",
                monitor_type,
                "--machine-id",
                "testmachine",
                *(["--output", str(out)] if out else []),
                *args,
            ]
        )
        try:
            self.ready = self.read_json("ready")
        except BaseException:
            self.kill()
            raise

    def stop(self, received: Callable[[], list[abi.Batch]] | None = None) -> Capture:
        """SIGTERM, wait for the stats line and the exit, then decode what it sent.

        received gives the batches when the agent sent them elsewhere than a file.
        """
        self.proc.send_signal(signal.SIGTERM)
        stats = self.read_json("stats")["stats"]
        py_stats = self.read_json("py_stacks")["py_stacks"] if "--py-runtime" in self.argv else {}
        py_calls = self.read_json("py_calls")["py_calls"] if "--py-functions" in self.argv else {}
        rc = self.finish()
        err = self.stderr_text()
        self.kill()
        if received is not None:
            batches = received()
        else:
            assert self.out is not None
            with open(self.out, "rb") as f:
                batches = list(abi.iter_batches(f))
        cap = capture_from(batches, stats, err, rc, self.ready["libraries"])
        cap.py_stats.update(py_stats)
        cap.py_calls.update(py_calls)
        cap.agent_ready.update(self.ready)
        return cap


def run_agent_expect_failure(build: Path, *args: str) -> tuple[int, str]:
    """Runs the agent to its exit; returns (exit code, stderr)."""
    p = subprocess.run(
        [str(build / "xputrace-agent"), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stderr


def wait_in_syscall(pid: int, tid: int, nr: int, timeout: float = DEADLINE_S) -> None:
    """Returns once thread tid of pid is blocked in syscall nr (/proc/PID/task/TID/syscall
    names the call a blocked thread is in)."""
    path = Path(f"/proc/{pid}/task/{tid}/syscall")
    deadline = time.monotonic() + timeout
    while path.read_text().split()[0] != str(nr):
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {tid} not in syscall {nr} within {timeout}s")
        time.sleep(0.001)  # polling the state awaited, not a guess at how long it takes


def trace_workload(
    build: Path,
    argv: list[str],
    tmp_path: Path,
    *agent_args: str,
    monitor_type: str = "CUDA",
    go: str = "go",
    first: str | None = None,
    flags_for: Callable[[int], list[str]] | None = None,
    before_stop: Callable[[dict[str, Any]], None] | None = None,
    **kw: Any,
) -> tuple[dict[str, Any], dict[str, Any], Capture]:
    """Runs a workload speaking workload_protocol.h under an agent of monitor_type by pid:
    the agent attaches once the workload is ready, the workload gets `go` and runs to done,
    the agent stops. Returns (ready, done, capture); ready also holds the line keyed `first`
    that the workload prints before it (if given). flags_for(pid) adds agent flags that
    need the pid (Python offsets); before_stop(ready) runs before the agent stops."""
    work = JsonLineProc(argv, **kw)
    agent = None
    try:
        before = work.read_json(first) if first else {}
        ready = {**before, **work.read_json("ready")}
        pid = ready["pid"]
        agent = Agent(
            build,
            tmp_path / "cap.bin",
            "--target-pid",
            str(pid),
            *agent_args,
            *(flags_for(pid) if flags_for else ()),
            monitor_type=monitor_type,
        )
        work.send_line(go)
        done = work.read_json("done")
        if before_stop:
            before_stop(ready)
        cap = agent.stop()
        work.send_line("exit")
        assert work.finish() == 0
    finally:
        work.kill()
        if agent:
            agent.kill()
    assert cap.returncode == 0, cap.stderr
    return ready, done, cap
