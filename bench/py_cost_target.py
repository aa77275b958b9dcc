"""The target of bench/python_attribution.py: the real libcudart's cudaMemcpy from Python,
through ctypes, DEPTH functions deep. Reads a call count per line, answers ns_per_call.

usage: python py_cost_target.py LIBCUDART DEPTH
"""

import ctypes
import json
import os
import sys
import time

lib = ctypes.CDLL(sys.argv[1])
memcpy = lib.cudaMemcpy
memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def loop(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        memcpy(0x1000, 0x2000, 64, 1)
    return (time.perf_counter_ns() - t0) / n


def nest(depth: int, n: int) -> float:
    return loop(n) if depth <= 1 else nest(depth - 1, n)


print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
for line in sys.stdin:
    print(json.dumps({"ns_per_call": nest(int(sys.argv[2]), int(line))}), flush=True)
