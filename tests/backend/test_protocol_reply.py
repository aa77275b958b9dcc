"""How the backend reads the control channel (xpucore.protocol): replies, events, commands."""

from __future__ import annotations

from xpucore import protocol
from xpucore.protocol import Command, ErrorCode


def test_commands_are_named_by_their_builders() -> None:
    mid = "0b9f2c3e-8d1e-4a57-9a43-3c1f6f0b2a11"
    assert protocol.command_of(protocol.stop_monitor(mid)) is Command.STOP_MONITOR
    assert protocol.command_of(protocol.get_status()) is Command.GET_STATUS
    start = protocol.start_monitor(mid, "CUDA", {"pid": 1}, {}, None, "m")
    assert protocol.command_of(start) is Command.START_MONITOR
    assert protocol.command_of({"command": "REBOOT"}) is None
    assert protocol.command_of({}) is None


def test_replies_and_events_are_told_apart() -> None:
    reply = protocol.failure("r1", None, ErrorCode.MONITOR_NOT_FOUND, "no such monitor")
    assert protocol.is_reply(reply) and not protocol.is_event(reply)
    assert protocol.decode(protocol.encode(reply)) == reply
    event = {"event": "HEARTBEAT", "machine_id": "m", "request_id": "r1"}
    assert protocol.is_event(event) and not protocol.is_reply(event)
    assert protocol.event_of(event) is protocol.Event.HEARTBEAT
    assert protocol.event_of({"event": "REBOOTED"}) is None and protocol.event_of(reply) is None
    assert not protocol.is_reply({"request_id": 7}) and not protocol.is_event({"event": 1})


def test_a_reply_is_read_field_by_field() -> None:
    r = protocol.parse_reply(protocol.failure("r1", None, ErrorCode.AGENT_STOP_FAILED, "busy"))
    assert (r.ok, r.error_code, r.message) == (False, "AGENT_STOP_FAILED", "busy")
    ok = protocol.parse_reply(
        {
            "request_id": "r2",
            "status": "SUCCESS",
            "agent_pid": 42,
            "monitor_status": "RUNNING",
            "active_monitors": [],
            "error_code": "",
            "error_message": None,
        }
    )
    assert ok == protocol.Reply(ok=True, agent_pid=42, monitor_status="RUNNING", active_monitors=[])
    odd = protocol.parse_reply(
        {"status": "success", "agent_pid": "42", "active_monitors": {}, "monitor_status": 3}
    )
    assert odd == protocol.Reply(ok=False)


def test_sent_counts_from_the_agent_stats_to_the_backend() -> None:
    stats = {"events": 5, "sent": 7, "kernel_drops": 1, "inflight_drops": 2, "send_drops": 3}
    fields = protocol.agent_counts(stats)
    assert fields == {"events_sent": 7, "events_dropped": 6}
    assert protocol.sent_counts(fields) == (7, 6)
    assert protocol.parse_reply({"status": "SUCCESS", **fields}).events_sent == 7
    # an agent that said nothing, or said it wrong: unknown, never a guess
    assert protocol.agent_counts(None) == {"events_sent": None, "events_dropped": None}
    assert protocol.agent_counts({"sent": 7}) == {"events_sent": 7, "events_dropped": None}
    for bad in (-1, True, 1.5, "7", 2**63):
        assert protocol.sent_counts({"events_sent": bad, "events_dropped": bad}) == (None, None)
