"""Command validation: every bad field is named in an INVALID_CONFIG reply, nothing raises."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from xpucore import protocol
from xpucore.protocol import CommandError, GetStatus, StartMonitor, StopMonitor

MID = "123e4567-e89b-42d3-a456-426614174000"
TYPES = ("CUDA",)


def start(**over: Any) -> dict[str, Any]:
    cmd: dict[str, Any] = {
        "command": "START_MONITOR",
        "request_id": "r1",
        "monitor_id": MID,
        "monitor_type": "CUDA",
        "target": {"pid": 1234},
        "config": {"sampling_rate": 1.0},
        "backend_zmq_data_endpoint": "tcp://backend:5556",
        "machine_id": "m1",
    }
    cmd.update(over)
    return {k: v for k, v in cmd.items() if v is not ...}


def refused(msg: Any) -> CommandError:
    frame = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    with pytest.raises(CommandError) as e:
        protocol.parse_command(frame, TYPES)
    assert e.value.code == protocol.ErrorCode.INVALID_CONFIG
    return e.value


def test_seed_start_command_parses() -> None:
    cmd = protocol.parse_command(json.dumps(start()).encode(), TYPES)
    assert cmd == StartMonitor(
        "r1",
        MID,
        "CUDA",
        protocol.Target(pid=1234),
        protocol.AgentConfig(),
        "tcp://backend:5556",
        "m1",
    )


def test_stop_and_both_status_forms_parse() -> None:
    stop = {"command": "STOP_MONITOR", "request_id": "r2", "monitor_id": MID}
    assert protocol.parse_command(json.dumps(stop).encode(), TYPES) == StopMonitor("r2", MID)
    status = {"command": "GET_STATUS", "request_id": "r3"}
    assert protocol.parse_command(json.dumps(status).encode(), TYPES) == GetStatus("r3")
    status["monitor_id"] = MID
    assert protocol.parse_command(json.dumps(status).encode(), TYPES) == GetStatus("r3", MID)
    status["monitor_id"] = None
    assert protocol.parse_command(json.dumps(status).encode(), TYPES) == GetStatus("r3")


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (b"not json", "message"),
        (b"\xff\xfe", "message"),
        (b"[1, 2]", "message"),
        (b'{"command": "START_MONITOR", "x": NaN}', "message"),
        ({"request_id": "r"}, "command"),
        ({"command": "REBOOT", "request_id": "r"}, "command"),
        ({"command": ["START_MONITOR"], "request_id": "r"}, "command"),
        ({"command": "STOP_MONITOR", "monitor_id": MID}, "request_id"),
        ({"command": "STOP_MONITOR", "request_id": 7, "monitor_id": MID}, "request_id"),
        ({"command": "STOP_MONITOR", "request_id": "x" * 129, "monitor_id": MID}, "request_id"),
        ({"command": "STOP_MONITOR", "request_id": "r"}, "monitor_id"),
        ({"command": "STOP_MONITOR", "request_id": "r", "monitor_id": "abc"}, "monitor_id"),
        ({"command": "STOP_MONITOR", "request_id": "r", "monitor_id": MID, "pid": 1}, "pid"),
        ({"command": "GET_STATUS", "request_id": "r", "monitor_id": 12}, "monitor_id"),
        (start(monitor_id=...), "monitor_id"),
        (start(monitor_id=MID.replace("-", "")), "monitor_id"),
        (start(monitor_id="../../etc/passwd"), "monitor_id"),
        (start(monitor_type=...), "monitor_type"),
        (start(monitor_type="PYTHON"), "monitor_type"),
        (start(monitor_type="CUDA --verbose"), "monitor_type"),
        (start(target=...), "target"),
        (start(target=[1234]), "target"),
        (start(target={}), "target.pid"),
        (start(target={"pid": "1234"}), "target.pid"),
        (start(target={"pid": -1}), "target.pid"),
        (start(target={"pid": 0}), "target.pid"),
        (start(target={"pid": True}), "target.pid"),
        (start(target={"pid": 1.5}), "target.pid"),
        (start(target={"pid": 2**40}), "target.pid"),
        (start(target={"library_path": 5}), "target.library_path"),
        (start(target={"library_path": ""}), "target.library_path"),
        (start(target={"library_path": "/a\0b"}), "target.library_path"),
        (start(target={"pid": 1, "comm": "x" * 16}), "target.comm"),
        (start(target={"pid": 1, "comm": ""}), "target.comm"),
        (start(target={"pid": 1, "comm": "a\nb"}), "target.comm"),
        (start(target={"pid": 1, "binary_path": "/usr/bin/python3"}), "target.binary_path"),
        (start(target={"pid": 1, "argv": ["--output", "/etc/shadow"]}), "target.argv"),
        (start(target={"pid": 1, "syscalls": "read"}), "target.syscalls"),
        (start(target={"pid": 1, "syscalls": []}), "target.syscalls"),
        (start(target={"pid": 1, "syscalls": ["read", "read,write"]}), "target.syscalls[1]"),
        (start(target={"pid": 1, "syscalls": ["--output=/etc/x"]}), "target.syscalls[0]"),
        (start(target={"pid": 1, "syscalls": [7]}), "target.syscalls[0]"),
        (start(config=[]), "config"),
        (start(config={"sampling_rate": 0.5}), "config.sampling_rate"),
        (start(config={"sampling_rate": "1"}), "config.sampling_rate"),
        (start(config={"enable_profiling": "yes"}), "config.enable_profiling"),
        (start(config={"attach_mode": "kprobe"}), "config.attach_mode"),
        (start(config={"ringbuf_kb": 100}), "config.ringbuf_kb"),
        (start(config={"ringbuf_kb": 2}), "config.ringbuf_kb"),
        (start(config={"batch_events": 0}), "config.batch_events"),
        (start(config={"flush_ms": "fast"}), "config.flush_ms"),
        (start(config={"extra_flags": "-v"}), "config.extra_flags"),
        (start(config={"python_stacks": "yes"}), "config.python_stacks"),
        (start(config={"window": "step"}), "config.window"),
        (start(config={"window": {"function": "a;b", "count": 1}}), "config.window.function"),
        (start(config={"window": {"function": "step"}}), "config.window.count"),
        (start(config={"window": {"function": "step", "count": 0}}), "config.window.count"),
        (start(config={"window": {"function": "step", "count": True}}), "config.window.count"),
        (start(config={"window": {"function": "s", "count": 1, "skip": -1}}), "config.window.skip"),
        (start(config={"window": {"function": "s", "count": 1, "n": 2}}), "config.window.n"),
        (start(backend_zmq_data_endpoint="http://backend:5556"), "backend_zmq_data_endpoint"),
        (start(backend_zmq_data_endpoint="tcp://a:1 --output x"), "backend_zmq_data_endpoint"),
        (start(backend_zmq_data_endpoint=5556), "backend_zmq_data_endpoint"),
        (start(machine_id=5), "machine_id"),
        (start(shell="rm -rf /"), "shell"),
    ],
)
def test_bad_field_is_named(msg: Any, field: str) -> None:
    e = refused(msg)
    assert e.message.startswith(f"{field}: "), e.message
    reply = e.reply()
    assert set(reply) == {"request_id", "status", "monitor_id", "error_code", "message"}
    assert reply["status"] == "FAILURE" and reply["error_code"] == "INVALID_CONFIG"


def test_failure_echoes_what_it_can() -> None:
    e = refused(start(target={"pid": "x"}))
    assert (e.request_id, e.monitor_id) == ("r1", MID)
    e = refused(b"garbage")
    assert (e.request_id, e.monitor_id) == (None, None)
    e = refused({"command": "STOP_MONITOR", "request_id": 7, "monitor_id": MID})
    assert (e.request_id, e.monitor_id) == (None, MID)


def test_config_maps_known_keys() -> None:
    cmd = protocol.parse_command(
        json.dumps(
            start(
                config={
                    "sampling_rate": 1,
                    "enable_profiling": True,
                    "attach_mode": "perf",
                    "ringbuf_kb": 64,
                    "batch_events": 100,
                    "flush_ms": 50,
                }
            )
        ).encode(),
        TYPES,
    )
    assert isinstance(cmd, StartMonitor)
    assert cmd.config == protocol.AgentConfig(1.0, True, "perf", 64, 100, 50)
    window = {"function": "Optimizer.step", "skip": 100, "count": 10}
    cmd = protocol.parse_command(json.dumps(start(config={"window": window})).encode(), TYPES)
    assert isinstance(cmd, StartMonitor)
    assert cmd.config.window == protocol.StepWindow("Optimizer.step", 100, 10)
    assert cmd.config.window.flag() == "Optimizer.step:100:10"
    assert cmd.config.window.closed() == "its window closed: 10 calls of Optimizer.step after 100"
    cmd = protocol.parse_command(json.dumps(start(config={"window": None})).encode(), TYPES)
    assert isinstance(cmd, StartMonitor) and cmd.config.window is None


def test_encode_is_compact_json() -> None:
    assert protocol.encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    with pytest.raises(ValueError):
        protocol.encode({"a": float("nan")})


def test_the_backends_commands_parse_as_sent() -> None:
    """protocol.start_monitor / stop_monitor / get_status, as the backend sends them."""
    start_cmd = protocol.start_monitor(
        MID, "CUDA", {"pid": 1234, "comm": None}, {"ringbuf_kb": 64}, "tcp://backend:5556", "m1"
    )
    for msg, parsed in [
        (
            start_cmd,
            StartMonitor(
                "r1",
                MID,
                "CUDA",
                protocol.Target(pid=1234),
                protocol.AgentConfig(ringbuf_kb=64),
                "tcp://backend:5556",
                "m1",
            ),
        ),
        (protocol.stop_monitor(MID), StopMonitor("r1", MID)),
        (protocol.get_status(MID), GetStatus("r1", MID)),
        (protocol.get_status(), GetStatus("r1", None)),
    ]:
        frame = json.dumps({**msg, "request_id": "r1"}).encode()
        assert protocol.parse_command(frame, TYPES) == parsed


def test_allowed_users_travel_with_start_and_are_checked() -> None:
    parse_command, start_monitor = protocol.parse_command, protocol.start_monitor
    msg = start_monitor(
        "123e4567-e89b-42d3-a456-426614174000",
        "CUDA",
        {"pid": 5},
        {},
        "tcp://127.0.0.1:5556",
        "m" * 64,
        ["alice", "svc_ml-1"],
    )
    cmd = parse_command(json.dumps({**msg, "request_id": "r"}).encode(), {"CUDA"})
    assert cmd.allowed_users == ("alice", "svc_ml-1")  # type: ignore[union-attr]
    no = start_monitor(
        "123e4567-e89b-42d3-a456-426614174000", "CUDA", {"pid": 5}, {}, None, "m" * 64
    )
    assert "allowed_users" not in no
    for bad, field in (
        (["Bad Name"], "allowed_users[0]"),
        ("alice", "allowed_users"),
        ([1], "allowed_users[0]"),
    ):
        with pytest.raises(CommandError, match=re.escape(field)):
            parse_command(
                json.dumps({**msg, "request_id": "r", "allowed_users": bad}).encode(), {"CUDA"}
            )
