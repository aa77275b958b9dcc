"""A Python process calling the real libcudart through ctypes, as PyTorch-less scripts do.

usage: python cuda_ctypes.py /path/to/libcudart.so.12 [ITERS]   (ITERS defaults to 5)

Prints {"ready": true, "pid": P, "tid": T, "tids": [T]}, waits for a line, makes its
calls from the main thread, prints {"done": true, "calls": {...}}, waits for a line (or
EOF) and exits 0. Round i makes cudaMalloc, cudaMemcpy, cudaLaunchKernel (its two dim3
passed by value, as ctypes structures), cudaDeviceSynchronize and cudaFree with the
arguments that cuda_expect.expected_ctypes_calls lists. Handles are made up: without a
driver every call fails with 35 before it touches them.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from collections import Counter


class Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


def main() -> int:
    lib = ctypes.CDLL(sys.argv[1])
    iters = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    vp, size_t = ctypes.c_void_p, ctypes.c_size_t
    lib.cudaMalloc.argtypes = [ctypes.POINTER(vp), size_t]
    lib.cudaMemcpy.argtypes = [vp, vp, size_t, ctypes.c_int]
    lib.cudaLaunchKernel.argtypes = [vp, Dim3, Dim3, ctypes.POINTER(vp), size_t, vp]
    lib.cudaDeviceSynchronize.argtypes = []
    lib.cudaFree.argtypes = [vp]
    for fn in (
        lib.cudaMalloc,
        lib.cudaMemcpy,
        lib.cudaLaunchKernel,
        lib.cudaDeviceSynchronize,
        lib.cudaFree,
    ):
        fn.restype = ctypes.c_int

    tid = threading.get_native_id()
    print(json.dumps({"ready": True, "pid": os.getpid(), "tid": tid, "tids": [tid]}), flush=True)
    sys.stdin.readline()
    calls: Counter[str] = Counter()
    ptr = vp()
    for i in range(iters):
        lib.cudaMalloc(ctypes.byref(ptr), 1 << (10 + i % 8))
        lib.cudaMemcpy(0x1000 * (i + 1), 0x2000 + 0x10 * i, 256 * (i + 1), 1 + i % 4)
        lib.cudaLaunchKernel(
            0xBEEF0 + i, Dim3(4 + i, 2, 3), Dim3(256, 5 + i % 3, 1), None, 64 * (i + 1), 0x5000 + i
        )
        lib.cudaDeviceSynchronize()
        lib.cudaFree(0x3000 + i)
        calls.update(
            ["cudaMalloc", "cudaMemcpy", "cudaLaunchKernel", "cudaDeviceSynchronize", "cudaFree"]
        )
    print(json.dumps({"done": True, "calls": dict(calls)}), flush=True)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
