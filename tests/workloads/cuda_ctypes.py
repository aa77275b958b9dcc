"""A Python process calling the real libcudart through ctypes, as PyTorch-less scripts do.

usage: python cuda_ctypes.py /path/to/libcudart.so.12
Prints {"ready": true, "pid": P, "tid": T}, waits for a line, makes its calls,
prints {"done": true, "calls": {...}}, waits for a line and exits.
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
    lib.cudaLaunchKernel.argtypes = [
        ctypes.c_void_p, Dim3, Dim3, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
    ]
    lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    lib.cudaFree.argtypes = [ctypes.c_void_p]
    print(json.dumps({"ready": True, "pid": os.getpid(), "tid": threading.get_native_id()}),
          flush=True)
    sys.stdin.readline()
    calls: Counter[str] = Counter()
    ptr = ctypes.c_void_p()
    for i in range(5):
        lib.cudaMalloc(ctypes.byref(ptr), 1 << (10 + i))
        lib.cudaMemcpy(0x1000 * (i + 1), 0x2000, 256 * (i + 1), 1)
        lib.cudaLaunchKernel(0xBEEF, Dim3(4, 2, 1), Dim3(256, 1, 1), None, 0, None)
        lib.cudaDeviceSynchronize()
        lib.cudaFree(0x3000 + i)
        calls.update(["cudaMalloc", "cudaMemcpy", "cudaLaunchKernel", "cudaDeviceSynchronize",
                      "cudaFree"])
    print(json.dumps({"done": True, "calls": calls}), flush=True)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
