"""What the C workloads call, argument by argument: the tests' ground truth.

Mirrors cuda_calls.c, cuda_driver_calls.c and cuda_ctypes.py round by round
(test_workloads.py checks that, argument by argument, with call_recorder.c
preloaded in place of the CUDA libraries), and names each
argument the way struct cuda_event reports it (see the comment in xpucore/include/cuda.h):
ptr is the kernel function, the copy's destination, the freed pointer, the
event or the graph (0 for allocations, which fail without a GPU); ptr2 the
copy's source; bytes the count, size or dynamic shared memory; kind the copy
kind or managed-allocation flags.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "BURST_BYTES",
    "BURST_DST",
    "BURST_KIND",
    "BURST_SRC",
    "CTYPES_ITERS",
    "DRIVER_PTSZ_SYMBOLS",
    "PTSZ_SYMBOLS",
    "Call",
    "expected_burst",
    "expected_calls",
    "expected_ctypes_calls",
    "expected_driver_calls",
]

# Where the CUDA 12/13 headers send each call under CUDA_API_PER_THREAD_DEFAULT_STREAM.
PTSZ_SYMBOLS = {
    "cudaLaunchKernel": "cudaLaunchKernel_ptsz",
    "cudaLaunchKernelExC": "cudaLaunchKernelExC_ptsz",
    "cudaMemcpy": "cudaMemcpy_ptds",
    "cudaMemcpyAsync": "cudaMemcpyAsync_ptsz",
    "cudaMallocAsync": "cudaMallocAsync_ptsz",
    "cudaFreeAsync": "cudaFreeAsync_ptsz",
    "cudaStreamSynchronize": "cudaStreamSynchronize_ptsz",
    "cudaEventRecord": "cudaEventRecord_ptsz",
    "cudaGraphLaunch": "cudaGraphLaunch_ptsz",
}


@dataclass(frozen=True)
class Call:
    """One call as the probe reports it; thread is the index into the ready line's tids."""

    thread: int
    symbol: str
    stream: int = 0
    ptr: int = 0
    ptr2: int = 0
    bytes: int = 0
    grid: tuple[int, int, int] = (0, 0, 0)
    block: tuple[int, int, int] = (0, 0, 0)
    kind: int = 0


def _round(t: int, i: int) -> list[Call]:
    stream = 0x7000 + t * 0x100 + i % 5
    dst = 0xD000000 + t * 0x10000 + i * 0x100
    src = 0x5000000 + t * 0x10000 + i * 0x100
    count = 64 * (t + 1) + i
    func = 0x10000 + t * 0x100 + i % 3
    event = 0xE0000 + t * 0x100 + i
    return [
        Call(t, "cudaMalloc", bytes=4096 * (t + 1) + i),
        Call(t, "cudaMallocAsync", stream=stream, bytes=8192 * (t + 1) + i),
        Call(t, "cudaMallocManaged", bytes=100 * (t + 1) + i, kind=1 + i % 2),
        Call(t, "cudaMemcpy", ptr=dst, ptr2=src, bytes=count, kind=i % 5),
        Call(t, "cudaMemcpy", ptr=src, ptr2=dst, bytes=count + 1, kind=(i + 1) % 5),
        Call(
            t,
            "cudaMemcpyAsync",
            stream=stream,
            ptr=dst,
            ptr2=src,
            bytes=count + 2,
            kind=(i + 2) % 5,
        ),
        Call(
            t,
            "cudaLaunchKernel",
            stream=stream,
            ptr=func,
            bytes=128 * (t + 1) + i,
            grid=(t + 2, i % 4 + 1, 3),
            block=(32 * (t + 1), 2, 1 + i % 2),
        ),
        Call(
            t,
            "cudaLaunchKernelExC",
            stream=stream,
            ptr=func,
            bytes=256 + i,
            grid=(i + 1, t + 1, 2),
            block=(64, t + 1, 1),
        ),
        Call(t, "cudaFree", ptr=0xF000000 + t * 0x1000 + i),
        Call(t, "cudaFreeAsync", stream=stream, ptr=0xF800000 + t * 0x1000 + i),
        Call(t, "cudaStreamSynchronize", stream=stream),
        Call(t, "cudaDeviceSynchronize"),
        Call(t, "cudaEventRecord", stream=stream, ptr=event),
        Call(t, "cudaEventSynchronize", ptr=event),
        Call(t, "cudaGraphLaunch", stream=stream, ptr=0x90000 + t * 0x100 + i),
    ]


def _renamed(call: Call, ptsz: bool) -> Call:
    if not ptsz or call.symbol not in PTSZ_SYMBOLS:
        return call
    return replace(call, symbol=PTSZ_SYMBOLS[call.symbol])


def expected_calls(threads: int, iters: int, ptsz: bool = False) -> list[Call]:
    """cuda_calls --threads T --iters N: thread t makes N * (t + 1) rounds, in this order."""
    return [
        _renamed(c, ptsz)
        for t in range(threads)
        for i in range(iters * (t + 1))
        for c in _round(t, i)
    ]


BURST_DST, BURST_SRC, BURST_BYTES, BURST_KIND = 0xBB000000, 0xBC000000, 4096, 1


def expected_burst(threads: int, m: int, ptsz: bool = False) -> list[Call]:
    """cuda_calls --burst M: M identical copies per thread, nothing else."""
    call = [
        _renamed(
            Call(
                t, "cudaMemcpy", ptr=BURST_DST, ptr2=BURST_SRC, bytes=BURST_BYTES, kind=BURST_KIND
            ),
            ptsz,
        )
        for t in range(threads)
    ]
    return [call[t] for t in range(threads) for _ in range(m)]


def _driver_round(t: int, i: int) -> list[Call]:
    stream = 0x6000 + t * 0x100 + i % 3
    dev = 0xA0000 + t * 0x1000 + i * 0x10
    host = 0x4000000 + t * 0x1000 + i * 0x10
    nbytes = 512 * (t + 1) + i
    return [
        Call(t, "cuMemAlloc_v2", bytes=nbytes),
        Call(t, "cuMemcpyHtoDAsync_v2", stream=stream, ptr=dev, ptr2=host, bytes=nbytes, kind=1),
        Call(
            t, "cuMemcpyDtoHAsync_v2", stream=stream, ptr=host, ptr2=dev, bytes=nbytes + 1, kind=2
        ),
        Call(
            t,
            "cuLaunchKernel",
            stream=stream,
            ptr=0x3000 + t * 0x10 + i % 2,
            bytes=0x10000 + 64 * i + t,
            grid=(t + 2, 100 + i % 7, 200 + t),
            block=(1024 + 32 * t, 400 + i % 4, 500 + t),
        ),
        Call(t, "cuStreamSynchronize", stream=stream),
        Call(t, "cuCtxSynchronize"),
        Call(t, "cuMemFree_v2", ptr=0xB0000 + t * 0x1000 + i),
    ]


# Where cuda.h sends the driver's stream-ordered calls under CUDA_API_PER_THREAD_DEFAULT_STREAM.
DRIVER_PTSZ_SYMBOLS = {
    "cuLaunchKernel": "cuLaunchKernel_ptsz",
    "cuMemcpyHtoDAsync_v2": "cuMemcpyHtoDAsync_v2_ptsz",
    "cuMemcpyDtoHAsync_v2": "cuMemcpyDtoHAsync_v2_ptsz",
    "cuStreamSynchronize": "cuStreamSynchronize_ptsz",
}


def expected_driver_calls(threads: int, iters: int, ptsz: bool = False) -> list[Call]:
    """cuda_driver_calls[_ptsz] --threads T --iters N, against the stand-in libcuda."""
    names = DRIVER_PTSZ_SYMBOLS if ptsz else {}
    return [
        replace(c, symbol=names.get(c.symbol, c.symbol))
        for t in range(threads)
        for i in range(iters * (t + 1))
        for c in _driver_round(t, i)
    ]


CTYPES_ITERS = 5


def expected_ctypes_calls(iters: int = CTYPES_ITERS) -> list[Call]:
    """cuda_ctypes.py LIB [ITERS], all from its main thread (thread 0)."""
    calls = []
    for i in range(iters):
        calls += [
            Call(0, "cudaMalloc", bytes=1 << (10 + i % 8)),
            Call(
                0,
                "cudaMemcpy",
                ptr=0x1000 * (i + 1),
                ptr2=0x2000 + 0x10 * i,
                bytes=256 * (i + 1),
                kind=1 + i % 4,
            ),
            Call(
                0,
                "cudaLaunchKernel",
                stream=0x5000 + i,
                ptr=0xBEEF0 + i,
                bytes=64 * (i + 1),
                grid=(4 + i, 2, 3),
                block=(256, 5 + i % 3, 1),
            ),
            Call(0, "cudaDeviceSynchronize"),
            Call(0, "cudaFree", ptr=0x3000 + i),
        ]
    return calls
