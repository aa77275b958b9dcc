"""Known garbage collections, for the PYTHON monitor's gc events: collect() calls
gc.collect() N times with cycles to find. Prints {"ready"...}, waits, collects, prints
{"done": true, "collected": [...]}, waits for a line (or EOF). # at:collect marks the line.
"""

import gc
import json
import os
import sys


def collect(n: int) -> list[int]:
    out = []
    for i in range(n):
        for _ in range(100 + i):
            a: list[object] = []
            a.append(a)  # a cycle: only the collector frees it
        out.append(gc.collect())  # at:collect
    return out


print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
n = int(sys.stdin.readline())
print(json.dumps({"done": True, "collected": collect(n)}), flush=True)
sys.stdin.readline()
