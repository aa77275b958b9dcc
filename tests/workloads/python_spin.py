"""A Python process that spins in a known function, for the PYTHON monitor's sampler.

Prints {"ready": ..., "pid": P}, waits for a line, spins in spin() for the seconds given on
it, prints {"done": true}, waits for a line (or EOF). The spinning line carries # at:spin.
"""

import json
import os
import sys
import time


def spin(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1  # at:spin
    return n


def main() -> None:
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    spin(float(sys.stdin.readline()))  # at:main
    print(json.dumps({"done": True}), flush=True)
    sys.stdin.readline()


main()  # at:module
