"""A training loop for the step window: STEPS calls of step(k), k = 0.., taken in turn by
THREADS threads (step k on thread k % THREADS, never two at once), so the calls of step are
numbered 1..STEPS in k order across threads. Each step calls the real libcudart (through
ctypes) PER_STEP times: cudaMalloc(1000 + k); between steps, outside step(), one
cudaMalloc(5000 + k) after step k. Before the first step, cudaMalloc(999).

usage: python python_steps.py /path/to/libcudart.so.12 STEPS THREADS
Prints {"ready": ..., "pid": P, "tids": [...]}, waits for a line, runs the steps, prints
{"done": true, "calls": {"cudaMalloc": N}, "spans": [[t0, t1], ...]} (CLOCK_MONOTONIC ns
just before and after each step(k) call, by k), waits for a line (or EOF).
"""

import ctypes
import json
import os
import sys
import threading
import time

PER_STEP = 3

lib = ctypes.CDLL(sys.argv[1])
lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]


def malloc(size: int) -> None:
    p = ctypes.c_void_p()
    lib.cudaMalloc(ctypes.byref(p), size)


def step(k: int) -> None:
    for _ in range(PER_STEP):
        malloc(1000 + k)


def main() -> None:
    steps, nthreads = int(sys.argv[2]), int(sys.argv[3])
    turn = [0]
    cond = threading.Condition()
    go = threading.Event()
    tids: list[int] = []
    spans = [[0, 0] for _ in range(steps)]

    def run(first: int) -> None:
        tids.append(threading.get_native_id())
        go.wait()
        for k in range(first, steps, nthreads):
            with cond:
                cond.wait_for(lambda: turn[0] == k)  # noqa: B023  (k is this loop's)
            t0 = time.monotonic_ns()
            step(k)
            spans[k] = [t0, time.monotonic_ns()]
            malloc(5000 + k)
            with cond:
                turn[0] = k + 1
                cond.notify_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    while len(tids) < nthreads:
        pass
    print(json.dumps({"ready": True, "pid": os.getpid(), "tids": tids}), flush=True)
    sys.stdin.readline()
    malloc(999)
    go.set()
    for t in threads:
        t.join()
    calls = 1 + steps * (PER_STEP + 1)
    print(json.dumps({"done": True, "calls": {"cudaMalloc": calls}, "spans": spans}), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
