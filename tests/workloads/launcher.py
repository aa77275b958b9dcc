"""A launcher, as torchrun or srun are to their ranks: the parent of the workloads it is told
to start, so that a test can name it as a manager's --jobs-root-pid before any of them exists.

Speaks JSON lines. Prints {"launcher": PID} at start, then per line on stdin:

- {"spawn": ARGV, "env": {...}} starts ARGV (env: its whole environment) with pipes, waits
  for its first stdout line and prints {"spawned": PID, "first": LINE};
- {"send": PID, "line": TEXT} writes TEXT to that child's stdin, waits for its next stdout
  line and prints {"sent": PID, "reply": LINE} (LINE: the JSON object, or the text).

At EOF it closes every child's stdin (workloads speaking workload_protocol.h then exit),
waits for them, and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def _line(child: subprocess.Popen[bytes]) -> Any:
    assert child.stdout is not None
    raw = child.stdout.readline().decode().strip()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def main() -> int:
    children: dict[int, subprocess.Popen[bytes]] = {}
    print(json.dumps({"launcher": os.getpid()}), flush=True)
    for text in sys.stdin:
        cmd = json.loads(text)
        if "spawn" in cmd:
            child = subprocess.Popen(
                cmd["spawn"], env=cmd.get("env"), stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            children[child.pid] = child
            print(json.dumps({"spawned": child.pid, "first": _line(child)}), flush=True)
        elif "send" in cmd:
            child = children[cmd["send"]]
            assert child.stdin is not None
            child.stdin.write(cmd["line"].encode() + b"\n")
            child.stdin.flush()
            print(json.dumps({"sent": child.pid, "reply": _line(child)}), flush=True)
    for child in children.values():
        assert child.stdin is not None
        child.stdin.close()
    for child in children.values():
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
