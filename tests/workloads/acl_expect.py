"""What acl_calls makes, call by call: the Ascend tests' ground truth.

Mirrors acl_calls.c and acl_calls_hccl.cc round by round. Thread t makes
iters * (t + 1) rounds; each round is the list _round(t, i) gives, in order.
Arguments are named as in the CANN headers' prototypes, and only those that
matter are given: byte and element counts, copy kinds, devices, data types,
reduce ops, ranks, streams, events, op types, handles. A value the stand-ins
hand out (an allocation, an aclnn executor, a workspace size) is Out(symbol,
param): what that call of the same thread and round wrote through param.
ret is what the stand-ins return (with XPU_FAKE_ACL_SYNC_US below 1000 * (1000
+ t), so aclrtSynchronizeStreamWithTimeout does not time out).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = [
    "ACL_ERROR_INVALID_PARAM",
    "ACL_ERROR_REPEAT_INITIALIZE",
    "HCCL_E_PARA",
    "LIBRARIES",
    "Call",
    "Out",
    "expected_acl_calls",
    "expected_counts",
    "library_of",
]

ACL_SUCCESS, ACL_ERROR_INVALID_PARAM, ACL_ERROR_REPEAT_INITIALIZE = 0, 100000, 100002
HCCL_SUCCESS, HCCL_E_PARA = 0, 1
RANKS = 8

# aclrtMemcpyKind, aclopEngineType, aclopCompileType, aclrtMemMallocPolicy values used
HOST_TO_DEVICE, DEVICE_TO_HOST, DEVICE_TO_DEVICE = 1, 2, 3
ACL_MEM_MALLOC_NORMAL_ONLY = 2
ACL_COMPILE_SYS, ACL_COMPILE_UNREGISTERED = 0, 1
# HcclDataType of round i: types[i % 4]; HcclReduceOp of round i: i % 4 (SUM, PROD, MAX, MIN)
HCCL_TYPES = (4, 3, 11, 2)  # FP32, FP16, BFP16, INT32
OP_TYPES = ("Add", "MatMul", "Cast")  # aclopExecuteV2, aclopCompileAndExecute, ...WithHandle
COMPILED_OP_TYPES = ("Mul", "BatchMatMul", "Transpose")  # aclopCompileAndExecuteV2
ADD_WORKSPACE, MATMUL_WORKSPACE = 0, 2 << 20

# Which library exports each symbol, in the two layouts the stand-ins are built in:
# "rt" (current CANN: runtime in libacl_rt.so) and "compat" (all of AscendCL in libascendcl.so).
_ASCENDCL = {
    "aclInit",
    "aclopExecuteV2",
    "aclopExecWithHandle",
    "aclmdlLoadFromFile",
    "aclmdlExecute",
    "aclmdlExecuteAsync",
}
_OP_COMPILER = {"aclopCompileAndExecute", "aclopCompileAndExecuteV2"}
LIBRARIES = ("libacl_rt.so", "libascendcl.so", "libacl_op_compiler.so", "libhccl.so", "libopapi.so")


def library_of(symbol: str, layout: str = "rt") -> str:
    """The library acl_calls' symbol comes from, in layout "rt" or "compat"."""
    if symbol.startswith("Hccl"):
        return "libhccl.so"
    if symbol.startswith("aclnn"):
        return "libopapi.so"
    if symbol in _OP_COMPILER:
        return "libacl_op_compiler.so"
    if symbol in _ASCENDCL or layout == "compat":
        return "libascendcl.so"
    return "libacl_rt.so"


@dataclass(frozen=True)
class Out:
    """What call `symbol` of the same thread and round wrote through its parameter `param`."""

    symbol: str
    param: str


@dataclass(frozen=True)
class Call:
    thread: int
    round: int
    symbol: str
    args: dict = field(hash=False)
    ret: int = 0


def _fake(base: int, t: int, i: int) -> int:
    return base + t * 0x1000 + i


def _round(t: int, i: int) -> list[Call]:
    stream = 0x5000 + t * 0x100 + i % 3
    event = 0x8000 + t * 0x100 + i % 4
    dev = 0xA0000000 + t * 0x100000 + i * 0x1000
    host = 0x40000000 + t * 0x100000 + i * 0x1000
    n = 256 * (t + 1) + i
    func = 0x3000 + t * 0x10 + i % 2
    blocks = t + 2 + i % 5
    inputs = 1 if i % 3 == 2 else 2
    op_args = dict(numInputs=inputs, numOutputs=1, attr=_fake(0x7300000, t, i), stream=stream)
    model = 100 + t * 10 + i % 3
    datasets = dict(input=_fake(0x7800000, t, i), output=_fake(0x7900000, t, i))
    tensors = (
        _fake(0x7700000, t, 16 * i),
        _fake(0x7700000, t, 16 * i + 1),
        _fake(0x7700000, t, 16 * i + 2),
    )
    c = lambda sym, ret=0, **args: Call(t, i, sym, args, ret)  # noqa: E731
    return [
        c("aclInit", ACL_ERROR_REPEAT_INITIALIZE, configPath=None),
        c("aclrtSetDevice", ACL_ERROR_INVALID_PARAM, deviceId=64 + t),
        c("aclrtSetDevice", deviceId=(t + i) % 4),
        c("aclrtCreateStream"),
        c("aclrtMalloc", size=4096 * (t + 1) + i, policy=i % 3),
        c("aclrtMallocCached", size=8192 + 64 * t + i, policy=ACL_MEM_MALLOC_NORMAL_ONLY),
        c("aclrtMallocHost", size=1024 * (t + 1) + i),
        c("aclrtMemcpy", dst=dev, destMax=n + 64, src=host, count=n, kind=HOST_TO_DEVICE),
        c(
            "aclrtMemcpyAsync",
            dst=host,
            destMax=n + 65,
            src=dev,
            count=n + 1,
            kind=DEVICE_TO_HOST,
            stream=stream,
        ),
        c(
            "aclrtMemcpy2d",
            dst=dev,
            dpitch=512 + t,
            src=dev + 0x800,
            spitch=640 + i % 5,
            width=256 + t,
            height=8 + i % 4,
            kind=DEVICE_TO_DEVICE,
        ),
        c(
            "aclrtMemcpy2dAsync",
            dst=dev,
            dpitch=1024 + t,
            src=host,
            spitch=768 + i % 5,
            width=512 + t,
            height=4 + i % 4,
            kind=HOST_TO_DEVICE,
            stream=stream,
        ),
        c("aclrtMemset", devPtr=dev, maxCount=n + 32, value=(t * 16 + i) % 256, count=n),
        c(
            "aclrtMemsetAsync",
            devPtr=dev,
            maxCount=n + 32,
            value=(t * 16 + i + 1) % 256,
            count=n + 2,
            stream=stream,
        ),
        c(
            "aclrtLaunchKernel",
            funcHandle=func,
            numBlocks=blocks,
            argsData=_fake(0x7400000, t, i),
            argsSize=64 + 8 * t,
            stream=stream,
        ),
        c(
            "aclrtLaunchKernelV2",
            funcHandle=func,
            numBlocks=blocks + 1,
            argsData=_fake(0x7400000, t, i),
            argsSize=72 + 8 * t,
            stream=stream,
        ),
        c(
            "aclrtLaunchKernelWithConfig",
            funcHandle=func,
            numBlocks=blocks + 2,
            stream=stream,
            argsHandle=_fake(0x7500000, t, i),
            reserve=0,
        ),
        c("aclopExecuteV2", opType=OP_TYPES[i % 3], **op_args),
        c(
            "aclopExecWithHandle",
            handle=_fake(0x7600000, t, i),
            numInputs=inputs,
            numOutputs=1,
            stream=stream,
        ),
        c(
            "aclopCompileAndExecute",
            opType=OP_TYPES[i % 3],
            **op_args,
            engineType=i % 3,
            compileFlag=ACL_COMPILE_SYS,
            opPath=None,
        ),
        c(
            "aclopCompileAndExecuteV2",
            opType=COMPILED_OP_TYPES[i % 3],
            **op_args,
            engineType=(i + 1) % 3,
            compileFlag=ACL_COMPILE_UNREGISTERED,
            opPath=None,
        ),
        c("aclmdlLoadFromFile", modelPath=f"/opt/xpu-models/net{t}.om"),
        c("aclmdlExecute", modelId=model, **datasets),
        c("aclmdlExecuteAsync", modelId=model, **datasets, stream=stream),
        c("aclrtRecordEvent", event=event, stream=stream),
        c("aclrtStreamWaitEvent", stream=stream, event=event),
        c("aclrtSynchronizeEvent", event=event),
        c("aclrtSynchronizeStream", stream=stream),
        c("aclrtSynchronizeStreamWithTimeout", stream=stream, timeout=1000 + t),
        c(
            "aclnnAddGetWorkspaceSize",
            self=tensors[0],
            other=tensors[1],
            alpha=_fake(0x7A00000, t, i),
            out=tensors[2],
        ),
        c(
            "aclnnAdd",
            workspace=0,
            workspaceSize=ADD_WORKSPACE,
            executor=Out("aclnnAddGetWorkspaceSize", "executor"),
            stream=stream,
        ),
        c(
            "aclnnMatmulGetWorkspaceSize",
            self=tensors[0],
            mat2=tensors[1],
            out=tensors[2],
            cubeMathType=i % 4,
        ),
        c(
            "aclnnMatmul",
            workspace=0xB0000000 + t * 0x100000,
            workspaceSize=MATMUL_WORKSPACE,
            executor=Out("aclnnMatmulGetWorkspaceSize", "executor"),
            stream=stream,
        ),
        *_hccl_round(t, i, stream),
        c("aclrtSynchronizeDevice"),
        c("aclrtFree", devPtr=Out("aclrtMalloc", "devPtr")),
        c("aclrtFree", devPtr=Out("aclrtMallocCached", "devPtr")),
        c("aclrtFreeHost", hostPtr=Out("aclrtMallocHost", "hostPtr")),
    ]


def alltoallv_arrays(t: int, i: int) -> dict[str, list[int]]:
    """The four uint64 arrays of HcclAlltoAllV (8 ranks), as the workload fills them."""
    n = 1024 * (t + 1) + i
    send = [n + r for r in range(RANKS)]
    recv = [n + 2 * r for r in range(RANKS)]
    prefix = lambda a: [sum(a[:r]) for r in range(RANKS)]  # noqa: E731
    return dict(sendCounts=send, sdispls=prefix(send), recvCounts=recv, rdispls=prefix(recv))


def _hccl_round(t: int, i: int, stream: int) -> list[Call]:
    comm = 0xC0000 + t * 0x100
    send = 0xD0000000 + t * 0x100000 + i * 0x100
    recv = send + 0x80
    n = 1024 * (t + 1) + i
    dtype, op = HCCL_TYPES[i % 4], i % 4
    nxt, prev = (t + 1) % RANKS, (t + RANKS - 1) % RANKS
    c = lambda sym, ret=0, **args: Call(t, i, sym, args, ret)  # noqa: E731
    return [
        c("HcclCommInitRootInfo", nRanks=RANKS, rank=t % RANKS),
        c(
            "HcclAllReduce",
            sendBuf=send,
            recvBuf=recv,
            count=n,
            dataType=dtype,
            op=op,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclAllGather",
            sendBuf=send,
            recvBuf=recv,
            sendCount=n + 1,
            dataType=dtype,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclReduceScatter",
            sendBuf=send,
            recvBuf=recv,
            recvCount=n + 2,
            dataType=dtype,
            op=op,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclBroadcast",
            buf=send,
            count=n + 3,
            dataType=dtype,
            root=i % RANKS,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclAlltoAll",
            sendBuf=send,
            sendCount=n + 4,
            sendType=dtype,
            recvBuf=recv,
            recvCount=n + 4,
            recvType=dtype,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclAlltoAllV",
            sendBuf=send,
            sendType=dtype,
            recvBuf=recv,
            recvType=dtype,
            comm=comm,
            stream=stream,
            **alltoallv_arrays(t, i),
        ),
        c(
            "HcclSend",
            sendBuf=send,
            count=n + 5,
            dataType=dtype,
            destRank=nxt,
            comm=comm,
            stream=stream,
        ),
        c(
            "HcclRecv",
            recvBuf=recv,
            count=n + 6,
            dataType=dtype,
            srcRank=prev,
            comm=comm,
            stream=stream,
        ),
        # items: (sendRecvType, buf, count, dataType, remoteRank); HCCL_SEND 0, HCCL_RECV 1
        c(
            "HcclBatchSendRecv",
            itemNum=2,
            comm=comm,
            stream=stream,
            items=[(0, send, n + 7, dtype, nxt), (1, recv, n + 8, dtype, prev)],
        ),
        c("HcclBarrier", comm=comm, stream=stream),
        c("HcclBarrier", HCCL_E_PARA, comm=0, stream=stream),
    ]


def expected_acl_calls(threads: int, iters: int) -> list[Call]:
    """acl_calls[_compat] --threads T --iters N: thread t makes N * (t + 1) rounds, in order."""
    return [c for t in range(threads) for i in range(iters * (t + 1)) for c in _round(t, i)]


def expected_counts(threads: int, iters: int) -> dict[str, int]:
    """The "calls" of the workload's done line."""
    return dict(Counter(c.symbol for c in expected_acl_calls(threads, iters)))
