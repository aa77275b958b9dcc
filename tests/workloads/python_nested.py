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


def inner(worker: tuple[int, int]) -> None:
    print(
        json.dumps(
            {
                "ready": True,
                "pid": os.getpid(),
                "worker": worker[0],
                "ident": threading.get_ident(),
                "worker_ident": worker[1],
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # at:inner


def outer(worker: tuple[int, int]) -> None:
    inner(worker)  # at:outer


def main() -> None:
    rfd, wfd = os.pipe()
    started = threading.Event()
    tids: list[tuple[int, int]] = []

    def run() -> None:
        tids.append((threading.get_native_id(), threading.get_ident()))
        started.set()
        worker(rfd)  # at:run

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    outer(tids[0])  # at:main
    os.write(wfd, b"x")
    t.join()


main()  # at:module
