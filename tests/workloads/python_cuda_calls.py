"""CUDA calls from known Python call sites, for Python attribution: the real libcudart
through ctypes, from nested functions of the main thread and of a worker thread. Lines a test
looks for carry `# at:NAME`.

usage: python python_cuda_calls.py /path/to/libcudart.so.12 ROUNDS
Prints {"ready": ..., "pid": P, "tid": main, "worker": W}, waits for a line, makes ROUNDS
rounds on each thread, prints {"done": true}, waits for a line (or EOF).
"""

import ctypes
import json
import os
import sys
import threading

lib = ctypes.CDLL(sys.argv[1])
lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]


def copy(i: int) -> None:
    lib.cudaMemcpy(0x1000, 0x2000, 64 + i, 1)  # at:copy


def step(i: int) -> None:
    copy(i)  # at:step_copy
    lib.cudaDeviceSynchronize()  # at:step_sync


def train(rounds: int) -> None:
    for i in range(rounds):
        step(i)  # at:train


def allocate(rounds: int) -> None:
    p = ctypes.c_void_p()
    for i in range(rounds):
        lib.cudaMalloc(ctypes.byref(p), 4096 + i)  # at:allocate


def main() -> None:
    rounds = int(sys.argv[2])
    go = threading.Event()
    tid: list[int] = []

    def worker() -> None:
        tid.append(threading.get_native_id())
        go.wait()
        allocate(rounds)  # at:worker

    t = threading.Thread(target=worker)
    t.start()
    while not tid:
        pass
    print(
        json.dumps(
            {"ready": True, "pid": os.getpid(), "tid": threading.get_native_id(), "worker": tid[0]}
        ),
        flush=True,
    )
    sys.stdin.readline()
    go.set()
    train(rounds)  # at:main
    t.join()
    print(json.dumps({"done": True}), flush=True)
    sys.stdin.readline()


main()  # at:module
