"""POST monitor -> RUNNING latency, through the whole platform (target: p50 <= 300 ms).

Brings up the backend (embedded PostgreSQL, CURVE control and ingest) in this process and a
real `python -m manager`, starts one workload calling the real libcudart, then N times: POST a
CUDA monitor on it, poll until RUNNING, DELETE it. Baseline in the same run: the agent alone,
from exec to its {"ready": ...} line. Needs root (the agent loads BPF).

usage: python bench/monitor_start.py [--build build] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.app import create_app, server_keys  # noqa: E402
from backend.db.embedded import EmbeddedPostgres  # noqa: E402
from manager import keys as manager_keys  # noqa: E402
from tests.agent.procs import JsonLineProc  # noqa: E402
from tests.pg_fixtures import backend_settings  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    return round(sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000, 1)


def summary(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(xs, 0.5), "p90_ms": pct(xs, 0.9), "max_ms": round(max(xs) * 1000, 1)}


def agent_ready_times(build: Path, pid: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        agent = JsonLineProc([str(build / "xputrace-agent"), "--monitor-id", "bench",
                              "--monitor-type", "CUDA", "--target-pid", str(pid),
                              "--output", "/dev/null"])
        agent.read_json("ready")
        out.append(time.monotonic() - t0)
        agent.proc.terminate()
        agent.finish()
        agent.kill()
    return out


async def run(build: Path, rounds: int, tmp: Path) -> dict[str, object]:
    server = EmbeddedPostgres(tmp / "pg")
    settings = backend_settings(server.start(), tmp)
    pub, secret = manager_keys.generate(tmp / "manager")
    settings.enrolled_dir.mkdir(parents=True)
    shutil.copy(pub, settings.enrolled_dir / "manager.key")
    server_keys(settings)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    (tmp / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    manager = subprocess.Popen(
        [sys.executable, "-m", "manager", "--backend", settings.control_endpoint,
         "--server-key", str(settings.keys_dir / "backend.key"), "--key", str(secret),
         "--agent-path", str(build / "xputrace-agent"), "--runtime-dir", str(tmp / "run"),
         "--heartbeat-interval", "0.5", "--machine-id-file", str(tmp / "machine-id"),
         "--log-level", "WARNING"], cwd=ROOT, stdin=subprocess.DEVNULL)
    work = JsonLineProc([str(build / "tests/workloads/cuda_calls"), "--threads", "1",
                         "--iters", "1"])
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        ready = work.read_json("ready")
        async with aiohttp.ClientSession() as http:
            body = {"email": "bench@example.com", "password": "long enough pw"}
            await (await http.post(f"{base}/auth:register", json=body)).read()
            token = (await (await http.post(f"{base}/auth:login", json=body)).json())
            auth = {"Authorization": f"Bearer {token['access_token']}"}
            while True:
                machines = (await (await http.get(f"{base}/machines", headers=auth)).json())
                if machines["machines"]:
                    break
                await asyncio.sleep(0.05)
            mons = f"{base}/machines/{machines['machines'][0]['id']}/monitors"
            start, stop = [], []
            for _ in range(rounds):
                t0 = time.monotonic()
                r = await http.post(mons, headers=auth, json={
                    "monitor_type": "CUDA", "target": {"pid": ready["pid"]}})
                mid = (await r.json())["id"]
                while True:
                    m = await (await http.get(f"{mons}/{mid}", headers=auth)).json()
                    if m["status"] != "STARTING":
                        break
                    await asyncio.sleep(0.005)
                if m["status"] != "RUNNING":
                    raise SystemExit(f"monitor {mid}: {m['status']} {m['error_message']}")
                start.append(time.monotonic() - t0)
                t0 = time.monotonic()
                r = await http.delete(f"{mons}/{mid}", headers=auth)
                assert r.status == 204, await r.text()
                stop.append(time.monotonic() - t0)
        alone = await asyncio.to_thread(agent_ready_times, build, ready["pid"], rounds)
    finally:
        work.kill()
        manager.terminate()
        manager.wait(30)
        await runner.cleanup()
        server.stop()
    report: dict[str, object] = {
        "rounds": rounds,
        "post_to_running": summary(start),
        "delete": summary(stop),
        "baseline_agent_exec_to_ready": summary(alone),
        "target": "post_to_running p50 <= 300 ms",
    }
    report["pass"] = statistics.median(start) <= 0.3
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xputrace-bench-") as tmp:
        os.chmod(tmp, 0o755)
        report = asyncio.run(run(Path(args.build).resolve(), args.rounds, Path(tmp)))
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
