"""Known calls of known functions, for the PYTHON monitor's exact calls (--py-functions):
methods, a function that raises (left by an exception, no return), recursion, a generator
consumer, from the main thread and a worker. Lines a test looks for carry `# at:NAME`.

usage: python python_calls.py ROUNDS
Prints {"ready": ..., "pid": P, "tid": main, "worker": W}, waits for a line, makes ROUNDS
rounds on each thread, prints {"done": true}, waits for a line (or EOF).
"""

import json
import os
import sys
import threading


class Model:
    def forward(self, x):  # at:forward
        return helper(x) + 1


def helper(x):
    return x * 2


def boom():  # at:boom
    raise ValueError("boom")


def fib(n):  # at:fib
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def numbers(n):  # at:numbers
    yield from range(n)


def step(m, i):  # at:step
    m.forward(i)
    try:  # noqa: SIM105  (plain try: no context manager's own Python calls)
        boom()
    except ValueError:
        pass
    fib(4)  # 9 calls of fib
    return sum(numbers(3))


def main():
    rounds = int(sys.argv[1])
    go, started = threading.Event(), threading.Event()
    tid = []

    def worker():
        tid.append(threading.get_native_id())
        started.set()
        go.wait()
        m = Model()
        for i in range(rounds):
            step(m, i)

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    print(
        json.dumps(
            {
                "ready": True,
                "pid": os.getpid(),
                "tid": threading.get_native_id(),
                "tids": [threading.get_native_id(), tid[0]],
                "worker": tid[0],
            }
        ),
        flush=True,
    )
    sys.stdin.readline()
    go.set()
    m = Model()
    for i in range(rounds):
        step(m, i)
    t.join()
    print(json.dumps({"done": True}), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()
