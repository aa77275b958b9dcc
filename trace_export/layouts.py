"""What each monitor type's events mean for a trace's layout.

A trace draws every call as a slice on its thread. Beyond that, a monitor type says which
calls submit work to an asynchronous queue (a CUDA stream, an ACL stream, an HCCL
communicator's stream) and which argument names the queue, which calls also show on a row
of their group (an HCCL collective on its communicator's row), which calls allocate or free
device memory, and how return codes read: all of that is the probe's schema
(xpucore.probes, xpucore.calls); a Layout adds how a trace shows it (track names, pointers,
named codes). New monitor types add a Layout here; the writers do not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from trace_export.events import EventChunk
from xpucore import calls
from xpucore.memory import MemoryLedger, ledger_rows
from xpucore.probes import acl_names, probe_for

__all__ = ["DEVICE_SHIFT", "LAYOUTS", "Layout", "MemoryHeld", "display_args", "group_values",
           "layout_for", "queue_values"]  # fmt: skip


def _never(event_type: str) -> bool:
    return False


@dataclass(frozen=True)
class Layout:
    api: str  # shown in track names: "CUDA stream 0x...", "GPU 0 CUDA device memory"
    queue_arg: str | None  # the argument naming a call's queue ("stream")
    queue_label: Callable[[int], str]  # of a queue value (see queue_values)
    submits: Callable[[str], bool]  # the call enqueues work on its queue
    allocates: Callable[[str], bool]  # argument "ptr" gets "bytes" of device memory
    frees: Callable[[str], bool]  # argument "ptr" is given back
    ret_name: Callable[[str, int], str]
    # arguments shown as pointers (hex in the UI)
    pointers: frozenset[str] = frozenset()
    # arguments shown together as one string: name -> (argument columns, format)
    strings: tuple[tuple[str, tuple[str, ...], Callable[..., str]], ...] = ()
    # the argument naming the device a call ran on, when queues are per device
    device_arg: str | None = None
    # calls that also show, as slices, on a row per value of group_arg (per device too)
    grouped: Callable[[str], bool] = _never
    group_arg: str | None = None  # "comm": an HCCL communicator
    group_label: Callable[[int], str] = str  # of a group value (see group_values)
    device_label: str | None = None  # what devices are called ("GPU"), None: not named

    def memory_track(self, device: int | None) -> str:
        """The name of a process's device memory counter on a device ("GPU 0 CUDA device
        memory"; without the device where the monitor type names none)."""
        if self.device_label is None or device is None:
            return f"{self.api} device memory"
        return f"{self.device_label} {device} {self.api} device memory"


def _of_kind(monitor_type: str, kind: str) -> Callable[[str], bool]:
    """Whether an event type's function is of a kind (xpucore.calls.KINDS)."""
    return lambda t: calls.is_kind(monitor_type, kind, t)


def _probe_layout(monitor_type: str, api: str, **shown: object) -> Layout:
    """A Layout whose meaning is the probe's schema, with how a trace shows it (shown)."""
    p = probe_for(monitor_type)
    return Layout(
        api=api,
        submits=_of_kind(monitor_type, "submit"),
        allocates=_of_kind(monitor_type, "alloc"),
        frees=_of_kind(monitor_type, "free"),
        ret_name=p.ret_name,
        grouped=_of_kind(monitor_type, "grouped"),
        device_label=p.device_label,
        **shown,  # type: ignore[arg-type]
    )


DEVICE_SHIFT = 48  # a queue value: the device above this bit, the queue handle below


def queue_values(layout: Layout, args: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Each call's queue as one integer: the queue argument, and the device in the top bits
    where the monitor type has one (stream 0 of GPU 1 is not stream 0 of GPU 0)."""
    return _per_device(layout, args, layout.queue_arg)


def group_values(layout: Layout, args: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Each call's group (see Layout.grouped) as one integer, as queue_values."""
    return _per_device(layout, args, layout.group_arg)


def _per_device(layout: Layout, args: Mapping[str, np.ndarray],
                arg: str | None) -> np.ndarray | None:  # fmt: skip
    if arg is None or arg not in args:
        return None
    q = args[arg].astype(np.uint64) & np.uint64((1 << DEVICE_SHIFT) - 1)
    if layout.device_arg is not None and layout.device_arg in args:
        dev = np.minimum(args[layout.device_arg].astype(np.uint64), np.uint64(0xFFFF))
        q |= dev << np.uint64(DEVICE_SHIFT)
    return q


_MEMCPY_KIND = {
    0: "HostToHost",
    1: "HostToDevice",
    2: "DeviceToHost",
    3: "DeviceToDevice",
    4: "Default",
}  # fmt: skip  (cudaMemcpyKind, driver_types.h)


def _dim3(x: int, y: int, z: int) -> str:
    return f"({x}, {y}, {z})"


def _cuda_stream(v: int) -> str:
    gpu, stream = f"GPU {v >> DEVICE_SHIFT}", v & ((1 << DEVICE_SHIFT) - 1)
    if stream == 0:
        return f"{gpu} CUDA stream 0 (legacy default)"
    if stream == 2:
        return f"{gpu} CUDA stream per-thread default"
    return f"{gpu} CUDA stream {stream:#x}"


LAYOUTS: dict[str, Layout] = {
    "CUDA": _probe_layout(
        "CUDA",
        api="CUDA",
        queue_arg="stream",
        queue_label=_cuda_stream,
        pointers=frozenset(
            {
                "func",
                "dst",
                "src",
                "ptr",
                "stream",
                "event",
                "graph_exec",
                "sendbuff",
                "recvbuff",
                "comm",
                "comm_id",
            }
        ),
        strings=(
            ("grid", ("grid_x", "grid_y", "grid_z"), _dim3),
            ("block", ("block_x", "block_y", "block_z"), _dim3),
            ("kind", ("kind",), lambda k: _MEMCPY_KIND.get(k, str(k))),
        ),
        device_arg="device",
        group_arg="comm",
        group_label=lambda v: (
            f"GPU {v >> DEVICE_SHIFT} NCCL communicator {v & ((1 << DEVICE_SHIFT) - 1):#x}"
        ),
    ),
}


# Ascend as msprof shows it: a row per NPU stream, a row per HCCL communicator.
_ACL_POINTERS = frozenset({"stream", "ptr", "dst", "src", "func", "args", "config",
                           "args_handle", "attr", "handle", "op_path", "input", "output",
                           "event", "workspace", "executor", "root_info", "comm", "send_buf",
                           "recv_buf", "buf", "send_counts", "recv_counts", "items"})  # fmt: skip


def _npu_stream(v: int) -> str:
    npu, stream = f"NPU {v >> DEVICE_SHIFT}", v & ((1 << DEVICE_SHIFT) - 1)
    return f"{npu} stream {stream:#x}" if stream else f"{npu} stream 0 (default)"


def _hccl_comm(v: int) -> str:
    return f"NPU {v >> DEVICE_SHIFT} HCCL communicator {v & ((1 << DEVICE_SHIFT) - 1):#x}"


def _named(table: dict[int, str]) -> Callable[[int], str]:
    return lambda v: acl_names.name_of(table, v)


LAYOUTS["ACL"] = _probe_layout(
    "ACL",
    api="ACL",
    queue_arg="stream",
    queue_label=_npu_stream,
    pointers=_ACL_POINTERS,
    strings=(
        ("kind", ("kind",), _named(acl_names.MEMCPY_KINDS)),
        ("policy", ("policy",), acl_names.policy_name),
        ("engine_type", ("engine_type",), _named(acl_names.ENGINE_TYPES)),
        ("compile_flag", ("compile_flag",), _named(acl_names.COMPILE_TYPES)),
        ("data_type", ("data_type",), _named(acl_names.DATA_TYPES)),
        ("send_type", ("send_type",), _named(acl_names.DATA_TYPES)),
        ("recv_type", ("recv_type",), _named(acl_names.DATA_TYPES)),
        ("reduce_op", ("reduce_op",), _named(acl_names.REDUCE_OPS)),
    ),
    device_arg="device",
    group_arg="comm",
    group_label=_hccl_comm,
)


LAYOUTS["SYSCALL"] = _probe_layout("SYSCALL", api="syscall", queue_arg=None, queue_label=str)


def layout_for(monitor_type: str) -> Layout:
    """The layout of a monitor type; one with only thread slices for types without one."""
    return LAYOUTS.get(monitor_type) or Layout(
        api=monitor_type, queue_arg=None, queue_label=str, submits=lambda t: False,
        allocates=lambda t: False, frees=lambda t: False, ret_name=lambda t, r: str(r),
    )  # fmt: skip


class MemoryHeld:
    """Device memory each process holds on each device: xpucore.memory's ledger (the one
    Grafana's aggregates count with) over the chunks' allocations and frees."""

    def __init__(self) -> None:
        self.ledger = MemoryLedger()
        self.last: dict[tuple[str, int, int | None], int] = {}  # the last point's time

    def update(self, c: EventChunk,
               layout: Layout) -> list[tuple[int, str, int, str, int | None, int]]:  # fmt: skip
        """(time, machine, pid, comm, device, bytes held there after) for each change the
        chunk's calls make, in the order the ledger applies them (start time); a point is
        at its call's end, or at the previous point of its track when that is later.
        device: None where the monitor type names no device."""
        alloc = np.array([layout.allocates(t) for t in c.names], dtype=bool)[c.name]
        free = np.array([layout.frees(t) for t in c.names], dtype=bool)[c.name]
        if "ptr" not in c.args or not (alloc.any() or free.any()):
            return []
        rows = ledger_rows(alloc, free, c.ret, c.flags, c.ts)
        ptr, size = c.args["ptr"], c.args.get("bytes", np.zeros(len(c), np.uint64))
        dev_arg = layout.device_arg
        device = c.args.get(dev_arg) if dev_arg is not None else None
        out = []
        for i in rows.tolist():
            key = (c.machines[c.machine[i]], int(c.pid[i]))
            dev = int(device[i]) if device is not None else 0
            for d, held in self.ledger.apply(key, bool(alloc[i]), int(ptr[i]), int(size[i]),
                                             dev):  # fmt: skip
                shown = d if device is not None else None
                track = (*key, shown)
                t = max(int(c.ts[i] + c.dur[i]), self.last.get(track, 0))
                self.last[track] = t
                out.append((t, key[0], key[1], c.comms[c.comm[i]], shown, held))
        return out


def display_args(layout: Layout, names: tuple[str, ...],
                 values: dict[str, int]) -> dict[str, object]:  # fmt: skip
    """Arguments as a trace shows them (for JSON): joined strings, pointers in hex."""
    out: dict[str, object] = {}
    shown: set[str] = set()
    for a in names:
        if a in shown:
            continue
        joined = [(n, cols, fmt) for n, cols, fmt in layout.strings
                  if a in cols and set(cols) <= set(names)]  # fmt: skip
        if joined:
            n, cols, fmt = joined[0]
            out[n] = fmt(*(values[c] for c in cols))
            shown |= set(cols)
        elif a in layout.pointers:
            out[a] = hex(values[a])
        else:
            out[a] = values[a]
    return out
