"""Per-interval aggregates of ingested events: what InfluxDB stores and Grafana shows.

The ingest hands every batch it has stored (once: duplicates are not stored, so not counted
twice) to ``Aggregator.add``. Each batch is reduced with numpy, with no Python code per
event: its events are grouped by (interval, pid, function) through one sort of a packed
key, and counts, sums, maxima and histogram buckets come from ``reduceat`` and ``unique``.
The partial results wait per interval. An interval closes, and its points go to the sink,
once the watermark is ``lateness_ns`` past its end. The watermark is the wall clock at the
last ``tick()`` or the latest event time seen, whichever is later, and never past the wall
clock (a machine whose clock runs ahead closes nothing early). The backend ticks at each
interval's close time (backend.aggregate_clock), so an interval is written ``lateness_ns``
after its end whether or not more events come; ``flush()`` (shutdown) closes everything
pending.

Late events, for an interval already written: within ``retain_intervals`` of the watermark
they are merged into it, and at the next ``tick()`` (or ``flush()``) the interval is written
again, whole: every point of the interval with its totals now including them, once however
many late batches came. InfluxDB replaces a point with the same series and time, so it holds
one point per series and interval, never a partial one or two that add up. Events older than
that are counted in ``stats.late_events`` and not aggregated (PostgreSQL has them all).

Schema (interval start as the point's time; ``docs`` in README's InfluxDB section):

``xpu_calls``  tags machine, monitor_type, monitor_id, pid, device, function
               fields calls, errors, duration_sum_ns, duration_max_ns, bytes_copied,
               bytes_allocated (integers), duration_mean_ns, p50_ns, p95_ns, p99_ns
``xpu_latency_hist``  same tags; one integer field ``b<bucket>`` per non-empty bucket of
               the duration histogram (backend.histogram): percentiles of any set of
               intervals and series are exact merges of these
``xpu_memory`` tags machine, monitor_type, monitor_id, pid, device
               fields held_bytes (memory the process holds on the device after the
               interval's last allocation or free there), held_max_bytes (the most held
               during the interval); written for intervals where it allocated or freed
``xpu_drops``  tags machine, monitor_type, monitor_id
               fields kernel, inflight, send, total: events the probe and agent lost, from
               the batch headers' running totals (difference from the last seen per agent
               run), in the interval of the batch's last event

What counts: ``errors`` are calls that returned non-zero (incomplete calls, cut by the agent's
stop, count as calls, never as errors); ``bytes_copied`` sums the size of successful
memcpy-class calls; ``bytes_allocated`` the size of successful allocations (non-zero pointer
returned); device memory held is xpucore.memory's ledger, per process and device, as the
traces count it (a successful allocation of a live pointer replaces it; a free of a pointer
never seen allocated changes nothing). Which calls copy, allocate and free is the probe's
schema (xpucore.probes). Events are placed in the interval of their start time.
``device`` is the ordinal of the device the calling thread had current (xpucore/include/cuda.h: 0,
CUDA's default, for a thread not seen choosing or asking for one since tracing began;
cudaSetDevice: the device asked for), ``other`` for ordinals past 509, and absent for
monitor types whose events name no device; ``monitor_type`` tells GPU (CUDA) from NPU (ACL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from backend.histogram import bucket_of, percentile
from xpucore import abi
from xpucore.calls import functions, lookup
from xpucore.memory import MemoryLedger, ledger_rows

__all__ = [
    "DEV_OTHER",
    "Aggregator",
    "AggregatorStats",
    "DropCounter",
    "MemoryLedger",
    "Point",
    "call_kinds",
    "device_codes",
    "device_tag",
]

log = logging.getLogger(__name__)

_TYPE_NAMES = {v: k for k, v in abi.MONITOR_TYPES.items()}
# Monitor types whose functions are tagged by name (others: fn_0x<id>).
_NAMED = frozenset({"CUDA", "ACL"})
_NB = 2048  # histogram buckets below 2**63 (backend.histogram: at most 1887)
# dev: 0 when the events name no device, else the device ordinal + 1 (up to DEV_OTHER)
_GROUP = [("sid", "<i8"), ("iv", "<i8"), ("pid", "<i8"), ("dev", "<i8"), ("func", "<i8"),
          ("calls", "<i8"), ("errors", "<i8"), ("dsum", "<i8"), ("dmax", "<i8"),
          ("copied", "<i8"), ("allocated", "<i8")]  # fmt: skip
_HIST = [("sid", "<i8"), ("iv", "<i8"), ("pid", "<i8"), ("dev", "<i8"), ("func", "<i8"),
         ("bucket", "<i8"), ("count", "<i8")]  # fmt: skip
DEV_OTHER = 511  # dev code of ordinals past 509: 9 bits of the packed group key


@dataclass(frozen=True)
class Point:
    """One InfluxDB point."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, int | float]
    time_ns: int

    def line(self) -> str:
        """The point in InfluxDB line protocol (integers with the ``i`` suffix)."""
        tags = "".join(f",{k}={_escape(v)}" for k, v in self.tags)
        fields = ",".join(f"{k}={v}i" if isinstance(v, int) else f"{k}={v!r}"
                          for k, v in self.fields.items())  # fmt: skip
        return f"{self.measurement}{tags} {fields} {self.time_ns}"


def _escape(value: str) -> str:
    out = value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")
    return out or "\\ "


def call_kinds(monitor_type: str) -> dict[str, frozenset[str]]:
    """{"copy" | "alloc" | "free": function names of that kind} for a monitor type (its
    probe's schema, xpucore.probes)."""
    return {kind: functions(monitor_type, kind) for kind in ("copy", "alloc", "free")}


@cache
def _acl_2d() -> np.ndarray:
    """Lookup table over the 16-bit function ids: the ACL 2-D copies."""
    lut = np.zeros(1 << 16, dtype=bool)
    lut[
        [f for f in abi.function_names("ACL") if abi.arg_class(f, "ACL").startswith("MEMCPY_2D")]
    ] = True
    return lut


@cache
def _function_name(func: int, monitor_type: str) -> str:
    return abi.function_name(func, monitor_type) if monitor_type in _NAMED else f"fn_{func:#06x}"


def device_tag(code: int) -> str | None:
    """The device tag of a group's dev code (_GROUP): None for events that name no device."""
    if code == 0:
        return None
    return "other" if code >= DEV_OTHER else str(code - 1)


def device_codes(ev: np.ndarray) -> np.ndarray:
    """Each event's dev code: its device ordinal + 1, at most DEV_OTHER; 0 without one."""
    if "device" not in (ev.dtype.names or ()):
        return np.zeros(len(ev), np.int64)
    return np.minimum(ev["device"].astype(np.int64) + 1, DEV_OTHER)


class DropCounter:
    """New drops from running totals, per (monitor id, agent pid)."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, int], tuple[int, int, int]] = {}

    def delta(
        self, monitor_id: str, agent_pid: int, totals: tuple[int, int, int]
    ) -> tuple[int, int, int]:
        last = self.last.get((monitor_id, agent_pid), (0, 0, 0))
        self.last[(monitor_id, agent_pid)] = tuple(  # type: ignore[assignment]
            max(a, b) for a, b in zip(last, totals, strict=True)
        )
        return tuple(max(0, t - p) for t, p in zip(totals, last, strict=True))  # type: ignore[return-value]


@dataclass
class AggregatorStats:
    batches: int = 0
    events: int = 0
    late_events: int = 0  # arrived after their interval was closed and let go: not counted
    intervals_closed: int = 0
    intervals_rewritten: int = 0  # written again, whole, with late events merged in
    points: int = 0


@dataclass
class _Interval:
    groups: list[np.ndarray] = field(default_factory=list)
    hist: list[np.ndarray] = field(default_factory=list)
    # (sid, pid) -> [held after the last change, most held]
    memory: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)  # sid, pid, dev
    drops: dict[int, list[int]] = field(default_factory=dict)  # sid -> [kernel, inflight, send]


class _AclnnOps:
    """The aclnn ops of ACL events, each a function of its own in the aggregates (aclnnAdd,
    as the events and the PostgreSQL path name them): all share one function id in the probe
    (its op in op_type), so each op seen gets one of the ids after it, up to 255 of them;
    later ones stay "aclnn"."""

    def __init__(self) -> None:
        self.base = next(f for f, n in abi.function_names("ACL").items() if n == "aclnn")
        self.ids: dict[bytes, int] = {}
        self.names: dict[int, str] = {}

    def remap(self, ev: np.ndarray, func: np.ndarray) -> np.ndarray:
        """func with each aclnn launch's id replaced by its op's."""
        rows = np.flatnonzero(func == self.base)
        if not len(rows):
            return func
        func = func.copy()
        ops, inv = np.unique(ev["op_type"][rows], return_inverse=True)
        ids = np.array([self._id(op) for op in ops.tolist()], np.int64)
        func[rows] = ids[inv.reshape(-1)]
        return func

    def _id(self, op: bytes) -> int:
        found = self.ids.get(op)
        if found is None and len(self.ids) < 255:
            found = self.ids[op] = self.base + 1 + len(self.ids)
            self.names[found] = abi.event_type(self.base, "ACL", {"op_type": op})
        return found if found is not None else self.base

    def name(self, func: int, monitor_type: str) -> str:
        if monitor_type == "ACL" and func in self.names:
            return self.names[func]
        return _function_name(func, monitor_type)


class Aggregator:
    """Aggregates stored batches per interval; closed intervals go to ``sink`` as points."""

    def __init__(
        self,
        sink: Callable[[list[Point]], None],
        *,
        interval_ns: int = 10**9,
        lateness_ns: int = 2 * 10**9,
        retain_intervals: int = 120,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if interval_ns <= 0 or lateness_ns < 0:
            raise ValueError("interval_ns must be positive and lateness_ns not negative")
        self.sink = sink
        self.interval_ns = interval_ns
        self.lateness_ns = lateness_ns
        self.retain_intervals = retain_intervals
        self.clock_ns = clock_ns
        self.stats = AggregatorStats()
        self.memory = MemoryLedger()
        self.drops = DropCounter()
        self._aclnn = _AclnnOps()
        self._series: dict[tuple[str, str, str], int] = {}
        self._series_tags: list[tuple[str, str, str]] = []  # machine, monitor type, monitor id
        self._pending: dict[int, _Interval] = {}
        self._closed: dict[int, _Interval] = {}  # reduced, kept for late data
        self._dirty: set[int] = set()  # closed intervals late data changed: to write again
        self._closed_upto: int | None = None  # intervals below it are closed
        self._watermark: int | None = None

    # --- input ---------------------------------------------------------------------------

    def add(self, batches: Iterable[abi.Batch]) -> None:
        """Takes stored batches; closes the intervals the watermark has passed."""
        touched: set[int] = set()
        for b in batches:
            self._add(b, touched)
        self._dirty.update(iv for iv in touched if iv in self._closed)
        self._close()

    def tick(self) -> None:
        """Moves the watermark on to the wall clock: closes the intervals it has passed by
        the lateness, and writes again those late events have changed since the last tick."""
        now = self.clock_ns()
        if self._watermark is None or now > self._watermark:
            self._watermark = now
        self._close(rewrite=True)

    def next_close_ns(self) -> int:
        """The wall-clock time at which tick() next has an interval to close: the end of the
        first interval the clock has not closed yet, plus the lateness."""
        open_iv = (self.clock_ns() - self.lateness_ns) // self.interval_ns
        return (open_iv + 1) * self.interval_ns + self.lateness_ns

    def flush(self) -> None:
        """Closes every pending interval, and writes what late events changed (shutdown)."""
        self._close(rewrite=True, everything=True)

    def _sid(self, b: abi.Batch) -> int:
        key = (b.machine_id, _TYPE_NAMES.get(b.monitor_type, str(b.monitor_type)), b.monitor_id)
        sid = self._series.get(key)
        if sid is None:
            sid = self._series[key] = len(self._series_tags)
            self._series_tags.append(key)
        return sid

    def _slot(self, iv: int) -> _Interval | None:
        """Where data of interval iv goes; None when it is too late to count."""
        if self._closed_upto is None or iv >= self._closed_upto:
            return self._pending.setdefault(iv, _Interval())
        if iv in self._closed:
            return self._closed[iv]
        if iv < self._closed_upto - self.retain_intervals:
            return None
        # closed while it had no data yet (this batch was held back): written at the next tick
        return self._closed.setdefault(iv, _Interval())

    def _add(self, b: abi.Batch, touched: set[int]) -> None:
        self.stats.batches += 1
        sid = self._sid(b)
        mtype = self._series_tags[sid][1]
        ev = b.events
        n = len(ev)
        self.stats.events += n
        step = self.interval_ns
        if n:
            ts = ev["ts_ns"].astype(np.int64) + b.mono_to_real_ns
            last = int(ts.max())
            mark = min(last, self.clock_ns())
            if self._watermark is None or mark > self._watermark:
                self._watermark = mark
            self._add_calls(b, sid, mtype, ts, touched)
            self._add_memory(b, sid, mtype, ts, touched)
        else:
            last = self._watermark if self._watermark is not None else self.clock_ns()
        new = self.drops.delta(
            b.monitor_id, b.agent_pid, (b.kernel_drops, b.inflight_drops, b.send_drops)
        )
        if any(new):
            iv = last // step
            slot = self._slot(iv)
            if slot is None:
                return  # the interval is gone; DropCounter has moved on all the same
            acc = slot.drops.setdefault(sid, [0, 0, 0])
            for i in range(3):
                acc[i] += new[i]
            touched.add(iv)

    def _add_calls(
        self, b: abi.Batch, sid: int, mtype: str, ts: np.ndarray, touched: set[int]
    ) -> None:
        ev = b.events
        n = len(ev)
        iv = ts // self.interval_ns
        pid = ev["pid"].astype(np.int64)
        dev = device_codes(ev)
        func = ev["func"].astype(np.int64)
        if mtype == "ACL":
            func = self._aclnn.remap(ev, func)
        iv0 = int(iv.min())
        if int(iv.max()) - iv0 < 1 << 16:  # pid < 2**22 (the kernel's pid_max limit)
            key = ((iv - iv0) << 47) | (dev << 38) | (pid << 16) | func
            order = np.argsort(key, kind="stable")
            sk = key[order]
        else:  # a batch spanning days: rare, take the slower road
            order = np.lexsort((func, dev, pid, iv))
            sk = np.stack([iv[order], pid[order], dev[order], func[order]])
            sk = np.unique(sk, axis=1, return_inverse=True)[1].reshape(-1)
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        calls = np.diff(np.r_[starts, n])
        dur = ev["duration_ns"].astype(np.int64)[order]
        ret = ev["ret"][order]
        incomplete = (ev["flags"][order] & abi.EV_INCOMPLETE) != 0
        fo = func[order]
        ok = (ret == 0) & ~incomplete
        g = np.empty(len(starts), dtype=_GROUP)
        g["sid"] = sid
        g["iv"] = iv[order][starts]
        g["pid"] = pid[order][starts]
        g["dev"] = dev[order][starts]
        g["func"] = fo[starts]
        g["calls"] = calls
        g["errors"] = np.add.reduceat(((ret != 0) & ~incomplete).astype(np.int64), starts)
        g["dsum"] = np.add.reduceat(dur, starts)
        g["dmax"] = np.maximum.reduceat(dur, starts)
        copy_lut, alloc_lut = lookup(mtype, "copy"), lookup(mtype, "alloc")
        if "bytes" in (ev.dtype.names or ()):
            nbytes = ev["bytes"].astype(np.int64)[order]
            if mtype == "ACL":  # a 2-D copy moves width (bytes) times height (num)
                nbytes = np.where(_acl_2d()[fo], nbytes * ev["num"].astype(np.int64)[order],
                                  nbytes)  # fmt: skip
            copied = copy_lut[fo] & ok
            allocated = alloc_lut[fo] & ok & (ev["ptr"][order] != 0)
            g["copied"] = np.add.reduceat(np.where(copied, nbytes, 0), starts)
            g["allocated"] = np.add.reduceat(np.where(allocated, nbytes, 0), starts)
        else:
            g["copied"] = g["allocated"] = 0
        gidx = np.repeat(np.arange(len(starts), dtype=np.int64), calls)
        hk, hc = np.unique(gidx * _NB + bucket_of(dur), return_counts=True)
        hg = hk // _NB
        h = np.empty(len(hk), dtype=_HIST)
        for name in ("sid", "iv", "pid", "dev", "func"):
            h[name] = g[name][hg]
        h["bucket"] = hk % _NB
        h["count"] = hc
        # rows are in interval order: one slice per interval
        for part_g, part_h in _by_interval(g, h):
            i = int(part_g["iv"][0])
            slot = self._slot(i)
            if slot is None:
                self.stats.late_events += int(part_g["calls"].sum())
                continue
            slot.groups.append(part_g)
            slot.hist.append(part_h)
            touched.add(i)

    def _add_memory(
        self, b: abi.Batch, sid: int, mtype: str, ts: np.ndarray, touched: set[int]
    ) -> None:
        ev = b.events
        func = ev["func"]
        alloc = lookup(mtype, "alloc")[func]
        free = lookup(mtype, "free")[func]
        if not (alloc.any() or free.any()):
            return
        rows = ledger_rows(alloc, free, ev["ret"], ev["flags"], ts)
        dev = device_codes(ev)
        for i in rows.tolist():
            pid = int(ev["pid"][i])
            changes = self.memory.apply(
                (sid, pid), bool(alloc[i]), int(ev["ptr"][i]), int(ev["bytes"][i]), int(dev[i])
            )
            if not changes:
                continue
            iv = int(ts[i]) // self.interval_ns
            slot = self._slot(iv)
            if slot is None:
                continue  # the ledger has it; the point for that interval is gone
            for d, held in changes:
                acc = slot.memory.get((sid, pid, d))
                if acc is None:
                    slot.memory[(sid, pid, d)] = [held, held]
                else:
                    acc[0] = held
                    acc[1] = max(acc[1], held)
            touched.add(iv)

    # --- closing -------------------------------------------------------------------------

    def _close(self, *, rewrite: bool = False, everything: bool = False) -> None:
        points: list[Point] = []
        if rewrite:  # late data for intervals already written: merged, written again whole
            for iv in sorted(self._dirty):
                slot = self._closed[iv]
                _reduce_into(slot)
                points += self._points(iv, slot)
            self.stats.intervals_rewritten += len(self._dirty)
            self._dirty.clear()
        limit: int | None = None
        if everything:
            limit = max(self._pending, default=-1) + 1
        elif self._watermark is not None:
            limit = (self._watermark - self.lateness_ns) // self.interval_ns
        if limit is not None:
            for iv in sorted(i for i in self._pending if i < limit):
                slot = self._pending.pop(iv)
                _reduce_into(slot)
                points += self._points(iv, slot)
                self._closed[iv] = slot
                self.stats.intervals_closed += 1
            if self._closed_upto is None or limit > self._closed_upto:
                self._closed_upto = limit
            oldest = self._closed_upto - self.retain_intervals
            for iv in [i for i in self._closed if i < oldest and i not in self._dirty]:
                del self._closed[iv]
        if points:
            self.stats.points += len(points)
            self.sink(points)

    def _points(self, iv: int, slot: _Interval) -> list[Point]:
        t = iv * self.interval_ns
        out: list[Point] = []
        tags_of = self._series_tags
        if slot.groups:
            g, h = slot.groups[0], slot.hist[0]
            hstarts = (
                np.flatnonzero(np.r_[True, _key(h)[1:] != _key(h)[:-1]])
                if len(h)
                else np.zeros(0, dtype=np.int64)
            )
            hbounds = np.r_[hstarts, len(h)]
            for j, row in enumerate(g.tolist()):
                sid, _, pid, dev, func, calls, errors, dsum, dmax, copied, allocated = row
                machine, mtype, monitor = tags_of[sid]
                tags = (
                    *_device(dev),
                    ("function", self._aclnn.name(func, mtype)),
                    ("machine", machine),
                    ("monitor_id", monitor),
                    ("monitor_type", mtype),
                    ("pid", str(pid)),
                )
                hrows = h[hbounds[j] : hbounds[j + 1]]
                counts = dict(zip(hrows["bucket"].tolist(), hrows["count"].tolist(), strict=True))
                fields: dict[str, int | float] = {
                    "calls": calls,
                    "errors": errors,
                    "duration_sum_ns": dsum,
                    "duration_max_ns": dmax,
                    "duration_mean_ns": dsum / calls,
                    "bytes_copied": copied,
                    "bytes_allocated": allocated,
                }
                for name, q in (("p50_ns", 0.5), ("p95_ns", 0.95), ("p99_ns", 0.99)):
                    fields[name] = percentile(counts, q, dmax) or 0
                out.append(Point("xpu_calls", tags, fields, t))
                out.append(
                    Point(
                        "xpu_latency_hist", tags, {f"b{k}": v for k, v in sorted(counts.items())}, t
                    )
                )
        for (sid, pid, dev), (held, most) in sorted(slot.memory.items()):
            machine, mtype, monitor = tags_of[sid]
            out.append(
                Point(
                    "xpu_memory",
                    (
                        *_device(dev),
                        ("machine", machine),
                        ("monitor_id", monitor),
                        ("monitor_type", mtype),
                        ("pid", str(pid)),
                    ),
                    {"held_bytes": held, "held_max_bytes": most},
                    t,
                )
            )
        for sid, (k, i, s) in sorted(slot.drops.items()):
            machine, mtype, monitor = tags_of[sid]
            out.append(
                Point(
                    "xpu_drops",
                    (("machine", machine), ("monitor_id", monitor), ("monitor_type", mtype)),
                    {"kernel": k, "inflight": i, "send": s, "total": k + i + s},
                    t,
                )
            )
        return out


def _device(code: int) -> tuple[tuple[str, str], ...]:
    tag = device_tag(code)
    return () if tag is None else (("device", tag),)


def _key(a: np.ndarray) -> np.ndarray:
    """(sid, pid, dev, func) of each row as one sortable record array."""
    return a[["sid", "pid", "dev", "func"]]


def _by_interval(g: np.ndarray, h: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    if g["iv"][0] == g["iv"][-1]:
        return [(g, h)]
    gcut = np.flatnonzero(np.diff(g["iv"])) + 1
    hcut = np.flatnonzero(np.diff(h["iv"])) + 1
    return list(zip(np.split(g, gcut), np.split(h, hcut), strict=True))


def _reduce_into(slot: _Interval) -> None:
    """Merges slot's partial tables into one sorted, reduced table each."""
    slot.groups = [_reduce_groups(np.concatenate(slot.groups))] if slot.groups else []
    slot.hist = [_reduce_hist(np.concatenate(slot.hist))] if slot.hist else []


def _reduce_groups(g: np.ndarray) -> np.ndarray:
    order = np.lexsort((g["func"], g["dev"], g["pid"], g["sid"]))
    g = g[order]
    k = _key(g)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    if len(starts) == len(g):
        return g
    out = g[starts].copy()
    for name in ("calls", "errors", "dsum", "copied", "allocated"):
        out[name] = np.add.reduceat(g[name], starts)
    out["dmax"] = np.maximum.reduceat(g["dmax"], starts)
    return out


def _reduce_hist(h: np.ndarray) -> np.ndarray:
    order = np.lexsort((h["bucket"], h["func"], h["dev"], h["pid"], h["sid"]))
    h = h[order]
    k = h[["sid", "pid", "dev", "func", "bucket"]]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    if len(starts) == len(h):
        return h
    out = h[starts].copy()
    out["count"] = np.add.reduceat(h["count"], starts)
    return out


def points_lines(points: Sequence[Point]) -> list[str]:
    return [p.line() for p in points]
