"""What exact calls of named functions cost (PYTHON monitor, --py-functions): every Python
call of the target traps into the probe, named or not.

One target (bench/py_cost_target.py in calls mode, Debian's python3.11 by default) calls a
small Python function `tiny` in a loop DEPTH functions deep. Alternating rounds time it
without the monitor, then under xputrace-agent --monitor-type PYTHON (at 1 Hz sampling)
naming a function that is never called (the cost of the hooks alone: each call traps once at
its start and once at its return) and naming `tiny` itself (each call also becomes an event).
Prints ns per call and the time added per Python call (median of per-round differences), with
the agent's counts of trapped and named calls.

usage: python bench/python_calls.py [--build build] [--python /usr/bin/python3.11]
                                    [--depth 10] [--calls 1000000] [--rounds 5]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import median
from probe_cost import timed
from python_attribution import parse, start_agent, start_target

from manager.python.hooks import find_hooks, hook_flag
from manager.python.target import agent_flags


def main() -> int:
    args = parse(__doc__, "calls", 1_000_000, 5)
    build = Path(args.build).resolve()
    target, t, pid = start_target(args, "calls")
    py = [
        *agent_flags(t),
        "--py-binary",
        t.binary,
        "--py-hooks",
        hook_flag(find_hooks(t)),
        "--sample-hz",
        "1",
    ]
    timed(target, args.calls)  # warm up
    cases = {"none_named": "never_called", "tiny_named": "tiny"}
    runs: dict[str, list[float]] = {"unprobed": [], **{k: [] for k in cases}}
    counts: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs["unprobed"].append(timed(target, args.calls))
            for case, name in cases.items():
                agent = start_agent(
                    build,
                    "PYTHON",
                    pid,
                    os.path.join(tmp, f"{case}-{r}.bin"),
                    *py,
                    "--py-functions",
                    name,
                )
                runs[case].append(timed(target, args.calls))
                agent.stop()
                counts[case] = agent.read("py_calls")["py_calls"]
    target.proc.stdin.close()  # type: ignore[union-attr]
    target.proc.wait(30)
    base = runs["unprobed"]
    print(json.dumps({
        "python": f"{args.python} {'.'.join(map(str, t.version))}", "depth": args.depth,
        "calls_per_round": args.calls, "rounds": args.rounds,
        "ns_per_call": {k: round(median(v), 1) for k, v in runs.items()},
        "added_ns_per_python_call": {
            k: round(median([s - u for s, u in zip(v, base, strict=True)]), 1)
            for k, v in runs.items() if k != "unprobed"},
        "slowdown": {k: round(median([s / u for s, u in zip(v, base, strict=True)]), 2)
                     for k, v in runs.items() if k != "unprobed"},
        "agent_counts_last_round": counts,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
