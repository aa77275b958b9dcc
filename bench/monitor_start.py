"""POST monitor -> RUNNING through the whole platform (issue #3 target: p50 <= 300 ms).

Brings the platform up in this process as tests/e2e/conftest.py does: an embedded PostgreSQL
in a temporary directory, the backend (`create_app`, REST on 127.0.0.1, CURVE control and
ingest sockets) and a real `python -m manager` subprocess with an enrolled key. It registers,
logs in, starts one workload calling the real libcudart (build/tests/workloads/cuda_calls,
kept waiting on stdin), then --rounds times:

- POST /api/v1/machines/{id}/monitors {"monitor_type": "CUDA", "target": {"pid": P}}, then
  GET the monitor every --poll-ms until it is RUNNING: time from sending the POST to seeing
  RUNNING (also: the POST's own answer, and start_time - create_time as the backend saw it);
- DELETE it: time to the 204 (the manager SIGTERMs the agent, which detaches and drains).

Baseline, measured in the same run, interleaved with the rounds: the agent alone,
`xputrace-agent --monitor-id x --monitor-type CUDA --target-pid P --output /dev/null`, from
exec to its {"ready": ...} stdout line (attaching the BPF probes), and from SIGTERM to exit.
The report gives the agent's share of POST -> RUNNING and what the platform adds on top.

Percentiles are nearest-rank. Needs root (the agent loads BPF) and the CMake build. Prints one
JSON object; exit status 0 when the target is met.

    .venv/bin/python bench/monitor_start.py [--rounds 20] [--poll-ms 5] [--build build]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import select
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import run_in_temp_dir  # noqa: E402

from backend.app import create_app, server_keys  # noqa: E402
from backend.db.embedded import EmbeddedPostgres  # noqa: E402
from manager import keys as manager_keys  # noqa: E402
from tests.pg_fixtures import backend_settings  # noqa: E402

TARGET_P50_S = 0.300
DEADLINE_S = 30.0


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile, in ms."""
    s = sorted(xs)
    return round(s[max(0, math.ceil(p * len(s)) - 1)] * 1000, 1)


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50": pct(xs, 0.5), "p90": pct(xs, 0.9), "max": pct(xs, 1.0)}


class Child:
    """A child process whose stdout is JSON lines; its stdin stays open (a pipe)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.buf = b""

    def read_json(self, key: str, timeout: float = DEADLINE_S) -> dict[str, Any]:
        """The next stdout line that is a JSON object holding key."""
        assert self.proc.stdout is not None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    obj = json.loads(line)
                    if isinstance(obj, dict) and key in obj:
                        return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[0]}: no {key!r} line within {timeout}s")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(
                        f"{self.argv[0]} exited ({self.proc.wait()}) "
                        f"before {key!r}: {err.strip()[-500:]}"
                    )
                self.buf += chunk

    def stop(self, timeout: float = DEADLINE_S) -> None:
        """SIGTERM, wait, SIGKILL if need be; closes the pipes. Safe to repeat."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if f:
                    f.close()


def agent_alone(agent: Path, pid: int) -> tuple[float, float]:
    """The agent by itself on pid: (exec -> ready line, SIGTERM -> exit), in seconds."""
    t0 = time.perf_counter()
    child = Child(
        [
            str(agent),
            "--monitor-id",
            "x",
            "--monitor-type",
            "CUDA",
            "--target-pid",
            str(pid),
            "--output",
            "/dev/null",
        ]
    )
    try:
        child.read_json("ready")
        ready = time.perf_counter() - t0
        # Popen.wait(timeout) polls with sleeps of up to 50 ms: wait on a pidfd instead.
        pidfd = os.pidfd_open(child.proc.pid)
        try:
            t1 = time.perf_counter()
            child.proc.terminate()
            if not select.select([pidfd], [], [], DEADLINE_S)[0]:
                raise TimeoutError(f"agent alone still running {DEADLINE_S}s after SIGTERM")
            stopped = time.perf_counter() - t1
        finally:
            os.close(pidfd)
        rc = child.proc.wait()
        if rc != 0:
            raise RuntimeError(f"agent alone exited {rc}")
        return ready, stopped
    finally:
        child.stop()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def json_ok(r: aiohttp.ClientResponse, *status: int) -> Any:
    if r.status not in status:
        raise RuntimeError(f"{r.method} {r.url.path}: {r.status} {await r.text()}")
    return await r.json() if r.status != 204 else None


def seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


async def bench(
    args: argparse.Namespace, tmp: Path, stack: contextlib.AsyncExitStack
) -> dict[str, Any]:
    build = Path(args.build).resolve()
    agent = build / "xputrace-agent"

    server = EmbeddedPostgres(tmp / "pg")
    stack.callback(server.stop)
    dsn = server.start()
    # create_app migrates on startup; the per-user API rate limit is off: timed is the start
    settings = backend_settings(dsn, tmp, api_requests_per_s=0)
    pub, secret = manager_keys.generate(tmp / "manager")
    settings.enrolled_dir.mkdir(parents=True)
    shutil.copy(pub, settings.enrolled_dir / "manager.key")  # enrolled before the app starts
    server_keys(settings)

    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1"

    machine_file = tmp / "machine-id"
    machine_file.write_text("0123456789abcdef0123456789abcdef\n")
    manager = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "manager",
            "--backend",
            settings.control_endpoint,
            "--server-key",
            str(settings.keys_dir / "backend.key"),
            "--key",
            str(secret),
            "--agent-path",
            str(agent),
            "--runtime-dir",
            str(tmp / "run"),
            "--heartbeat-interval",
            "0.5",
            "--machine-id-file",
            str(machine_file),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    stack.callback(stop_process, manager)

    work = Child([str(build / "tests/workloads/cuda_calls"), "--threads", "1", "--iters", "1"])
    stack.callback(work.stop)
    pid = (await asyncio.to_thread(work.read_json, "ready"))["pid"]

    http = await stack.enter_async_context(aiohttp.ClientSession())
    cred = {"email": "bench@example.com", "password": "long enough pw"}
    await json_ok(await http.post(f"{base}/auth:register", json=cred), 201)
    tokens = await json_ok(await http.post(f"{base}/auth:login", json=cred), 200)
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    deadline = time.monotonic() + DEADLINE_S
    while not (
        machines := (await json_ok(await http.get(f"{base}/machines", headers=auth), 200))[
            "machines"
        ]
    ):
        if time.monotonic() > deadline or manager.poll() is not None:
            raise RuntimeError("the manager did not register")
        await asyncio.sleep(0.05)
    monitors = f"{base}/machines/{machines[0]['id']}/monitors"

    start, post, server_side, polls, stop = [], [], [], [], []
    alone_ready, alone_stop = [], []
    body = {"monitor_type": "CUDA", "target": {"pid": pid}}
    for _ in range(args.rounds):
        # Baseline first, so the two alternate under the same conditions.
        ready_s, stop_s = await asyncio.to_thread(agent_alone, agent, pid)
        alone_ready.append(ready_s)
        alone_stop.append(stop_s)

        t0 = time.perf_counter()
        m = await json_ok(await http.post(monitors, headers=auth, json=body), 201)
        post.append(time.perf_counter() - t0)
        n = 0
        while m["status"] == "STARTING":
            if time.perf_counter() - t0 > DEADLINE_S:
                raise RuntimeError(f"monitor {m['id']} still STARTING after {DEADLINE_S}s")
            await asyncio.sleep(args.poll_ms / 1000)
            m = await json_ok(await http.get(f"{monitors}/{m['id']}", headers=auth), 200)
            n += 1
        if m["status"] != "RUNNING":
            raise RuntimeError(
                f"monitor {m['id']}: {m['status']} {m['error_code']} {m['error_message']}"
            )
        start.append(time.perf_counter() - t0)
        polls.append(n)
        server_side.append(seconds_between(m["create_time"], m["start_time"]))

        t0 = time.perf_counter()
        await json_ok(await http.delete(f"{monitors}/{m['id']}", headers=auth), 204)
        stop.append(time.perf_counter() - t0)
        m = await json_ok(await http.get(f"{monitors}/{m['id']}", headers=auth), 200)
        if m["status"] != "STOPPED":
            raise RuntimeError(f"monitor {m['id']} is {m['status']} after DELETE")

    p50_start, p50_agent = pct(start, 0.5), pct(alone_ready, 0.5)
    return {
        "benchmark": "monitor_start",
        "rounds": args.rounds,
        "poll_interval_ms": args.poll_ms,
        "post_to_running_ms": summary(start),
        "post_answer_ms": summary(post),
        "backend_create_to_running_ms": summary(server_side),
        "polls_per_start_mean": round(sum(polls) / len(polls), 1),
        "delete_ms": summary(stop),
        "baseline": {
            "agent_exec_to_ready_ms": summary(alone_ready),
            "agent_sigterm_to_exit_ms": summary(alone_stop),
        },
        "agent_share_of_start_p50": round(p50_agent / p50_start, 2),
        "platform_overhead_p50_ms": round(p50_start - p50_agent, 1),
        "start_vs_agent_alone_p50_ratio": round(p50_start / p50_agent, 2),
        "target": {"post_to_running_p50_ms": TARGET_P50_S * 1000},
        "pass": p50_start <= TARGET_P50_S * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Needs root and the CMake build (make build)."
    )
    ap.add_argument("--rounds", type=int, default=20, help="monitors started (default 20)")
    ap.add_argument(
        "--poll-ms", type=float, default=5.0, help="GET interval while STARTING (default 5)"
    )
    ap.add_argument("--build", default=str(ROOT / "build"), help="CMake build dir")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    try:
        report = asyncio.run(run_in_temp_dir(bench, args))
    except asyncio.CancelledError:
        print("monitor_start: terminated; cleaned up", file=sys.stderr)
        return 143
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
