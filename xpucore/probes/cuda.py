"""The CUDA probe (include/cuda.h): CUDA runtime and driver API calls, and NCCL's."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xpucore.probes.cuda_errors import error_name
from xpucore.probes.schema import Probe

__all__ = ["ARGS", "EVERY_CALL", "FIELD", "PROBE"]

#: Which struct cuda_event field holds each named argument (include/cuda.h); the dim3s
#: grid and block are the grid_* and block_* fields.
FIELD: Mapping[str, str] = MappingProxyType({
    "func": "ptr", "dst": "ptr", "src": "ptr2", "ptr": "ptr", "event": "ptr",
    "graph_exec": "ptr", "bytes": "bytes", "shared_mem": "bytes", "kind": "kind",
    "flags": "kind", "stream": "stream", "device": "device", "py_stack": "py_stack",
    # NCCL; comm_id: the first 8 bytes of commId
    "sendbuff": "ptr", "recvbuff": "ptr2", "count": "bytes", "datatype": "kind",
    "op": "grid_x", "root": "grid_y", "peer": "grid_y", "nranks": "grid_z",
    "comm_id": "ptr2", "rank": "block_z", "comm": "handle",
})  # fmt: skip
_NCCL_BUFFERS = ("sendbuff", "recvbuff", "count", "datatype")
_LAUNCH = ("func", "grid", "block", "shared_mem", "stream")
_MEMCPY_ASYNC = ("dst", "src", "bytes", "kind", "stream")
#: Argument names per CUDA argument class, in call order.
ARGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "NONE": (),
    "LAUNCH": _LAUNCH,
    "LAUNCH_EX": _LAUNCH,
    "CU_LAUNCH": _LAUNCH,
    "MEMCPY": ("dst", "src", "bytes", "kind"),
    "MEMCPY_ASYNC": _MEMCPY_ASYNC,
    "CU_MEMCPY_ASYNC": _MEMCPY_ASYNC,
    "ALLOC": ("ptr", "bytes"),
    "ALLOC_ASYNC": ("ptr", "bytes", "stream"),
    "ALLOC_MANAGED": ("ptr", "bytes", "flags"),
    "FREE": ("ptr",),
    "FREE_ASYNC": ("ptr", "stream"),
    "STREAM": ("stream",),
    "EVENT_RECORD": ("event", "stream"),
    "EVENT": ("event",),
    "GRAPH_LAUNCH": ("graph_exec", "stream"),
    "SET_DEVICE": (),
    "GET_DEVICE": (),  # never an event: the probe keeps what it returns as the thread's device
    "NCCL_REDUCE": (*_NCCL_BUFFERS, "op", "comm", "stream"),
    "NCCL_GATHER": (*_NCCL_BUFFERS, "comm", "stream"),
    "NCCL_BCAST": (*_NCCL_BUFFERS, "root", "comm", "stream"),
    "NCCL_SEND": ("sendbuff", "count", "datatype", "peer", "comm", "stream"),
    "NCCL_RECV": ("recvbuff", "count", "datatype", "peer", "comm", "stream"),
    "NCCL_INIT": ("comm", "nranks", "comm_id", "rank"),  # comm: the one created, 0 on failure
    "NCCL_COMM": ("comm",),
})  # fmt: skip

#: Arguments every CUDA event has after its call's own: the device it ran on, and the key of
#: the calling thread's Python stack (0: none; XPU_BATCH_STACKS batches carry the stacks).
EVERY_CALL = ("device", "py_stack")

# NCCL collectives and point-to-point calls enqueue on their stream, and belong to their
# communicator (ncclCommInitRank and ncclCommDestroy do neither).
_NCCL_COLLECTIVE = frozenset({"NCCL_REDUCE", "NCCL_GATHER", "NCCL_BCAST", "NCCL_SEND",
                              "NCCL_RECV"})  # fmt: skip

PROBE = Probe(
    monitor_type="CUDA",
    fields=FIELD,
    args=ARGS,
    every_call=EVERY_CALL,
    dim3=frozenset({"grid", "block"}),
    copies=frozenset({"MEMCPY", "MEMCPY_ASYNC", "CU_MEMCPY_ASYNC"}),
    allocates=frozenset({"ALLOC", "ALLOC_ASYNC", "ALLOC_MANAGED"}),
    frees=frozenset({"FREE", "FREE_ASYNC"}),
    submits=frozenset(
        {
            "LAUNCH",
            "LAUNCH_EX",
            "CU_LAUNCH",
            "MEMCPY_ASYNC",
            "CU_MEMCPY_ASYNC",
            "ALLOC_ASYNC",
            "FREE_ASYNC",
            "EVENT_RECORD",
            "GRAPH_LAUNCH",
            *_NCCL_COLLECTIVE,
        }
    ),
    grouped=_NCCL_COLLECTIVE,
    # the runtime (libcudart), the driver (libcuda) and NCCL: agent_c/cuda_probe.c,
    # cuda_library_match
    libraries=("libcudart*.so*", "libcuda.so*", "libnccl*.so*"),
    device_label="GPU",
    ret_name=error_name,
)
