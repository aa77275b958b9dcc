"""The target's slowdown under the PYTHON monitor's sampler, at 99 Hz and 999 Hz.

One target (bench/py_cost_target.py in spin mode, Debian's python3.11 by default) runs a
pure-Python loop DEPTH functions deep. Alternating rounds time it unsampled, then under
xputrace-agent --monitor-type PYTHON at each rate. Prints ns per iteration and the slowdown
of each rate (median of per-round ratios to the unsampled round), with the samples taken.

usage: python bench/python_sampling.py [--build build] [--python /usr/bin/python3.11]
                                       [--depth 10] [--iters 3000000] [--rounds 5]
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

from manager.python.target import agent_flags


def main() -> int:
    args = parse(__doc__, "iters", 3_000_000, 5)
    build = Path(args.build).resolve()
    target, t, pid = start_target(args, "spin")
    py = agent_flags(t)
    timed(target, args.iters)  # warm up
    rates = (99, 999)
    runs: dict[str, list[float]] = {"unsampled": [], **{f"{hz}_hz": [] for hz in rates}}
    samples: dict[str, list[int]] = {f"{hz}_hz": [] for hz in rates}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs["unsampled"].append(timed(target, args.iters))
            for hz in rates:
                agent = start_agent(
                    build,
                    "PYTHON",
                    pid,
                    os.path.join(tmp, f"{hz}-{r}.bin"),
                    "--sample-hz",
                    str(hz),
                    *py,
                )
                runs[f"{hz}_hz"].append(timed(target, args.iters))
                agent.stop()
                samples[f"{hz}_hz"].append(agent.read("stats")["stats"]["events"])
    target.proc.stdin.close()  # type: ignore[union-attr]
    target.proc.wait(30)
    base = runs["unsampled"]
    print(json.dumps({
        "python": f"{args.python} {'.'.join(map(str, t.version))}", "depth": args.depth,
        "iters_per_round": args.iters, "rounds": args.rounds,
        "ns_per_iter": {k: round(median(v), 2) for k, v in runs.items()},
        "slowdown": {k: round(median([s / u for s, u in zip(v, base, strict=True)]), 4)
                     for k, v in runs.items() if k != "unsampled"},
        "samples_per_round": {k: round(median([float(x) for x in v])) for k, v in samples.items()},
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
