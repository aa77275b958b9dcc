"""tests.trace_tools.validate_chrome: Chrome trace-event JSON checked back."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tests.trace_tools.validate import TraceInvalid
from tests.trace_tools.validate_chrome import ChromeInstant, ChromeSlice, validate_chrome_json


def sample() -> list[dict[str, Any]]:
    return [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "app"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 2, "args": {"name": "main"}},
        {"ph": "X", "name": "outer", "pid": 1, "tid": 2, "ts": 0.5, "dur": 10, "args": {"n": 1}},
        {"ph": "s", "name": "enqueue", "cat": "flow", "id": 7, "pid": 1, "tid": 2, "ts": 1},
        {"ph": "E", "pid": 1, "tid": 2, "ts": 4, "args": {"ret": 0}},  # before its B in file
        {"ph": "B", "name": "inner", "pid": 1, "tid": 2, "ts": 2, "args": {"n": 2}},
        {"ph": "i", "s": "t", "name": "launch", "pid": 1, "tid": 9, "ts": 10.5},
        {"ph": "f", "bp": "e", "name": "enqueue", "cat": "flow", "id": 7, "pid": 1, "tid": 9,
         "ts": 10.5},
        {"ph": "C", "name": "memory", "pid": 1, "ts": 3, "args": {"bytes": 4096}},
    ]  # fmt: skip


def encode(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"displayTimeUnit": "ns", "traceEvents": events}).encode()


def test_sample_reads_back_exactly() -> None:
    s = validate_chrome_json(encode(sample()))
    assert s.slices == [ChromeSlice(1, 2, "outer", 0.5, 10, {"n": 1}),
                        ChromeSlice(1, 2, "inner", 2, 2, {"n": 2, "ret": 0})]  # fmt: skip
    assert s.instants == [ChromeInstant(1, 9, "launch", 10.5)]
    assert s.flows == {("flow", "enqueue", "7"): [(1, 2, 1), (1, 9, 10.5)]}
    assert s.counters == {(1, "memory"): [(3, {"bytes": 4096})]}
    assert (s.process_names, s.thread_names) == ({1: "app"}, {(1, 2): "main"})
    assert (s.event_count, s.display_time_unit) == (9, "ns")


def test_gzip_file_and_bare_array(tmp_path: Path) -> None:
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(encode(sample())))
    bare = validate_chrome_json(json.dumps(sample()).encode())
    assert validate_chrome_json(path).slices == bare.slices
    assert bare.display_time_unit is None


def without(i: int, key: str) -> list[dict[str, Any]]:
    events = sample()
    del events[i][key]
    return events


def changed(i: int, **fields: Any) -> list[dict[str, Any]]:
    events = sample()
    events[i].update(fields)
    return events


INVALID = {
    "X without dur": (without(2, "dur"), "event 2 (ph 'X'): missing dur"),
    "ts not a number": (changed(2, ts="0.5"), "event 2 (ph 'X'): ts '0.5' is not a number"),
    "negative dur": (changed(2, dur=-1), "event 2 (ph 'X'): negative dur -1"),
    "unknown phase": (changed(2, ph="Q"), "event 2: unknown phase 'Q'"),
    "E with no B": (changed(5, ph="i"), "event 4 (ph 'E'): no open 'B' on pid 1 tid 2"),
    "B never ends": (changed(4, ph="i", name="x"), "event 5 (ph 'B'): 'inner' on pid 1 tid 2 "
                                                   "never ends"),
    "flow never starts": (changed(3, id=8), "event 7 (ph 'f'): flow ('flow', 'enqueue', '7') "
                                            "was never started"),
    "counter not a number": (changed(8, args={"bytes": "4k"}),
                             "event 8 (ph 'C'): counter values must be numbers"),
}  # fmt: skip


@pytest.mark.parametrize("case", INVALID)
def test_invalid_is_named(case: str) -> None:
    events, message = INVALID[case]
    with pytest.raises(TraceInvalid) as err:
        validate_chrome_json(encode(events))
    assert str(err.value) == message


def test_unterminated_flow_and_not_json() -> None:
    events = [e for e in sample() if e["ph"] != "f"]
    with pytest.raises(TraceInvalid, match=r"^flow \('flow', 'enqueue', '7'\) never terminates"):
        validate_chrome_json(encode(events))
    with pytest.raises(TraceInvalid, match=r"^not JSON"):
        validate_chrome_json(b'{"traceEvents": [')
