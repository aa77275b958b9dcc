"""Added cost per CUDA call of Python attribution (config.python_stacks): the CUDA probe
with the Python stack walk vs without it, on a Python process calling the real libcudart.

One target (bench/py_cost_target.py, Debian's python3.11 by default) calls cudaMemcpy
through ctypes from DEPTH nested functions in a tight loop. Alternating rounds measure it
unprobed, under xputrace-agent, and under xputrace-agent --py-runtime/--py-offsets (from
manager.python.target). Prints ns per call, the added cost of attribution, and the probe
cost with attribution over the probe cost without (medians of per-round values).

usage: python bench/python_attribution.py [--build build] [--python /usr/bin/python3.11]
                                          [--depth 10] [--calls 100000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Child, median
from probe_cost import cudart12, timed

from manager.python.target import PythonTarget, agent_flags, find_target

PIN_TARGET, PIN_TOOLS = ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def parse(doc: str, count: str, count_default: int, rounds: int) -> argparse.Namespace:
    """The options both Python benchmarks take; count: what a round times (--calls...)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--python", default="/usr/bin/python3.11")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument(f"--{count}", type=int, default=count_default)
    ap.add_argument("--rounds", type=int, default=rounds)
    return ap.parse_args()


def start_target(args: argparse.Namespace, *mode: str) -> tuple[Child, PythonTarget, int]:
    """bench/py_cost_target.py under args.python, on CPU 0: (it, its CPython, its pid)."""
    target = Child(
        [
            *PIN_TARGET,
            args.python,
            str(Path(__file__).with_name("py_cost_target.py")),
            cudart12(),
            str(args.depth),
            *mode,
        ]
    )
    pid = target.read("ready")["pid"]
    return target, find_target(pid), pid


def start_agent(build: Path, monitor_type: str, pid: int, out: str, *flags: str) -> Child:
    """xputrace-agent on CPU 1 tracing pid into the file out, attached (its ready line read)."""
    agent = Child(
        [
            *PIN_TOOLS,
            str(build / "xputrace-agent"),
            "--monitor-id",
            "bench",
            "--monitor-type",
            monitor_type,
            "--target-pid",
            str(pid),
            "--output",
            out,
            *flags,
        ]
    )
    agent.read("ready")
    return agent


def main() -> int:
    args = parse(__doc__, "calls", 100_000, 7)
    build = Path(args.build).resolve()
    target, t, pid = start_target(args)
    py = agent_flags(t)
    timed(target, args.calls)  # warm up
    runs: dict[str, list[float]] = {"unprobed": [], "probe": [], "probe_with_python": []}
    stacks = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs["unprobed"].append(timed(target, args.calls))
            for name, extra in (("probe", []), ("probe_with_python", py)):
                out = os.path.join(tmp, f"{name}{r}.bin")
                agent = start_agent(build, "CUDA", pid, out, *extra)
                runs[name].append(timed(target, args.calls))
                agent.stop()
                stats = agent.read("stats")["stats"]
                if stats["events"] != args.calls or stats["kernel_drops"]:
                    print(f"round {r} {name}: agent saw {stats}", file=sys.stderr)
                    return 1
                stacks = max(stacks, os.path.getsize(out))
    target.proc.stdin.close()  # type: ignore[union-attr]
    target.proc.wait(30)
    base, off, on = (median(runs[k]) for k in ("unprobed", "probe", "probe_with_python"))
    per_round = [
        (w - u) / (p - u)
        for u, p, w in zip(runs["unprobed"], runs["probe"], runs["probe_with_python"], strict=True)
    ]
    print(json.dumps({
        "python": f"{args.python} {'.'.join(map(str, t.version))}",
        "depth": args.depth, "calls_per_round": args.calls, "rounds": args.rounds,
        "ns_per_call": {"unprobed": base, "probe": off, "probe_with_python": on},
        "attribution_added_ns_per_call": round(median([w - p for p, w in
                                                      zip(runs["probe"],
                                                          runs["probe_with_python"],
                                                          strict=True)]), 1),
        "probe_cost_ratio_with_vs_without_python": round(median(per_round), 3),
        "ratio_per_round": [round(x, 3) for x in per_round],
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
