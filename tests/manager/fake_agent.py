"""A stand-in for xputrace-agent's process behaviour (its CLI, ready/stats lines, exit codes).

The real agent needs root and BPF; the supervisor's logic does not. ``install`` writes an
executable in a temporary directory that runs ``main`` with a fixed behaviour:

- ``ready`` (default): checks its flags like the agent, prints ``{"ready": true, ...}``,
  waits for SIGTERM, prints ``{"stats": {...}}`` and exits 0;
- ``fail``: prints ``stderr`` and exits with ``code`` (the agent's start failures);
- ``hang``: never gets ready (until SIGTERM);
- ``ignore_term``: gets ready, then ignores SIGTERM (only SIGKILL ends it);
- ``exit_after``: gets ready, then after ``after`` seconds prints ``stderr``, exits ``code``.

With ``record`` set it writes its argv, the curve key file it was given (content and mode)
and its environment to that JSON file, and appends ``SIGTERM`` to ``record + ".signals"``
when it gets one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

STATS = {
    "events": 0,
    "batches": 1,
    "sent": 3,
    "kernel_drops": 1,
    "inflight_drops": 0,
    "send_drops": 3,
}


def install(directory: Path, name: str = "xputrace-agent", **mode: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import fake_agent\n"
        f"fake_agent.main({json.dumps(mode)!r})\n"
    )
    path.chmod(0o755)
    return path


def _fail(code: int, name: str, msg: str) -> None:
    print(f"xputrace-agent: {name}: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def main(mode_json: str) -> None:
    mode: dict[str, Any] = json.loads(mode_json)
    behaviour = mode.get("behaviour", "ready")
    record = mode.get("record")

    def on_term(signum: int, frame: Any) -> None:
        if record:
            with open(record + ".signals", "a") as f:
                f.write("SIGTERM\n")
        # os.write: the signal may land while print() holds stdout's buffer
        os.write(1, json.dumps({"stats": STATS}).encode() + b"\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if behaviour == "ignore_term" else on_term)

    p = argparse.ArgumentParser()
    for flag in (
        "monitor-id",
        "monitor-type",
        "machine-id",
        "target-pid",
        "target-library",
        "target-comm",
        "backend-zmq-endpoint",
        "output",
        "curve-keyfile",
        "attach-mode",
        "ringbuf-kb",
        "batch-events",
        "flush-ms",
        "py-runtime",
        "py-offsets",
        "py-binary",
        "py-functions",
        "py-hooks",
        "sample-hz",
    ):
        p.add_argument(f"--{flag}")
    try:
        args = p.parse_args()
    except SystemExit:
        _fail(2, "INVALID_CONFIG", f"bad arguments {sys.argv[1:]}")

    if record:
        key: dict[str, Any] | None = None
        if args.curve_keyfile:
            st = os.stat(args.curve_keyfile)
            key = {"mode": stat.S_IMODE(st.st_mode), "text": Path(args.curve_keyfile).read_text()}
        Path(record).write_text(
            json.dumps(
                {"argv": sys.argv, "keyfile": key, "env": dict(os.environ), "pid": os.getpid()}
            )
        )

    if behaviour == "fail":
        _fail(
            int(mode["code"]),
            mode.get("name", "TARGET_NOT_FOUND"),
            mode.get("stderr", "no such process"),
        )
    if args.monitor_type not in ("CUDA", "PYTHON"):
        _fail(2, "INVALID_CONFIG", f"invalid --monitor-type '{args.monitor_type}'")
    if args.target_pid and not os.path.isdir(f"/proc/{args.target_pid}"):
        _fail(3, "TARGET_NOT_FOUND", f"no process {args.target_pid}")
    if behaviour == "hang":
        while True:
            time.sleep(3600)
    print("some chatter that is not JSON", flush=True)
    print(
        json.dumps(
            {
                "ready": True,
                "pid": os.getpid(),
                "probes": 3,
                "libraries": [args.target_library or "/fake/libcudart.so.12"],
            }
        ),
        flush=True,
    )
    if behaviour == "exit_after":
        time.sleep(float(mode.get("after", 0.1)))
        print(
            mode.get("stderr", "xputrace-agent: failed to send batch: Broken pipe"),
            file=sys.stderr,
            flush=True,
        )
        sys.exit(int(mode.get("code", 1)))
    while True:
        time.sleep(3600)
