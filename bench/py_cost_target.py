"""The target of bench/python_attribution.py, bench/python_sampling.py and
bench/python_calls.py: DEPTH functions deep, either the real libcudart's cudaMemcpy through
ctypes (a call each), pure Python work (spin: a loop iteration each), or a call of a small
Python function `tiny` (calls). Reads a count per line, answers ns_per_call.

usage: python py_cost_target.py LIBCUDART DEPTH [spin|calls]
"""

import ctypes
import json
import os
import sys
import time

lib = ctypes.CDLL(sys.argv[1])
memcpy = lib.cudaMemcpy
memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
SPIN = sys.argv[3:] == ["spin"]
CALLS = sys.argv[3:] == ["calls"]


def tiny(i: int) -> int:
    return i * i % 7


def loop(n: int) -> float:
    t0 = time.perf_counter_ns()
    if CALLS:
        x = 0
        for i in range(n):
            x += tiny(i)
    elif SPIN:
        x = 0
        for i in range(n):
            x += i * i % 7
    else:
        for _ in range(n):
            memcpy(0x1000, 0x2000, 64, 1)
    return (time.perf_counter_ns() - t0) / n


def nest(depth: int, n: int) -> float:
    return loop(n) if depth <= 1 else nest(depth - 1, n)


print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
for line in sys.stdin:
    print(json.dumps({"ns_per_call": nest(int(sys.argv[2]), int(line))}), flush=True)
