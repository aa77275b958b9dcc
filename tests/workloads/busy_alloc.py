"""A job's load, known exactly: spins one core, holds MIB mebibytes (written, so resident),
runs THREADS threads in all, holds FILES files open, has written WRITE_KIB KiB to a file.

    python busy_alloc.py MIB THREADS FILES WRITE_KIB [LIBRARY]

LIBRARY (e.g. libcudart) is loaded first, so that job discovery sees an AI job. Prints
{"ready": true, "pid": ...} once all of that holds, then spins until a line on stdin.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
import threading


def main() -> None:
    mib, threads, files, write_kib = (int(a) for a in sys.argv[1:5])
    if len(sys.argv) > 5:
        ctypes.CDLL(sys.argv[5])
    held = b"\x01" * (mib << 20)  # written: every page resident
    done = threading.Event()
    sleepers = [threading.Thread(target=done.wait, daemon=True) for _ in range(threads - 2)]
    for t in sleepers:
        t.start()
    tmp = tempfile.mkdtemp(prefix="busy-alloc-")
    opened = [open(os.path.join(tmp, f"f{i}"), "wb") for i in range(files)]  # noqa: SIM115
    opened[0].write(b"w" * (write_kib << 10))
    opened[0].flush()
    os.fsync(opened[0].fileno())

    def wait_line() -> None:
        sys.stdin.readline()
        done.set()

    threading.Thread(target=wait_line, daemon=True).start()  # threads - 2 + reader + main
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    n = 0
    while not done.is_set():  # one core busy
        n += 1
    for f in opened:
        f.close()
        os.unlink(f.name)
    os.rmdir(tmp)
    del held


if __name__ == "__main__":
    main()
