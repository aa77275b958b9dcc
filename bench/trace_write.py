"""Trace export speed and size: trace_export.write_perfetto vs the perfetto wheel's
TraceProtoBuilder, in the same run.

Synthetic API-call events (a PyTorch-like mix: 80% kernel launches of 40 kernels, 10% async
copies, 6% stream syncs, 4% allocations, over 200 buffers and 2 streams; four threads whose
calls do not overlap; every call returns 35 as without a GPU) are generated in start-time
order, a time window (a chunk) at a time. Measured:

- ours: write_perfetto over --events events, in a child process so its peak RSS is its
  own. The child makes POOL chunks first and then feeds them again and
  again, each round later in time, so that making chunks costs next to nothing while the
  writer runs (the writer compresses in a thread, which must not hide behind the making of
  synthetic events); the time to feed the chunks alone is measured and subtracted.
  Our slices carry every argument as a debug annotation, the return code's name, a flow to
  the stream row and the counters, as the product writes them.
- baseline: TraceProtoBuilder, one packet at a time, begin and end packets with the slice
  name, track uuid and absolute timestamp (no arguments: what the issue's 145k slices/s and
  61 bytes/slice describe), over --baseline-events events; and, to compare like for like,
  the same with every argument as a debug annotation.

Both are run --rounds times, interleaved, and the fastest run of each is compared (the
machines are noisy; every round's ratio is printed too). Targets (issue #4): at least 7x the
baseline's events/s, at most 16 bytes per slice, peak RSS under 300 MB. Prints one JSON
object.

    .venv/bin/python bench/trace_write.py [--events 5000000] [--baseline-events 200000] \
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace_export import EventChunk, from_batches, write_perfetto
from trace_export.events import args_of
from xpucore import abi

WINDOW_NS = 400_000_000  # ~70k calls per chunk
THREADS = 4
_FUNCS = np.array([0x100, 0x500, 0xC00, 0x700])  # launch, memcpy async, stream sync, malloc


def chunks(n: int, seed: int = 1) -> Iterator[EventChunk]:
    """n events in start-time order, a time window at a time: in each window every thread
    makes calls one after another (none overlap on a thread), each window's calls sorted."""
    rng = np.random.default_rng(seed)
    clock = np.zeros(THREADS, np.int64)
    kernels = (0x7F3A10000000 + 0x1F40 * np.arange(40)).astype(np.uint64)
    buffers = (0x7F3B00000000 + (1 << 24) * np.arange(200)).astype(np.uint64)
    made, window = 0, 0
    while made < n:
        window += WINDOW_NS
        ts_parts, dur_parts, tid_parts = [], [], []
        for k in range(THREADS):
            dur = rng.integers(800, 40_000, 2 * WINDOW_NS // 800 // THREADS)
            step = dur + rng.integers(200, 5_000, len(dur))
            ts = clock[k] + np.cumsum(step) - step
            keep = ts < window
            clock[k] = ts[keep][-1] + step[keep][-1] if keep.any() else clock[k]
            ts_parts.append(ts[keep])
            dur_parts.append(dur[keep])
            tid_parts.append(np.full(int(keep.sum()), 100 + k))
        ts, dur, tid = (np.concatenate(x) for x in (ts_parts, dur_parts, tid_parts))
        order = np.argsort(ts, kind="stable")[: n - made]
        m = len(order)
        made += m
        ev = abi.empty_events(m)
        ev["ts_ns"], ev["duration_ns"], ev["tid"] = ts[order], dur[order], tid[order]
        ev["pid"], ev["comm"], ev["ret"] = 100, b"python", 35
        kind = rng.choice(4, m, p=[0.8, 0.1, 0.06, 0.04])
        ev["func"] = _FUNCS[kind]
        ev["stream"] = rng.choice([0x55D4C0A1B2C0, 0x55D4C0A1F000], m)
        ev["ptr"] = np.where(kind == 0, kernels[rng.integers(0, len(kernels), m)],
                             buffers[rng.integers(0, len(buffers), m)])  # fmt: skip
        ev["ptr2"] = buffers[rng.integers(0, len(buffers), m)]
        ev["bytes"] = rng.choice([0, 4096, 1 << 20], m)
        ev["grid_x"] = rng.choice([1, 80, 160, 1024], m)
        ev["block_x"], ev["grid_y"], ev["grid_z"], ev["block_y"], ev["block_z"] = 256, 1, 1, 1, 1
        ev["kind"] = np.where(kind == 1, 1, 0)
        raw = abi.encode_batch(ev, monitor_id="bench", machine_id="9f" * 32,
                               mono_to_real_ns=1_700_000_000 * 10**9)  # fmt: skip
        yield from_batches([abi.decode_batch(raw)])


POOL = 3  # chunks: ~210k events, ~60 MB of the peak RSS reported


def replayed(pool: list[EventChunk], n: int) -> Iterator[EventChunk]:
    """n events: the pool's chunks again and again, each round after the last one ends."""
    period = max(int((c.ts + c.dur).max()) for c in pool) - int(pool[0].ts[0]) + 1
    shift = 0
    while n > 0:
        for c in pool:
            if n <= 0:
                break
            c = c.take(slice(0, n)) if len(c) > n else c
            n -= len(c)
            yield replace(c, ts=c.ts + shift)
        shift += period


def child(n: int) -> dict[str, float]:
    pool = list(chunks(min(n, POOL * 70_000)))
    t = time.perf_counter()
    for _ in replayed(pool, n):
        pass
    gen_s = time.perf_counter() - t
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        stats = write_perfetto(replayed(pool, n), out)
        total_s = time.perf_counter() - t
    return {"seconds": total_s - gen_s, "generate_s": gen_s, "bytes": stats.bytes,
            "slices": stats.slices, "flows": stats.flows,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would count the parent's pages
    the child held between fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def baseline(n: int, with_args: bool) -> dict[str, float]:
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder

    cs = list(chunks(n))
    t = time.perf_counter()
    b = TraceProtoBuilder()
    tracks: dict[int, int] = {}
    for c in cs:
        cols = {a: v.tolist() for a, v in c.args.items()}
        for i, (ts, dur, tid, name) in enumerate(zip(c.ts.tolist(), c.dur.tolist(),
                                                     c.tid.tolist(), c.name.tolist(),
                                                     strict=True)):  # fmt: skip
            if tid not in tracks:
                tracks[tid] = uuid = 1000 + tid
                p = b.add_packet()
                p.track_descriptor.uuid = uuid
                p.track_descriptor.thread.pid = 100
                p.track_descriptor.thread.tid = tid
            p = b.add_packet()
            p.timestamp = ts
            p.trusted_packet_sequence_id = 1
            p.track_event.type = p.track_event.TYPE_SLICE_BEGIN
            p.track_event.track_uuid = tracks[tid]
            p.track_event.name = c.names[name]
            if with_args:
                for a in args_of("CUDA", c.names[name]):
                    d = p.track_event.debug_annotations.add()
                    d.name = a
                    d.uint_value = cols[a][i]
                d = p.track_event.debug_annotations.add()
                d.name, d.string_value = "ret", "cudaErrorInsufficientDriver (35)"
            p = b.add_packet()
            p.timestamp = ts + dur
            p.trusted_packet_sequence_id = 1
            p.track_event.type = p.track_event.TYPE_SLICE_END
            p.track_event.track_uuid = tracks[tid]
    size = len(b.serialize())
    return {"events_per_s": n / (time.perf_counter() - t), "bytes_per_slice": size / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--baseline-events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3, help="best of each kept (noisy machines)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    runs, bases, bases_args = [], [], []
    for _ in range(args.rounds):  # interleaved, so that both see the machine's mood alike
        cmd = [sys.executable, __file__, "--child", str(args.events)]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        runs.append(json.loads(run.stdout))
        bases.append(baseline(args.baseline_events, with_args=False))
        bases_args.append(baseline(args.baseline_events, with_args=True))
    ours = min(runs, key=lambda r: r["seconds"])
    base = max(bases, key=lambda b: b["events_per_s"])
    base_args = max(bases_args, key=lambda b: b["events_per_s"])
    rate = args.events / ours["seconds"]
    per_slice = ours["bytes"] / ours["slices"]
    report = {
        "events": args.events,
        "rounds": args.rounds,
        "ours": {
            "events_per_s": round(rate),
            "bytes_per_slice": round(per_slice, 2),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "seconds": round(ours["seconds"], 2),
            "flows": ours["flows"],
        },
        "baseline_no_args": {k: round(v, 2) for k, v in base.items()},
        "baseline_with_args": {k: round(v, 2) for k, v in base_args.items()},
        "speed_ratio_vs_baseline": round(rate / base["events_per_s"], 2),
        "speed_ratio_vs_baseline_with_args": round(rate / base_args["events_per_s"], 2),
        "speed_ratio_per_round": [
            round(args.events / r["seconds"] / b["events_per_s"], 2)
            for r, b in zip(runs, bases, strict=True)
        ],
        "targets": {"speed_ratio": ">= 7", "bytes_per_slice": "<= 16", "peak_rss_mb": "< 300"},
    }
    report["pass"] = (report["speed_ratio_vs_baseline"] >= 7 and per_slice <= 16
                      and report["ours"]["peak_rss_mb"] < 300)  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
