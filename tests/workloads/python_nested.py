"""Known Python stacks for the Python stack reader: the main thread blocks in a C call
(stdin) three functions deep, a worker thread in another (a pipe read) two deep. Lines that
a test looks for carry a `# at:NAME` marker. Prints {"ready": ..., "worker": native id}."""

import json
import os
import sys
import threading


def worker_inner(fd: int) -> None:
    os.read(fd, 1)  # at:worker_inner


def worker(fd: int) -> None:
    worker_inner(fd)  # at:worker


def inner(worker_tid: int) -> None:
    print(json.dumps({"ready": True, "pid": os.getpid(), "worker": worker_tid}), flush=True)
    sys.stdin.readline()  # at:inner


def outer(worker_tid: int) -> None:
    inner(worker_tid)  # at:outer


def main() -> None:
    rfd, wfd = os.pipe()
    started = threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        started.set()
        worker(rfd)  # at:run

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    outer(tids[0])  # at:main
    os.write(wfd, b"x")
    t.join()


main()  # at:module
