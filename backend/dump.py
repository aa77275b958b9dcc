"""Prints a capture file as JSON lines: one per event, or one per batch with --stats.

    python -m backend.dump FILE [--stats]      (FILE may be - for stdin)

The file is read batch by batch, never whole. A file that breaks the ABI stops
the dump with a message naming the byte offset and the field, and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

from xpucore import abi

__all__ = ["batch_stats", "main"]


def batch_stats(batch: abi.Batch) -> dict[str, Any]:
    """The header of one batch, as printed by --stats."""
    names = {v: k for k, v in abi.MONITOR_TYPES.items()}
    return {
        "seq": batch.seq,
        "monitor_type": names.get(batch.monitor_type, batch.monitor_type),
        "monitor_id": batch.monitor_id,
        "machine_id": batch.machine_id,
        "agent_pid": batch.agent_pid,
        "event_count": batch.event_count,
        "kernel_drops": batch.kernel_drops,
        "inflight_drops": batch.inflight_drops,
        "send_drops": batch.send_drops,
        "flags": batch.flags,
        "final": batch.final,
    }


def _open(path: str) -> contextlib.AbstractContextManager[BinaryIO]:
    if path == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    return open(path, "rb")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xputrace-dump", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="capture file written by xputrace-agent, or - for stdin")
    parser.add_argument("--stats", action="store_true", help="one line per batch header")
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        with _open(args.file) as f:
            for batch in abi.iter_batches(f):
                if args.stats:
                    out.write(json.dumps(batch_stats(batch)) + "\n")
                else:
                    for record in abi.event_records(batch):
                        out.write(json.dumps(record) + "\n")
        out.flush()
    except BrokenPipeError:  # `| head`: stop quietly, and flush into nothing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (abi.AbiError, OSError) as e:
        print(f"xputrace-dump: {args.file}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
