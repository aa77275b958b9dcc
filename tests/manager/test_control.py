"""The control channel over real ZeroMQ with CURVE: a test backend (ROUTER behind a ZAP
allow-list) talks to a manager running a fake agent."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from manager import keys
from manager.daemon import serve
from manager.identity import Identity
from manager.settings import Settings
from tests.manager.backend_double import Backend
from tests.manager.conftest import MACHINE_ID, run, running

MID = "123e4567-e89b-42d3-a456-426614174000"
IDENT = MACHINE_ID.encode()
FAILURE_KEYS = {"request_id", "status", "monitor_id", "error_code", "message"}


def start_cmd(pid: int, **over: Any) -> dict[str, Any]:
    cmd = {
        "command": "START_MONITOR",
        "monitor_id": MID,
        "monitor_type": "CUDA",
        "target": {"pid": pid},
        "config": {"sampling_rate": 1.0},
        "backend_zmq_data_endpoint": "tcp://127.0.0.1:5556",
        "machine_id": MACHINE_ID,
    }
    cmd.update(over)
    return cmd


def test_registration_heartbeats_and_manager_status(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
) -> None:
    async def go() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            s = settings(backend=backend.endpoint)
            async with running(s, identity):
                hello = await backend.event("HELLO")
                assert backend.received[0][0] == IDENT  # routed by machine id
                assert hello == {
                    "event": "HELLO",
                    "protocol": 1,
                    "machine_id": MACHINE_ID,
                    "hostname": "testhost",
                    "os_info": "TestOS 1 (kernel 6.1)",
                    "accelerators": [],
                    "version": "0.1.0",
                    "monitor_types": {
                        "ACL": {
                            "target": ["comm", "library_path", "pid"],
                            "config": [
                                "attach_mode",
                                "batch_events",
                                "flush_ms",
                                "python_stacks",
                                "ringbuf_kb",
                                "window",
                            ],
                        },
                        "CUDA": {
                            "target": ["comm", "library_path", "pid"],
                            "config": [
                                "attach_mode",
                                "batch_events",
                                "flush_ms",
                                "python_stacks",
                                "ringbuf_kb",
                                "window",
                            ],
                        },
                        "PYTHON": {
                            "target": ["comm", "pid"],
                            "config": [
                                "batch_events",
                                "flush_ms",
                                "functions",
                                "ringbuf_kb",
                                "sample_hz",
                                "window",
                            ],
                        },
                        "SYSCALL": {
                            "target": ["comm", "pid", "syscalls"],
                            "config": ["batch_events", "flush_ms", "ringbuf_kb"],
                        },
                    },
                    "agent_manager_status": "RUNNING",
                    "active_monitors": [],
                    "time": hello["time"],
                }
                beats = [await backend.event("HEARTBEAT") for _ in range(2)]
                assert [b["seq"] for b in beats] == [1, 2]
                assert set(beats[0]) == {
                    "event",
                    "machine_id",
                    "seq",
                    "agent_manager_status",
                    "active_monitors",
                    "time",
                }
                status = await backend.request(IDENT, {"command": "GET_STATUS"})
                assert status == {
                    "request_id": status["request_id"],
                    "status": "SUCCESS",
                    "agent_manager_status": "RUNNING",
                    "machine_id": MACHINE_ID,
                    "active_monitors": [],
                    "version": "0.1.0",
                }

    run(go())


def test_commands_replies_and_agent_death(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    agent: Callable[..., Path],
    tmp_path: Path,
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()

    async def go() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            s = settings(backend=backend.endpoint, agent_path=agent())
            async with running(s, identity):
                await backend.event("HELLO")
                # a pid that does not exist
                r = await backend.request(IDENT, start_cmd(gone.pid, request_id="backend_req_1"))
                assert r == {
                    "request_id": "backend_req_1",
                    "status": "FAILURE",
                    "monitor_id": MID,
                    "error_code": "TARGET_NOT_FOUND",
                    "message": f"Failed to find target PID {gone.pid}.",
                }
                # bad fields: INVALID_CONFIG naming the field
                for cmd, field in [
                    (start_cmd(os.getpid(), target={"pid": "x"}), "target.pid"),
                    (start_cmd(os.getpid(), monitor_type="OLLAMA"), "monitor_type"),
                    (start_cmd(os.getpid(), monitor_id="nope"), "monitor_id"),
                    (start_cmd(os.getpid(), config={"verbose": True}), "config.verbose"),
                    (start_cmd(os.getpid(), machine_id="elsewhere"), "machine_id"),
                    (
                        start_cmd(os.getpid(), backend_zmq_data_endpoint="tcp://10.9.9.9:5556"),
                        "backend_zmq_data_endpoint",
                    ),
                    ({"command": "FORMAT_DISK"}, "command"),
                ]:
                    r = await backend.request(IDENT, cmd)
                    assert set(r) == FAILURE_KEYS and r["error_code"] == "INVALID_CONFIG", r
                    assert r["message"].startswith(f"{field}: "), r
                r = await backend.raw_request(IDENT, b"{not json")
                assert (r["request_id"], r["error_code"]) == (None, "INVALID_CONFIG")
                assert r["message"].startswith("message: ")
                # a REQ-style empty delimiter is echoed back
                await backend.send_raw(
                    IDENT,
                    b"",
                    json.dumps({"command": "GET_STATUS", "request_id": "delim"}).encode(),
                )
                # STOP / GET_STATUS of a monitor never started
                r = await backend.request(
                    IDENT,
                    {"command": "STOP_MONITOR", "monitor_id": MID, "request_id": "backend_req_2"},
                )
                assert r == {
                    "request_id": "backend_req_2",
                    "status": "FAILURE",
                    "monitor_id": MID,
                    "error_code": "MONITOR_NOT_FOUND",
                    "message": f"Monitor with id '{MID}' not found or already stopped.",
                }
                r = await backend.request(
                    IDENT,
                    {"command": "GET_STATUS", "monitor_id": MID, "request_id": "backend_req_3"},
                )
                assert r == {
                    "request_id": "backend_req_3",
                    "status": "FAILURE",
                    "monitor_id": MID,
                    "error_code": "MONITOR_NOT_FOUND",
                    "message": "Monitor not found.",
                }

                # a monitor that runs, then its agent is killed
                r = await backend.request(IDENT, start_cmd(os.getpid()))
                assert r == {
                    "request_id": r["request_id"],
                    "status": "SUCCESS",
                    "monitor_id": MID,
                    "message": "Monitor started successfully.",
                    "agent_pid": r["agent_pid"],
                }
                pid = r["agent_pid"]
                st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": MID})
                assert st == {
                    "request_id": st["request_id"],
                    "status": "SUCCESS",
                    "monitor_id": MID,
                    "monitor_status": "RUNNING",
                    "agent_pid": pid,
                    "start_time": st["start_time"],
                }
                st = await backend.request(IDENT, {"command": "GET_STATUS"})
                assert st["active_monitors"] == [
                    {
                        "monitor_id": MID,
                        "agent_pid": pid,
                        "start_time": st["active_monitors"][0]["start_time"],
                        "monitor_type": "CUDA",
                    }
                ]
                beat = await backend.event("HEARTBEAT")
                while not beat["active_monitors"]:
                    beat = await backend.event("HEARTBEAT")
                assert beat["active_monitors"][0]["agent_pid"] == pid
                os.kill(pid, signal.SIGKILL)
                ev = await backend.event("MONITOR_STATUS")
                assert ev == {
                    "event": "MONITOR_STATUS",
                    "machine_id": MACHINE_ID,
                    "monitor_id": MID,
                    "monitor_status": "ERROR",
                    "agent_pid": pid,
                    "exit_code": -9,
                    "message": "agent killed by signal SIGKILL",
                    "error_message": "agent killed by signal SIGKILL",
                    "stop_time": ev["stop_time"],
                    "events_sent": None,  # killed: it printed no stats line
                    "events_dropped": None,
                    "time": ev["time"],
                }
                st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": MID})
                assert (st["monitor_status"], st["error_message"]) == (
                    "ERROR",
                    "agent killed by signal SIGKILL",
                )
                assert "agent_pid" not in st
                r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID})
                assert (r["status"], r["message"]) == ("SUCCESS", "Monitor already stopped.")

                # started again, stopped on request, stopped again
                r = await backend.request(IDENT, start_cmd(os.getpid()))
                assert r["status"] == "SUCCESS" and r["agent_pid"] != pid
                r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID})
                assert r == {
                    "request_id": r["request_id"],
                    "status": "SUCCESS",
                    "monitor_id": MID,
                    "message": "Monitor stopped successfully.",
                    "events_sent": 3,  # the fake agent's stats line
                    "events_dropped": 4,
                }
                r = await backend.request(IDENT, {"command": "STOP_MONITOR", "monitor_id": MID})
                assert (r["status"], r["message"]) == ("SUCCESS", "Monitor already stopped.")
                assert backend.queue("MONITOR_STATUS").empty()  # STOP's reply says it all
            replies = [m for _, m in backend.received if m.get("request_id") == "delim"]
            assert replies and replies[0]["status"] == "SUCCESS"

    run(go())


def test_slow_start_does_not_block_other_commands(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    agent: Callable[..., Path],
) -> None:
    async def go() -> None:
        async with Backend(enrolled, server_keypair[1]) as backend:
            s = settings(
                backend=backend.endpoint,
                agent_path=agent(behaviour="hang"),
                agent_ready_timeout_s=2.0,
            )
            async with running(s, identity):
                await backend.event("HELLO")
                slow = asyncio.ensure_future(backend.request(IDENT, start_cmd(os.getpid())))
                await asyncio.sleep(0.2)
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                st = await backend.request(IDENT, {"command": "GET_STATUS"})
                assert st["status"] == "SUCCESS" and loop.time() - t0 < 1.0
                assert not slow.done()
                r = await slow
                assert (r["status"], r["error_code"]) == ("FAILURE", "AGENT_START_FAILED")
                assert "not ready within 2s" in r["message"]

    run(go())


def test_manager_with_unknown_key_cannot_talk(
    settings: Callable[..., Settings],
    identity: Identity,
    tmp_path: Path,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
) -> None:
    """The backend enrolls another manager's key; this manager's handshake is refused."""
    keys.generate(tmp_path / "other", "other-manager")

    async def go() -> None:
        async with Backend(tmp_path / "other", server_keypair[1]) as backend:
            s = settings(backend=backend.endpoint)
            async with running(s, identity) as control:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while control.auth_failures < 2 and loop.time() < deadline:
                    await asyncio.sleep(0.05)
                assert control.auth_failures >= 2, "no refused handshake"
                assert backend.received == [] and not control.connected.is_set()
                with pytest.raises(zmq.ZMQError) as e:  # nothing routes to it
                    await backend.send_raw(
                        IDENT, json.dumps(start_cmd(os.getpid(), request_id="x")).encode()
                    )
                assert e.value.errno == zmq.EHOSTUNREACH
                # enrolling the key later lets the running manager in (it keeps dialing)
                shutil.copy(enrolled / "manager.key", tmp_path / "other")
                backend.auth.configure_curve(domain="*", location=str(tmp_path / "other"))
                hello = await backend.event("HELLO")
                assert hello["machine_id"] == MACHINE_ID

    run(go())


def test_impostor_backend_is_refused(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
) -> None:
    """A server with another key (even one that would enroll us) never gets a HELLO."""
    _, impostor_secret = zmq.curve_keypair()

    async def go() -> None:
        async with Backend(enrolled, impostor_secret) as backend:
            s = settings(backend=backend.endpoint)
            async with running(s, identity) as control:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while control.auth_failures < 1 and loop.time() < deadline:
                    await asyncio.sleep(0.05)
                assert control.auth_failures >= 1
                await asyncio.sleep(0.5)
                assert backend.received == [] and control.handshakes == 0

    run(go())


def test_daemon_reregisters_and_says_goodbye(
    settings: Callable[..., Settings],
    identity: Identity,
    enrolled: Path,
    server_keypair: tuple[bytes, bytes],
    agent: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """serve(): a restarted backend gets HELLO again (with the running monitor); shutdown
    stops the agent, reports it STOPPED, then says GOODBYE."""
    record = tmp_path / "argv.json"

    async def go() -> None:
        stop = asyncio.Event()
        async with Backend(enrolled, server_keypair[1]) as backend:
            endpoint = backend.endpoint
            s = settings(backend=endpoint, agent_path=agent(record=str(record)))
            daemon = asyncio.ensure_future(serve(s, stop, identity=identity))
            await backend.event("HELLO")
            r = await backend.request(IDENT, start_cmd(os.getpid()))
            assert r["status"] == "SUCCESS"
        async with Backend(enrolled, server_keypair[1], endpoint) as backend:
            hello = await backend.event("HELLO")
            assert [m["monitor_id"] for m in hello["active_monitors"]] == [MID]
            st = await backend.request(IDENT, {"command": "GET_STATUS", "monitor_id": MID})
            assert st["monitor_status"] == "RUNNING"
            stop.set()
            await asyncio.wait_for(daemon, 20)
            ev = await backend.event("MONITOR_STATUS")
            assert (ev["monitor_id"], ev["monitor_status"], ev["exit_code"]) == (MID, "STOPPED", 0)
            bye = await backend.event("GOODBYE")
            assert bye["agent_manager_status"] == "STOPPED"
            kinds = [m.get("event") for _, m in backend.received if "event" in m]
            assert kinds.index("MONITOR_STATUS") < kinds.index("GOODBYE")
        assert Path(f"{record}.signals").read_text() == "SIGTERM\n"

    run(go())
