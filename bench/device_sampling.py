"""What sampling accelerators costs the manager: CPU of a real manager (and its device probe)
sampling the 8 NPUs of the libdcmi.so stand-in every second, against the same manager with
sampling off, both talking to a test backend for the same time.

    python bench/device_sampling.py [--seconds 30] [--build build]

Prints each run's CPU as % of one core and the difference; the target (issue #15) is a
difference of at most 0.5 % of one core. The NVML stand-in is left off the loader's path, so
pynvml finds no library (as on a machine without NVIDIA GPUs) and says so once per sample.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

from manager import keys  # noqa: E402
from tests.manager.backend_double import Backend  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of pid and every living descendant, in seconds."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_s(int(child))
    except OSError:
        pass
    return total


async def one_run(tmp: Path, build: Path, interval: float, seconds: float) -> tuple[float, int]:
    """(CPU % of one core over seconds, DEVICE_METRICS received) for one manager."""
    server_pub, server_secret = zmq.curve_keypair()
    keys.generate(tmp / "enrolled", "manager", force=True)
    (tmp / "backend.key").write_bytes(server_pub + b"\n")
    (tmp / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = str(ROOT)
    async with Backend(tmp / "enrolled", server_secret) as backend:
        argv = [
            *(sys.executable, "-m", "manager", "--backend", backend.endpoint),
            *("--server-key", str(tmp / "backend.key")),
            *("--key", str(tmp / "enrolled/manager.key_secret")),
            *("--agent-path", str(build / "xputrace-agent"), "--no-jobs"),
            *("--runtime-dir", str(tmp / f"run{interval}")),
            *("--machine-id-file", str(tmp / "machine-id"), "--log-level", "WARNING"),
            *("--device-interval", str(interval)),
            *("--dcmi-library", str(build / "tests/workloads/devices/dcmi/libdcmi.so")),
        ]
        p = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            await backend.event("HELLO", 30)
            if interval:
                await backend.event("DEVICE_METRICS", 30)  # the probe has started
            await asyncio.sleep(2)  # settle: imports and the first samples are not the cost
            n0 = len(backend.received)
            c0 = cpu_s(p.pid)
            await asyncio.sleep(seconds)
            c1 = cpu_s(p.pid)
            metrics = sum(1 for _, m in backend.received[n0:] if m.get("event") == "DEVICE_METRICS")
        finally:
            p.terminate()
            p.wait(30)
    return 100 * (c1 - c0) / seconds, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--build", type=Path, default=Path(os.environ.get("XPUTRACE_BUILD_DIR", ROOT / "build"))
    )
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        idle, _ = asyncio.run(one_run(Path(d), ns.build, 0, ns.seconds))
        busy, n = asyncio.run(one_run(Path(d), ns.build, 1, ns.seconds))
    cost = busy - idle
    print(f"manager idle (no sampling):          {idle:6.3f} % of one core")
    print(f"manager sampling 8 NPUs every 1 s:   {busy:6.3f} % of one core ({n} samples)")
    print(f"cost of sampling:                    {cost:6.3f} % of one core (target <= 0.5)")
    print(f"ratio sampling / idle:               {busy / idle if idle else float('inf'):6.2f}")


if __name__ == "__main__":
    main()
