"""Cost per hooked call: the full CUDA (or ACL) probe vs an empty uprobe+uretprobe pair.

One target process calls a hooked function in a tight loop: the real libcudart's cudaMemcpy
(it fails with 35 without a GPU, quickly, after the first call), or with --probe acl the
Ascend stand-in's aclrtMemcpy (tests/workloads/ascend/rt/libacl_rt.so; --symbol aclnnAdd
for the aclnn ops' shared entry program). In the same run, alternating rounds measure it
unprobed, with bench/empty.bpf.c's do-nothing pair attached to the same function, and with
xputrace-agent (the full probe, writing to a capture file) attached. Prints ns per call for
each, the added cost of each probe, and the ratio full/empty (target: <= 1.25).

usage: python bench/probe_cost.py [--build build] [--probe cuda|acl] [--symbol S]
                                  [--calls 200000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Child, median


def cudart12() -> str:
    import nvidia.cuda_runtime as m

    return os.path.join(next(iter(m.__path__)), "lib", "libcudart.so.12")


def timed(target: Child, calls: int) -> float:
    target.send(str(calls))
    return float(target.read("ns_per_call")["ns_per_call"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--probe", choices=["cuda", "acl"], default="cuda")
    ap.add_argument("--symbol", help="the function called (cudaMemcpy / aclrtMemcpy)")
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--agent-args", default="", help="extra xputrace-agent flags")
    ap.add_argument(
        "--attach-mode",
        choices=["auto", "perf"],
        default="auto",
        help="how both the empty pair and the agent attach",
    )
    args = ap.parse_args()
    extra = [*args.agent_args.split(), "--attach-mode", args.attach_mode]
    empty_mode = ["perf"] if args.attach_mode == "perf" else []
    build = Path(args.build).resolve()
    if args.probe == "acl":
        lib = str(build / "tests/workloads/ascend/rt/libacl_rt.so")
        symbol, monitor_type = args.symbol or "aclrtMemcpy", "ACL"
        if symbol.startswith("aclnn"):
            lib = str(build / "tests/workloads/ascend/rt/libopapi.so")
    else:
        lib, symbol, monitor_type = cudart12(), args.symbol or "cudaMemcpy", "CUDA"
    # The traced loop on CPU 0, probes' user-space sides on CPU 1: less scheduler noise.
    pin_target, pin_tools = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    target = Child([*pin_target, str(build / "bench/xpu-bench-cost-target"), lib, symbol])
    pid = target.read("ready")["pid"]
    timed(target, args.calls)  # warm up
    results: dict[str, list[float]] = {"unprobed": [], "empty_pair": [], "full_probe": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            results["unprobed"].append(timed(target, args.calls))
            empty = Child(
                [
                    *pin_tools,
                    str(build / "bench/xpu-bench-empty-pair"),
                    str(pid),
                    lib,
                    symbol,
                    *empty_mode,
                ]
            )
            attach = empty.read("ready")["attach"]
            results["empty_pair"].append(timed(target, args.calls))
            empty.stop()
            agent = Child(
                [
                    *pin_tools,
                    str(build / "xputrace-agent"),
                    "--monitor-id",
                    "bench",
                    "--monitor-type",
                    monitor_type,
                    "--target-pid",
                    str(pid),
                    "--output",
                    os.path.join(tmp, f"cap{r}.bin"),
                    *extra,
                ]
            )
            agent.read("ready")
            results["full_probe"].append(timed(target, args.calls))
            agent.stop()
            stats = agent.read("stats")["stats"]
            if stats["events"] != args.calls or stats["kernel_drops"]:
                print(f"round {r}: agent saw {stats}", file=sys.stderr)
                return 1
    target.proc.stdin.close()  # type: ignore[union-attr]
    target.proc.wait(30)

    base, empty_ns, full_ns = (median(results[k]) for k in ("unprobed", "empty_pair", "full_probe"))
    empty_cost, full_cost = empty_ns - base, full_ns - base
    # Each round measures all three back to back; the median of per-round ratios
    # is steadier than a ratio of medians on a noisy machine.
    per_round = [
        (f - u) / (e - u)
        for u, e, f in zip(
            results["unprobed"], results["empty_pair"], results["full_probe"], strict=True
        )
    ]
    ratio = median(per_round)
    report = {
        "probe": monitor_type,
        "function": symbol,
        "attach": attach,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "ns_per_call": {"unprobed": base, "empty_pair": empty_ns, "full_probe": full_ns},
        "added_ns_per_call": {"empty_pair": empty_cost, "full_probe": full_cost},
        "ratio_full_vs_empty_pair": round(ratio, 3),
        "ratio_per_round": [round(r, 3) for r in per_round],
        "ratio_total_time_full_vs_empty_pair": round(full_ns / empty_ns, 3),
        "target": "<= 1.25",
        "pass": ratio <= 1.25,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
