"""A capture with known contents for the aggregate tests, and its aggregates computed the
plain way (a Python loop per event), to check the vectorised Aggregator and what InfluxDB
and PostgreSQL give back."""

from __future__ import annotations

import bisect
import math
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.histogram import bucket_bounds
from xpucore import abi

S = 10**9
LAUNCH, MEMCPY, MEMCPY_ASYNC, MALLOC, FREE, SYNC = 0x100, 0x400, 0x500, 0x700, 0xA00, 0xC00
NAMES = {LAUNCH: "cudaLaunchKernel", MEMCPY: "cudaMemcpy", MEMCPY_ASYNC: "cudaMemcpyAsync",
         MALLOC: "cudaMalloc", FREE: "cudaFree", SYNC: "cudaStreamSynchronize"}  # fmt: skip
MONITORS = [("7d9b8a3c-1111-4222-8333-000000000001", "machine-a", [4101, 4102]),
            ("7d9b8a3c-1111-4222-8333-000000000002", "machine-b", [5201])]  # fmt: skip
INTERVALS = 6
_LOWS = [bucket_bounds(k)[0] for k in range(1888)]


@dataclass
class Capture:
    t0: int  # wall clock of the first interval's start (a whole second)
    batches: list[bytes]
    decoded: list[abi.Batch]
    # (interval, machine, monitor_id, pid, device, function) -> aggregate
    calls: dict[tuple[int, str, str, int, int, str], dict[str, Any]] = field(default_factory=dict)
    # (interval, machine, monitor_id, pid, device) -> (held after the last change, most held)
    memory: dict[tuple[int, str, str, int, int], tuple[int, int]] = field(default_factory=dict)
    # (interval, machine, monitor_id) -> (kernel, inflight, send)
    drops: dict[tuple[int, str, str], tuple[int, int, int]] = field(default_factory=dict)


def make_capture(t0: int, per_batch: int = 500, seed: int = 7) -> Capture:
    """Two machines, three processes, six seconds of CUDA calls from t0 (a whole second)."""
    assert t0 % S == 0
    rng = np.random.default_rng(seed)
    raw: list[bytes] = []
    m2r = t0 - 10**12  # monotonic 1000 s at t0
    for mon, machine, pids in MONITORS:
        n = INTERVALS * 2 * per_batch
        ev = abi.empty_events(n)
        ts = np.sort(rng.integers(0, INTERVALS * S, n)).astype(np.uint64)
        ev["ts_ns"] = 10**12 + ts
        # durations over six decades, some exactly on bucket edges
        ev["duration_ns"] = np.where(
            rng.random(n) < 0.1,
            rng.choice([31, 32, 64, 1 << 20], n),
            np.exp(rng.uniform(3, 17, n)).astype(np.int64),
        )
        ev["pid"] = rng.choice(pids, n)
        ev["tid"] = ev["pid"] + rng.integers(0, 3, n)
        ev["device"] = ev["tid"] % 3  # each thread on its own device: frees cross devices
        ev["comm"] = b"python"
        func = rng.choice(
            [LAUNCH, MEMCPY, MEMCPY_ASYNC, MALLOC, FREE, SYNC], n, p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]
        )
        ev["func"] = func
        ev["ret"] = np.where(rng.random(n) < 0.05, rng.choice([1, 2, 700], n), 0)
        ev["flags"] = np.where(rng.random(n) < 0.01, abi.EV_INCOMPLETE, 0)
        ev["bytes"] = rng.choice([4, 4096, 1 << 20, 3 << 24], n)
        ev["kind"] = np.where((func == MEMCPY) | (func == MEMCPY_ASYNC), 1, 0)
        # allocations get fresh pointers (0 when they failed); frees take back live ones
        ptr = np.zeros(n, dtype=np.uint64)
        live: dict[int, list[int]] = defaultdict(list)
        for i in range(n):
            p = int(ev["pid"][i])
            if func[i] == MALLOC and ev["ret"][i] == 0:
                ptr[i] = 0x7F0000000000 + (i << 12)
                live[p].append(int(ptr[i]))
            elif func[i] == FREE:
                if live[p] and rng.random() < 0.8:
                    ptr[i] = live[p].pop(int(rng.integers(len(live[p]))))
                else:
                    ptr[i] = 0xDEAD0000  # never allocated: changes nothing
            elif func[i] != MALLOC:
                ptr[i] = 0x7F3B00000000 + i
        ev["ptr"] = ptr
        ev["stream"] = 0x55D4C0A1B2C0
        drops = 0
        for seq, first in enumerate(range(0, n, per_batch)):
            drops += int(rng.integers(0, 4))
            raw.append(
                abi.encode_batch(
                    ev[first : first + per_batch],
                    monitor_id=mon,
                    machine_id=machine,
                    seq=seq,
                    kernel_drops=drops,
                    inflight_drops=seq // 3,
                    send_drops=0,
                    mono_to_real_ns=m2r,
                    agent_pid=900 + len(raw),
                )
            )
    # the two agents' batches arrive interleaved
    half = len(raw) // 2
    order = [x for pair in zip(raw[:half], raw[half:], strict=True) for x in pair]
    cap = Capture(t0, order, [abi.decode_batch(r) for r in order])
    reference(cap)
    return cap


def reference(cap: Capture) -> None:
    """The expected aggregates, event by event (interval = start time // 1 s)."""
    hist: dict[tuple[int, str, str, int, int, str], dict[int, int]] = defaultdict(dict)
    live: dict[tuple[str, int], dict[int, tuple[int, int]]] = defaultdict(dict)  # (size, dev)
    held: dict[tuple[str, int, int], int] = defaultdict(int)
    last_drops: dict[tuple[str, int], tuple[int, int, int]] = {}
    for b in cap.decoded:
        last_iv = None
        rows = sorted(enumerate(abi.event_records(b)), key=lambda r: (r[1]["ts_ns"], r[0]))
        for _, e in rows:
            iv = e["ts_ns"] // S
            last_iv = iv if last_iv is None else max(last_iv, iv)
            dev = e["args"]["device"]
            key = (iv, b.machine_id, b.monitor_id, e["pid"], dev, e["func"])
            a = cap.calls.setdefault(
                key,
                {
                    "calls": 0,
                    "errors": 0,
                    "duration_sum_ns": 0,
                    "duration_max_ns": 0,
                    "bytes_copied": 0,
                    "bytes_allocated": 0,
                    "durations": [],
                },
            )
            d = e["duration_ns"]
            a["calls"] += 1
            a["duration_sum_ns"] += d
            a["duration_max_ns"] = max(a["duration_max_ns"], d)
            a["durations"].append(d)
            ok = e["ret"] == 0 and not e["incomplete"]
            a["errors"] += e["ret"] != 0 and not e["incomplete"]
            name = e["func"]
            if ok and name in ("cudaMemcpy", "cudaMemcpyAsync"):
                a["bytes_copied"] += e["args"]["bytes"]
            if ok and name == "cudaMalloc" and e["args"]["ptr"]:
                a["bytes_allocated"] += e["args"]["bytes"]
            bucket = bisect.bisect_right(_LOWS, d) - 1
            h = hist[key]
            h[bucket] = h.get(bucket, 0) + 1
            pkey = (b.monitor_id, e["pid"])
            on = None  # the device whose memory changed: a free's is its allocation's
            if ok and name == "cudaMalloc" and e["args"]["ptr"]:
                live[pkey][e["args"]["ptr"]] = (e["args"]["bytes"], dev)
                held[(*pkey, dev)] += e["args"]["bytes"]
                on = dev
            elif name == "cudaFree" and e["args"]["ptr"] in live[pkey]:
                size, on = live[pkey].pop(e["args"]["ptr"])
                held[(*pkey, on)] -= size
            if on is not None:
                mkey = (iv, b.machine_id, b.monitor_id, e["pid"], on)
                prev = cap.memory.get(mkey)
                now = held[(*pkey, on)]
                cap.memory[mkey] = (now, max(now, prev[1] if prev else 0))
        totals = (b.kernel_drops, b.inflight_drops, b.send_drops)
        prev = last_drops.get((b.monitor_id, b.agent_pid), (0, 0, 0))
        last_drops[(b.monitor_id, b.agent_pid)] = totals
        new = tuple(t - p for t, p in zip(totals, prev, strict=True))
        if any(new) and last_iv is not None:
            dkey = (last_iv, b.machine_id, b.monitor_id)
            old = cap.drops.get(dkey, (0, 0, 0))
            cap.drops[dkey] = tuple(o + x for o, x in zip(old, new, strict=True))  # type: ignore[assignment]
    for key, a in cap.calls.items():
        a["hist"] = hist[key]
        a["duration_mean_ns"] = a["duration_sum_ns"] / a["calls"]
        ds = sorted(a["durations"])
        for name, q in (("p50_ns", 0.5), ("p95_ns", 0.95), ("p99_ns", 0.99)):
            true = ds[max(1, math.ceil(q * len(ds) - 1e-9)) - 1]
            a[f"true_{name}"] = true


def monitor_uuid(i: int) -> str:
    return str(uuid.UUID(MONITORS[i][0]))
