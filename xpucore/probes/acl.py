"""The ACL probe (include/acl.h): Ascend's AscendCL runtime, aclop, aclmdl, aclnn and HCCL.

Ascend as msprof shows it: calls that enqueue a task (kernel launch, async copy or memset,
aclop, aclnn, aclmdlExecuteAsync, event record/wait, HCCL) submit to their NPU stream; HCCL's
collectives, point to point and barrier belong to their communicator. aclrtMallocHost and
aclrtFreeHost are host (pinned) memory, not device memory: aclrtFreeHost shares
aclrtFree's argument class, and is not a device free.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xpucore.probes.acl_names import ret_name
from xpucore.probes.schema import Probe

__all__ = ["ARGS", "EVERY_CALL", "FIELD", "PROBE", "TEXT"]

#: Which struct acl_event field holds each named argument (include/acl.h). Names follow the CANN
#: prototypes' parameters; op_type, model_path and config_path are text (the op_type field).
FIELD: Mapping[str, str] = MappingProxyType({
    "stream": "stream", "ptr": "ptr", "dst": "ptr", "src": "ptr2", "bytes": "bytes",
    "dest_max": "bytes2", "kind": "kind", "policy": "kind", "dpitch": "bytes2",
    "spitch": "handle", "width": "bytes", "height": "num", "value": "kind",
    "max_count": "bytes2", "func": "ptr", "num_blocks": "num", "args": "ptr2",
    "args_size": "bytes", "config": "handle", "args_handle": "ptr2", "op_type": "op_type",
    "num_inputs": "num", "num_outputs": "num2", "attr": "ptr", "handle": "ptr",
    "engine_type": "kind", "compile_flag": "op", "op_path": "ptr2", "model_path": "op_type",
    "model_id": "num", "input": "ptr", "output": "ptr2", "event": "ptr", "timeout": "num",
    "workspace": "ptr", "workspace_size": "bytes", "executor": "handle", "n_ranks": "num",
    "root_info": "ptr2", "rank": "rank", "comm": "handle", "send_buf": "ptr",
    "recv_buf": "ptr2", "count": "bytes", "data_type": "data_type", "reduce_op": "op",
    "buf": "ptr", "root": "rank", "peer": "rank", "send_count": "bytes",
    "send_type": "data_type", "recv_count": "bytes2", "recv_type": "data_type2",
    "send_counts": "bytes", "recv_counts": "bytes2", "items": "ptr", "item_num": "num",
    "config_path": "op_type", "device": "device", "py_stack": "py_stack",
})  # fmt: skip
#: The ACL arguments that are text (NUL-terminated in op_type), not integers.
TEXT = frozenset({"op_type", "model_path", "config_path"})
_MEMCPY = ("dst", "dest_max", "src", "bytes", "kind")
_MEMCPY_2D = ("dst", "dpitch", "src", "spitch", "width", "height", "kind")
_MEMSET = ("dst", "max_count", "value", "bytes")
_LAUNCH = ("func", "num_blocks", "args", "args_size")
_OP = ("op_type", "num_inputs", "num_outputs", "attr")
_MDL = ("model_id", "input", "output")
#: Argument names per ACL argument class, in call order.
ARGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "NONE": (),
    "INIT": ("config_path",),
    "SET_DEVICE": (),
    "GET_DEVICE": (),  # never an event: the probe keeps what it returns as the thread's device
    "CREATE_STREAM": ("stream",),
    "MALLOC": ("ptr", "bytes", "policy"),
    "MALLOC_HOST": ("ptr", "bytes"),
    "FREE": ("ptr",),
    "MEMCPY": _MEMCPY,
    "MEMCPY_ASYNC": (*_MEMCPY, "stream"),
    "MEMCPY_2D": _MEMCPY_2D,
    "MEMCPY_2D_ASYNC": (*_MEMCPY_2D, "stream"),
    "MEMSET": _MEMSET,
    "MEMSET_ASYNC": (*_MEMSET, "stream"),
    "LAUNCH": (*_LAUNCH, "stream"),
    "LAUNCH_V2": (*_LAUNCH, "config", "stream"),
    "LAUNCH_CONFIG": ("func", "num_blocks", "stream", "config", "args_handle"),
    "OP_EXECUTE": (*_OP, "stream"),
    "OP_EXEC_HANDLE": ("handle", "num_inputs", "num_outputs", "stream"),
    "OP_COMPILE_EXECUTE": (*_OP, "engine_type", "compile_flag", "op_path", "stream"),
    "MDL_LOAD_FILE": ("model_path", "model_id"),
    "MDL_EXECUTE": _MDL,
    "MDL_EXECUTE_ASYNC": (*_MDL, "stream"),
    "EVENT_RECORD": ("event", "stream"),
    "STREAM_WAIT_EVENT": ("stream", "event"),
    "EVENT": ("event",),
    "STREAM": ("stream",),
    "STREAM_TIMEOUT": ("stream", "timeout"),
    "NN_LAUNCH": ("op_type", "workspace", "workspace_size", "executor", "stream"),
    "HCCL_INIT_ROOT": ("n_ranks", "root_info", "rank", "comm"),
    "HCCL_REDUCE": ("send_buf", "recv_buf", "count", "data_type", "reduce_op", "comm", "stream"),
    "HCCL_GATHER": ("send_buf", "recv_buf", "count", "data_type", "comm", "stream"),
    "HCCL_BROADCAST": ("buf", "count", "data_type", "root", "comm", "stream"),
    "HCCL_P2P": ("buf", "count", "data_type", "peer", "comm", "stream"),
    "HCCL_ALLTOALL": ("send_buf", "send_count", "send_type", "recv_buf", "recv_count",
                      "recv_type", "comm", "stream"),
    "HCCL_ALLTOALLV": ("send_buf", "send_counts", "send_type", "recv_buf", "recv_counts",
                       "recv_type", "comm", "stream"),
    "HCCL_BATCH": ("items", "item_num", "comm", "stream"),
    "HCCL_BARRIER": ("comm", "stream"),
})  # fmt: skip
#: Arguments every ACL event has after its call's own (as the CUDA probe's EVERY_CALL).
EVERY_CALL = ("device", "py_stack")

_HCCL = frozenset({"HCCL_REDUCE", "HCCL_GATHER", "HCCL_BROADCAST", "HCCL_P2P", "HCCL_ALLTOALL",
                   "HCCL_ALLTOALLV", "HCCL_BATCH", "HCCL_BARRIER"})  # fmt: skip

PROBE = Probe(
    monitor_type="ACL",
    fields=FIELD,
    args=ARGS,
    every_call=EVERY_CALL,
    text=TEXT,
    copies=frozenset({"MEMCPY", "MEMCPY_ASYNC", "MEMCPY_2D", "MEMCPY_2D_ASYNC"}),
    allocates=frozenset({"MALLOC"}),  # aclrtMalloc, aclrtMallocCached
    frees=frozenset({"FREE"}),
    host_memory=frozenset({"aclrtFreeHost"}),  # aclrtMallocHost has a class of its own
    submits=frozenset(
        {
            "LAUNCH",
            "LAUNCH_V2",
            "LAUNCH_CONFIG",
            "MEMCPY_ASYNC",
            "MEMCPY_2D_ASYNC",
            "MEMSET_ASYNC",
            "OP_EXECUTE",
            "OP_EXEC_HANDLE",
            "OP_COMPILE_EXECUTE",
            "MDL_EXECUTE_ASYNC",
            "EVENT_RECORD",
            "STREAM_WAIT_EVENT",
            "NN_LAUNCH",
            *_HCCL,
        }
    ),
    grouped=_HCCL,
    # CANN: the runtime (libacl_rt, or libascendcl in older CANN), aclop's compiler, the
    # aclnn operators (libopapi, libaclnn_*, custom ops), HCCL (agent_c/acl_probe.c, acl_libs)
    libraries=(
        "libacl_rt.so*",
        "libascendcl.so*",
        "libacl_op_compiler.so*",
        "libopapi.so*",
        "libcust_opapi.so*",
        "libaclnn_*.so*",
        "libhccl.so*",
    ),
    device_label="NPU",
    ret_name=ret_name,
)
