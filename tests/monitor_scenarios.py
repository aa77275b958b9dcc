"""How a monitor's status and its agent converge when the control channel is slow or a
manager dies (issue #21 section 3), played on a Platform (tests/platform.py) against any
agent binary: the stand-in (tests/backend/test_monitor_lifecycle.py) or the real agent
(tests/e2e/test_reconcile_e2e.py). ``target`` is the monitor's target (a live pid).

Slowness is real, never a flag: the manager process stopped with SIGSTOP (its START waits
in the socket), an agent stopped with SIGSTOP (SIGTERM waits until the manager's SIGKILL),
an agent in a frozen cgroup (not even SIGKILL ends it until it is thawed).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import psycopg

from backend.typedefs import CONTROL, SETTINGS
from tests.manager.procs import alive
from tests.platform import Platform, eventually

SETTLE_S = 30.0


async def _running(p: Platform, target: dict[str, Any]) -> dict[str, Any]:
    mid = await p.start({"monitor_type": "CUDA", "target": target})
    m = await p.status_becomes(mid, "RUNNING", SETTLE_S)
    assert m["agent_pid"] and alive(m["agent_pid"]), m
    return m


async def _gone(pid: int) -> None:
    async def check() -> bool:
        return not alive(pid)

    await eventually(check, f"agent {pid} gone", SETTLE_S)


async def _stopped_waiting(p: Platform, mid: str) -> None:
    """Until the backend has given up waiting for the reply about mid (or settled it)."""
    control = p.client.app[CONTROL]

    async def check() -> bool:
        return mid in control.in_flight(p.machine_id, overdue_only=True) or (await p.monitor(mid))[
            "status"
        ] not in ("STARTING", "STOPPING")

    await eventually(check, "the backend's wait over", SETTLE_S)


async def start_answered_late(p: Platform, target: dict[str, Any]) -> None:
    """STARTING → (the wait runs out: still STARTING) → RUNNING → STOPPED."""
    os.kill(p.manager.pid, signal.SIGSTOP)
    try:
        mid = await p.start({"monitor_type": "CUDA", "target": target})
        await _stopped_waiting(p, mid)
        assert (await p.monitor(mid))["status"] == "STARTING"
    finally:
        os.kill(p.manager.pid, signal.SIGCONT)
    m = await p.status_becomes(mid, "RUNNING", SETTLE_S)
    assert alive(m["agent_pid"])
    assert await p.delete(mid) == (204, None)
    assert (await p.monitor(mid))["status"] == "STOPPED"
    await _gone(m["agent_pid"])


async def stop_answered_late(p: Platform, target: dict[str, Any]) -> None:
    """RUNNING → STOPPING (DELETE: 202, the agent ignores SIGTERM while stopped) → STOPPED
    (the manager's SIGKILL ended it; its late reply is applied)."""
    m = await _running(p, target)
    os.kill(m["agent_pid"], signal.SIGSTOP)
    try:
        assert await p.delete(m["id"]) == (202, None)
        assert (await p.monitor(m["id"]))["status"] == "STOPPING"
        stopped = await p.status_becomes(m["id"], "STOPPED", SETTLE_S)
    finally:
        if alive(m["agent_pid"]):
            os.kill(m["agent_pid"], signal.SIGCONT)
    assert stopped["stop_time"] and stopped["error_code"] is None
    await _gone(m["agent_pid"])


async def manager_killed_and_back(p: Platform, target: dict[str, Any]) -> None:
    """kill -9 of the manager: the machine UNKNOWN while silent, its RUNNING monitor left as
    it was; the manager back: RUNNING again, the monitor ERROR with the reason."""
    m = await _running(p, target)
    p.kill_manager()

    async def silent() -> bool:
        return (await p.machine())["agent_manager_status"] == "UNKNOWN"

    await eventually(silent, "machine UNKNOWN", SETTLE_S)
    await _gone(m["agent_pid"])  # the kernel told it (pdeathsig)
    assert (await p.monitor(m["id"]))["status"] == "RUNNING"  # nobody can know yet
    p.start_manager()
    err = await p.status_becomes(m["id"], "ERROR", SETTLE_S)
    assert (await p.machine())["agent_manager_status"] == "RUNNING"
    assert "no record of this monitor" in err["error_message"], err
    assert err["error_code"] == "MONITOR_NOT_FOUND" and err["stop_time"]


async def unwanted_agent_is_stopped(p: Platform, target: dict[str, Any]) -> None:
    """A monitor final while its agent runs (what a START answered after the wait left
    before): the next heartbeat lists an agent no monitor wants, and it is stopped."""
    m = await _running(p, target)
    with psycopg.connect(str(p.client.app[SETTINGS].database_dsn), autocommit=True) as conn:
        conn.execute("UPDATE monitors SET status = 'FAILED_TO_START' WHERE id = %s", (m["id"],))
    await _gone(m["agent_pid"])
    assert (await p.monitor(m["id"]))["status"] == "FAILED_TO_START"


async def delete_in_every_state(p: Platform, target: dict[str, Any], no_pid: int) -> None:
    """DELETE answers for every status: FAILED_TO_START, ERROR, STOPPED (204, unchanged),
    STARTING (202 while the manager is stopped, then STOPPED with no agent left)."""
    failed = await p.start({"monitor_type": "CUDA", "target": {"pid": no_pid}})
    f = await p.status_becomes(failed, "FAILED_TO_START", SETTLE_S)
    assert f["error_code"] == "TARGET_NOT_FOUND"
    killed = await _running(p, target)
    os.kill(killed["agent_pid"], signal.SIGKILL)
    await p.status_becomes(killed["id"], "ERROR", SETTLE_S)
    done = await _running(p, target)
    assert await p.delete(done["id"]) == (204, None)
    for mid in (failed, killed["id"], done["id"]):
        before = await p.monitor(mid)
        assert await p.delete(mid) == (204, None)
        assert await p.monitor(mid) == before
    os.kill(p.manager.pid, signal.SIGSTOP)
    try:
        mid = await p.start({"monitor_type": "CUDA", "target": target})
        assert await p.delete(mid) == (202, None)
        assert (await p.monitor(mid))["status"] == "STOPPING"
    finally:
        os.kill(p.manager.pid, signal.SIGCONT)
    await p.status_becomes(mid, "STOPPED", SETTLE_S)
    agents = await p.client.app[CONTROL].command(p.machine_id, {"command": "GET_STATUS"})
    assert agents["active_monitors"] == []


async def stop_failed(p: Platform, target: dict[str, Any], freezer: Path) -> None:
    """RUNNING → ERROR (AGENT_STOP_FAILED: the agent is in a frozen cgroup, SIGKILL waits):
    DELETE answers the error body; the agent ends once thawed."""
    m = await _running(p, target)
    freezer.mkdir()
    try:
        (freezer / "cgroup.procs").write_text(str(m["agent_pid"]))
        (freezer / "freezer.state").write_text("FROZEN")

        async def frozen() -> bool:  # FREEZING until every thread is
            return (freezer / "freezer.state").read_text().strip() == "FROZEN"

        await eventually(frozen, "agent frozen", SETTLE_S)
        status, body = await p.delete(m["id"])
        assert status == 500, body
        assert body["error"]["status"] == "INTERNAL"
        assert body["error"]["message"].startswith("AGENT_STOP_FAILED: "), body
        assert str(m["agent_pid"]) in body["error"]["message"]
        err = await p.monitor(m["id"])
        assert (err["status"], err["error_code"]) == ("ERROR", "AGENT_STOP_FAILED")
        assert alive(m["agent_pid"])
    finally:
        (freezer / "freezer.state").write_text("THAWED")
        await _gone(m["agent_pid"])

        async def empty() -> bool:
            return not (freezer / "cgroup.procs").read_text().strip()

        await eventually(empty, "frozen cgroup empty", SETTLE_S)
        freezer.rmdir()
