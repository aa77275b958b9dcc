"""What each monitor type's events mean for a trace's layout.

A trace draws every call as a slice on its thread. Beyond that, a monitor type says which
calls submit work to an asynchronous queue (a CUDA stream, an ACL stream, an HCCL
communicator's stream) and which argument names the queue, which calls also show on a row
of their group (an HCCL collective on its communicator's row), which calls allocate or free
device memory, and how return codes read. New monitor types add a Layout here; the writers
do not change.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from trace_export import acl_names
from trace_export.cuda_errors import error_name
from trace_export.events import EventChunk, event_class

__all__ = ["DEVICE_SHIFT", "LAYOUTS", "Layout", "MemoryHeld", "display_args", "group_values",
           "layout_for", "queue_values"]  # fmt: skip


def _never(event_type: str) -> bool:
    return False


@dataclass(frozen=True)
class Layout:
    api: str  # shown in track names: "CUDA stream 0x...", "CUDA device memory"
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


# NCCL collectives and point-to-point calls enqueue on their stream too, and show on a row
# per communicator, as HCCL's do (ncclCommInitRank and ncclCommDestroy do neither).
_NCCL_COLLECTIVE = {"NCCL_REDUCE", "NCCL_GATHER", "NCCL_BCAST", "NCCL_SEND", "NCCL_RECV"}
_CUDA_SUBMIT = {"LAUNCH", "LAUNCH_EX", "CU_LAUNCH", "MEMCPY_ASYNC", "CU_MEMCPY_ASYNC",
                "ALLOC_ASYNC", "FREE_ASYNC", "EVENT_RECORD", "GRAPH_LAUNCH",
                *_NCCL_COLLECTIVE}  # fmt: skip


_MEMCPY_KIND = {0: "HostToHost", 1: "HostToDevice", 2: "DeviceToHost", 3: "DeviceToDevice",
                4: "Default"}  # fmt: skip  (cudaMemcpyKind, driver_types.h)


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
    "CUDA": Layout(
        api="CUDA",
        queue_arg="stream",
        queue_label=_cuda_stream,
        submits=lambda t: event_class("CUDA", t) in _CUDA_SUBMIT,
        allocates=lambda t: event_class("CUDA", t) in {"ALLOC", "ALLOC_ASYNC", "ALLOC_MANAGED"},
        frees=lambda t: event_class("CUDA", t) in {"FREE", "FREE_ASYNC"},
        ret_name=error_name,
        pointers=frozenset({"func", "dst", "src", "ptr", "stream", "event", "graph_exec",
                            "sendbuff", "recvbuff", "comm", "comm_id"}),
        strings=(
            ("grid", ("grid_x", "grid_y", "grid_z"), _dim3),
            ("block", ("block_x", "block_y", "block_z"), _dim3),
            ("kind", ("kind",), lambda k: _MEMCPY_KIND.get(k, str(k))),
        ),
        device_arg="device",
        grouped=lambda t: event_class("CUDA", t) in _NCCL_COLLECTIVE,
        group_arg="comm",
        group_label=lambda v: f"GPU {v >> DEVICE_SHIFT} NCCL communicator "
                              f"{v & ((1 << DEVICE_SHIFT) - 1):#x}",
    ),
}


# Ascend as msprof shows it: AscendCL/CANN calls on their threads; a row per NPU stream with a
# flow from each call that enqueues a task (kernel launch, async copy or memset, aclop, aclnn,
# aclmdlExecuteAsync, event record/wait, HCCL); a row per HCCL communicator where a rank's
# collectives show together. aclrtMallocHost and aclrtFreeHost are host (pinned) memory, not
# counted as device memory.
# HCCL's collectives, point to point and barrier: on their communicator's row too
_ACL_GROUPED = {"HCCL_REDUCE", "HCCL_GATHER", "HCCL_BROADCAST", "HCCL_P2P", "HCCL_ALLTOALL",
                "HCCL_ALLTOALLV", "HCCL_BATCH", "HCCL_BARRIER"}  # fmt: skip
_ACL_SUBMIT = {"LAUNCH", "LAUNCH_V2", "LAUNCH_CONFIG", "MEMCPY_ASYNC", "MEMCPY_2D_ASYNC",
               "MEMSET_ASYNC", "OP_EXECUTE", "OP_EXEC_HANDLE", "OP_COMPILE_EXECUTE",
               "MDL_EXECUTE_ASYNC", "EVENT_RECORD", "STREAM_WAIT_EVENT", "NN_LAUNCH",
               "HCCL_REDUCE", "HCCL_GATHER", "HCCL_BROADCAST", "HCCL_P2P", "HCCL_ALLTOALL",
               "HCCL_ALLTOALLV", "HCCL_BATCH", "HCCL_BARRIER"}  # fmt: skip

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


LAYOUTS["ACL"] = Layout(
    api="ACL",
    queue_arg="stream",
    queue_label=_npu_stream,
    submits=lambda t: event_class("ACL", t) in _ACL_SUBMIT,
    allocates=lambda t: event_class("ACL", t) == "MALLOC",  # aclrtMalloc, aclrtMallocCached
    frees=lambda t: t == "aclrtFree",  # not aclrtFreeHost, of the same class
    ret_name=acl_names.ret_name,
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
    grouped=lambda t: event_class("ACL", t) in _ACL_GROUPED,
    group_arg="comm",
    group_label=_hccl_comm,
)


def _errno(event_type: str, ret: int) -> str:
    """A syscall's return: the errno's name when it failed (-ENOENT: "ENOENT (-2)")."""
    name = errno.errorcode.get(-ret) if ret < 0 else None
    return f"{name} ({ret})" if name else str(ret)


LAYOUTS["SYSCALL"] = Layout(
    api="syscall", queue_arg=None, queue_label=str, submits=lambda t: False,
    allocates=lambda t: False, frees=lambda t: False, ret_name=_errno,
)  # fmt: skip


def layout_for(monitor_type: str) -> Layout:
    """The layout of a monitor type; one with only thread slices for types without one."""
    return LAYOUTS.get(monitor_type) or Layout(
        api=monitor_type, queue_arg=None, queue_label=str, submits=lambda t: False,
        allocates=lambda t: False, frees=lambda t: False, ret_name=lambda t, r: str(r),
    )  # fmt: skip


class MemoryHeld:
    """Device memory each process holds, from its allocations and frees so far."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, int], dict[int, int]] = {}  # (machine, pid) -> {ptr: size}
        self.held: dict[tuple[str, int], int] = {}

    def update(self, c: EventChunk, layout: Layout) -> list[tuple[int, str, int, str, int]]:
        """(end time, machine, pid, comm, bytes held after) for each successful allocation
        and each free of a known pointer in the chunk, in end-time order."""
        alloc = np.array([layout.allocates(t) for t in c.names], dtype=bool)[c.name]
        free = np.array([layout.frees(t) for t in c.names], dtype=bool)[c.name]
        rows = np.flatnonzero((alloc & (c.ret == 0)) | free)
        if not len(rows) or "ptr" not in c.args:
            return []
        rows = rows[np.argsort(c.ts[rows] + c.dur[rows], kind="stable")]
        ptr, size = c.args["ptr"], c.args.get("bytes", np.zeros(len(c), np.uint64))
        out = []
        for i in rows.tolist():
            key = (c.machines[c.machine[i]], int(c.pid[i]))
            live = self.live.setdefault(key, {})
            p = int(ptr[i])
            if alloc[i]:
                if not p:
                    continue
                live[p] = int(size[i])
                delta = int(size[i])
            else:
                delta = -live.pop(p, 0)
            if delta:
                held = self.held[key] = self.held.get(key, 0) + delta
                out.append((int(c.ts[i] + c.dur[i]), key[0], key[1], c.comms[c.comm[i]], held))
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
