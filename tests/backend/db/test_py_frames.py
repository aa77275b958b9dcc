"""py_frames read for traces: two monitors on one process (a CUDA monitor with Python stacks
and a PYTHON monitor) store the same stack once each; a trace draws each frame once."""

from __future__ import annotations

import uuid

import psycopg

from backend.repo.py_frames import stack_frames
from backend.trace_build import python_stacks

FRAMES = [("main", "/app/train.py", 10), ("Trainer.step", "/app/train.py", 42)]  # outer first


def test_a_stack_two_monitors_stored_is_drawn_once(migrated_dsn: str) -> None:
    stack, other = 2**63 + 5, 7  # ids are unsigned 64-bit
    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        for monitor in sorted((uuid.uuid4(), uuid.uuid4())):
            for depth, (function, file, line) in enumerate(reversed(FRAMES)):
                conn.execute(
                    "INSERT INTO py_frames (monitor_id, stack_id, depth, pid, "
                    "function, file, line, flags) VALUES (%s, %s, %s, 99, %s, %s, %s, "
                    "0)",
                    (monitor, stack, depth, function, file, line),
                )
        conn.execute(
            "INSERT INTO py_frames (monitor_id, stack_id, depth, pid, function, file, "
            "line, flags) VALUES (%s, %s, 0, 99, 'helper', '/app/h.py', NULL, 0)",
            (uuid.uuid4(), other),
        )
        assert stack_frames(conn, [stack, other, 12345]) == {
            stack: FRAMES,
            other: [("helper", "/app/h.py", None)],
        }
        assert python_stacks(conn, [stack]) == {
            stack: ["main (train.py)", "Trainer.step (train.py)"]
        }
