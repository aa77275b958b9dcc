"""What nccl_calls makes, call by call: the NCCL tests' ground truth.

Mirrors nccl_calls.c round by round. Thread t makes iters * (t + 1) rounds;
each round is the list _round(t, i) gives, in order. Arguments are named as in
the prototypes of the wheel's nccl.h (nvidia-nccl-cu12 2.32.3); commId is
given by its first 8 bytes read as a little-endian uint64 (the rest of the 128
bytes is (t + i + k) & 0xff for byte k). comm=None is a NULL communicator.
ret is what the real libnccl.so.2 returns where no CUDA driver is installed:
ncclCommInitRank fails its CUDA set-up (ncclUnhandledCudaError), every
collective and point-to-point call fails the communicator check
(ncclInvalidArgument), ncclGroupEnd returns the first error of its group (0
for an empty group), ncclCommDestroy(NULL) and ncclGroupStart succeed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = [
    "BURST_ARGS",
    "COMM_BASE",
    "NCCL_INVALID_ARGUMENT",
    "NCCL_SUCCESS",
    "NCCL_TYPES",
    "NCCL_UNHANDLED_CUDA_ERROR",
    "PARAMS",
    "RANKS",
    "Call",
    "expected_burst",
    "expected_counts",
    "expected_nccl_calls",
    "unique_id",
]

NCCL_SUCCESS, NCCL_UNHANDLED_CUDA_ERROR, NCCL_INVALID_ARGUMENT = 0, 1, 4
RANKS = 8
COMM_BASE = 0x100000000000
# ncclDataType_t of round i: NCCL_TYPES[i % 4]; ncclRedOp_t of round i: i % 5 (sum..avg)
NCCL_TYPES = (7, 6, 9, 2)  # ncclFloat32, ncclFloat16, ncclBfloat16, ncclInt32

# Every hooked function's parameters, in prototype order (nccl.h of the wheel).
PARAMS = {
    "ncclCommInitRank": ("comm", "nranks", "commId", "rank"),
    "ncclCommDestroy": ("comm",),
    "ncclGroupStart": (),
    "ncclGroupEnd": (),
    "ncclAllReduce": ("sendbuff", "recvbuff", "count", "datatype", "op", "comm", "stream"),
    "ncclReduceScatter": ("sendbuff", "recvbuff", "recvcount", "datatype", "op", "comm", "stream"),
    "ncclAllGather": ("sendbuff", "recvbuff", "sendcount", "datatype", "comm", "stream"),
    "ncclBroadcast": ("sendbuff", "recvbuff", "count", "datatype", "root", "comm", "stream"),
    "ncclAlltoAll": ("sendbuff", "recvbuff", "count", "datatype", "comm", "stream"),
    "ncclSend": ("sendbuff", "count", "datatype", "peer", "comm", "stream"),
    "ncclRecv": ("recvbuff", "count", "datatype", "peer", "comm", "stream"),
}


@dataclass(frozen=True)
class Call:
    """One call; thread is the index into the ready line's tids. comm of
    ncclCommInitRank is its out-pointer (a stack address, not given here)."""

    thread: int
    round: int
    symbol: str
    args: dict = field(hash=False)
    ret: int = NCCL_SUCCESS


def comm_of(t: int, i: int) -> int:
    return COMM_BASE + t * 0x10000 + (i % 8) * 0x100


def unique_id(t: int, i: int) -> bytes:
    """The 128 bytes of round i's commId on thread t."""
    head = (0x1D0000000000 + t * 0x1000 + i).to_bytes(8, "little")
    return head + bytes((t + i + k) & 0xFF for k in range(8, 128))


def _round(t: int, i: int) -> list[Call]:
    stream = 0x7000 + t * 0x100 + i % 5
    send = 0xD000000 + t * 0x10000 + i * 0x100
    recv = 0x5000000 + t * 0x10000 + i * 0x100
    n = 1024 * (t + 1) + i
    dtype, op, comm = NCCL_TYPES[i % 4], i % 5, comm_of(t, i)
    nxt, prev = (t + 1) % RANKS, (t + RANKS - 1) % RANKS
    bad = NCCL_INVALID_ARGUMENT
    c = lambda sym, ret=NCCL_SUCCESS, **args: Call(t, i, sym, args, ret)  # noqa: E731
    return [
        c(
            "ncclCommInitRank",
            NCCL_UNHANDLED_CUDA_ERROR,
            nranks=RANKS,
            commId=int.from_bytes(unique_id(t, i)[:8], "little"),
            rank=(t + i) % RANKS,
        ),
        c("ncclGroupStart"),
        c(
            "ncclAllReduce",
            bad,
            sendbuff=send,
            recvbuff=recv,
            count=n,
            datatype=dtype,
            op=op,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclReduceScatter",
            bad,
            sendbuff=send,
            recvbuff=recv,
            recvcount=n + 1,
            datatype=dtype,
            op=op,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclAllGather",
            bad,
            sendbuff=send,
            recvbuff=recv,
            sendcount=n + 2,
            datatype=dtype,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclBroadcast",
            bad,
            sendbuff=send,
            recvbuff=recv,
            count=n + 3,
            datatype=dtype,
            root=i % RANKS,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclAlltoAll",
            bad,
            sendbuff=send,
            recvbuff=recv,
            count=n + 4,
            datatype=dtype,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclSend",
            bad,
            sendbuff=send,
            count=n + 5,
            datatype=dtype,
            peer=nxt,
            comm=comm,
            stream=stream,
        ),
        c(
            "ncclRecv",
            bad,
            recvbuff=recv,
            count=n + 6,
            datatype=dtype,
            peer=prev,
            comm=comm,
            stream=stream,
        ),
        c("ncclGroupEnd", bad),
        c(
            "ncclAllReduce",
            bad,
            sendbuff=send,
            recvbuff=recv,
            count=n + 7,
            datatype=dtype,
            op=op,
            comm=None,
            stream=stream,
        ),
        c("ncclGroupStart"),
        c("ncclGroupEnd"),
        c("ncclCommDestroy", comm=None),
    ]


def expected_nccl_calls(threads: int, iters: int) -> list[Call]:
    """nccl_calls --threads T --iters N: thread t makes N * (t + 1) rounds, in order."""
    return [c for t in range(threads) for i in range(iters * (t + 1)) for c in _round(t, i)]


def expected_counts(threads: int, iters: int) -> dict[str, int]:
    """The "calls" of the workload's done line."""
    return dict(Counter(c.symbol for c in expected_nccl_calls(threads, iters)))


BURST_ARGS = dict(
    sendbuff=0xBB000000,
    recvbuff=0xBC000000,
    count=4096,
    datatype=7,
    op=0,
    comm=COMM_BASE,
    stream=0x7F00,
)


def expected_burst(threads: int, m: int) -> list[Call]:
    """nccl_calls --burst M: M identical all-reduces per thread, nothing else."""
    return [
        Call(t, 0, "ncclAllReduce", dict(BURST_ARGS), NCCL_INVALID_ARGUMENT)
        for t in range(threads)
        for _ in range(m)
    ]
