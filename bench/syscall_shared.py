"""Cost of idle SYSCALL monitors on every syscall of the host (issue #20, section 2).

`dd if=/dev/zero of=/dev/null bs=1 count=400000` makes 800k syscalls. It is timed under
1 and under --monitors (50) SYSCALL monitors whose target.comm matches nothing, so the time
dd gains is the cost every monitor adds to every syscall on the machine:

- hub: one shared tracer (`xputrace-agent --monitor-type SYSCALL --hub`, as the manager runs
  it), the monitors added to it over its command pipe: one pair of programs whatever the
  number of monitors. Target: ratio (N monitors / 1 monitor) <= 1.1.
- agents (--agents, the figures of the old design): one standalone
  `xputrace-agent --monitor-type SYSCALL --target-comm ...` process per monitor, each with
  its own system-wide programs.

Rounds are interleaved (1, N, 1, N, ...); each figure is the median over --rounds, with dd
under no tracer at all, measured in the same rounds, as the floor. Needs root and the CMake
build. Prints one JSON object; exit status 0 when the hub meets the target.

    .venv/bin/python bench/syscall_shared.py [--monitors 50] [--rounds 5] [--agents]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import Child, median  # noqa: E402

TARGET_RATIO = 1.1
DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=400000"]
NO_MATCH = "xpu-nomatch-{}"  # a task name no process has


def time_dd() -> float:
    t0 = time.perf_counter()
    subprocess.run(DD, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def monitor_args(i: int, out: Path) -> list[str]:
    return [
        "--monitor-id",
        f"bench-{i}",
        "--monitor-type",
        "SYSCALL",
        "--machine-id",
        "bench",
        "--target-comm",
        NO_MATCH.format(i),
        "--output",
        str(out / f"{i}.bin"),
    ]


class Hub:
    """The shared tracer, monitors added and removed over its pipe."""

    def __init__(self, agent: Path, out: Path) -> None:
        self.out = out
        self.child = Child(
            [
                str(agent),
                "--monitor-id",
                "syscall-hub",
                "--monitor-type",
                "SYSCALL",
                "--machine-id",
                "bench",
                "--hub",
            ]
        )
        self.child.read("hub")
        self.live: list[int] = []

    def resize(self, n: int) -> None:
        while len(self.live) < n:
            i = len(self.live)
            self.child.send("\t".join(["add", *monitor_args(i, self.out)]))
            line = self.child.read("monitor_id")
            if not line.get("ready"):
                raise RuntimeError(f"hub refused monitor {i}: {line}")
            self.live.append(i)
        while len(self.live) > n:
            i = self.live.pop()
            self.child.send(f"remove\tbench-{i}")
            self.child.read("stopped")

    def close(self) -> None:
        self.child.stop()


class Agents:
    """One standalone agent per monitor (the old design)."""

    def __init__(self, agent: Path, out: Path) -> None:
        self.agent, self.out = agent, out
        self.live: list[Child] = []

    def resize(self, n: int) -> None:
        while len(self.live) < n:
            c = Child([str(self.agent), *monitor_args(len(self.live), self.out)])
            c.read("ready")
            self.live.append(c)
        while len(self.live) > n:
            self.live.pop().stop()

    def close(self) -> None:
        self.resize(0)


def measure(tracer: Hub | Agents, n: int, rounds: int, bare: list[float]) -> dict[str, Any]:
    one: list[float] = []
    many: list[float] = []
    for _ in range(rounds):
        tracer.resize(0)
        bare.append(time_dd())
        tracer.resize(1)
        one.append(time_dd())
        tracer.resize(n)
        many.append(time_dd())
    tracer.resize(0)
    m1, mn = median(one), median(many)
    return {
        "dd_s_1": round(m1, 4),
        f"dd_s_{n}": round(mn, 4),
        "ratio": round(mn / m1, 3),
        "runs_1": [round(x, 4) for x in one],
        f"runs_{n}": [round(x, 4) for x in many],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", type=Path, default=ROOT / "build")
    p.add_argument("--monitors", type=int, default=50)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--agents",
        action="store_true",
        help="also time one standalone agent per monitor (the old design)",
    )
    p.add_argument("--only-agents", action="store_true", help="time the old design only")
    args = p.parse_args()
    agent = args.build / "xputrace-agent"
    report: dict[str, Any] = {
        "dd": " ".join(DD),
        "monitors": args.monitors,
        "rounds": args.rounds,
        "target_ratio": TARGET_RATIO,
    }
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="xputrace-bench-") as tmp:
        kinds: list[tuple[str, type[Hub] | type[Agents]]] = []
        if not args.only_agents:
            kinds.append(("hub", Hub))
        if args.agents or args.only_agents:
            kinds.append(("agents", Agents))
        for name, kind in kinds:
            tracer = kind(agent, Path(tmp))
            try:
                report[name] = measure(tracer, args.monitors, args.rounds, bare)
            finally:
                tracer.close()
    report["dd_s_untraced"] = round(median(bare), 4)
    checked = report.get("hub") or report["agents"]
    report["ratio"] = checked["ratio"]
    report["met"] = checked["ratio"] <= TARGET_RATIO
    print(json.dumps(report, indent=2))
    return 0 if report["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
