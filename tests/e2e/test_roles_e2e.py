"""Who may do what, end to end (issue #21): a real manager and agent; an operator starts and
stops a monitor, a viewer is refused both, and the audit log holds each action with the
manager's answer (SUCCESS, or its error code)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backend.typedefs import TASKS
from tests.agent.procs import JsonLineProc
from tests.backend.accounts import add_user
from tests.e2e.conftest import Platform, eventually

pytestmark = pytest.mark.bpf


async def test_operator_starts_and_stops_viewer_is_refused_all_audited(
    platform: Platform, build_dir: Path
) -> None:
    p, c = platform, platform.client
    op = await add_user(c, p.auth, "op@example.com", "operator")
    viewer = await add_user(c, p.auth, "view@example.com", "viewer")
    base = f"/api/v1/machines/{p.machine_id}/monitors"
    work = JsonLineProc(
        [str(build_dir / "tests/workloads/cuda_calls"), "--threads", "1", "--iters", "1"]
    )
    try:
        ready = work.read_json("ready")
        body = {"monitor_type": "CUDA", "target": {"pid": ready["pid"]}}
        r = await c.post(base, json=body, headers=viewer)
        assert r.status == 403, await r.text()
        r = await c.post(base, json=body, headers=op)
        assert r.status == 201, await r.text()
        mon = (await r.json())["id"]

        async def running() -> Any:
            m = await p.monitor(mon)
            assert m["status"] != "FAILED_TO_START", m
            return m["status"] == "RUNNING"

        await eventually(running, "monitor RUNNING")
        work.send_line("go")
        work.read_json("done")
        r = await c.delete(f"{base}/{mon}", headers=viewer)
        assert r.status == 403
        assert (await p.monitor(mon))["status"] == "RUNNING"
        r = await c.delete(f"{base}/{mon}", headers=op)
        assert r.status == 204
        work.send_line("exit")
    finally:
        work.kill()
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    r = await c.post(base, json={"monitor_type": "CUDA", "target": {"pid": pid}}, headers=op)
    assert r.status == 201
    missing = (await r.json())["id"]
    await asyncio.gather(*c.server.app[TASKS])  # every START_MONITOR round trip is over

    logs = (await p.get("/api/v1/auditLogs", filter="action = '*_MONITOR'"))["audit_logs"]
    got = [
        (
            e["actor_email"],
            e["action"],
            e["target"].removeprefix(f"machines/{p.machine_id}/"),
            e["result"],
            e["error_code"],
        )
        for e in reversed(logs)
    ]
    assert got == [
        ("view@example.com", "START_MONITOR", "monitors", "FAILURE", "PERMISSION_DENIED"),
        ("op@example.com", "START_MONITOR", f"monitors/{mon}", "SUCCESS", None),
        ("view@example.com", "STOP_MONITOR", f"monitors/{mon}", "FAILURE", "PERMISSION_DENIED"),
        ("op@example.com", "STOP_MONITOR", f"monitors/{mon}", "SUCCESS", None),
        ("op@example.com", "START_MONITOR", f"monitors/{missing}", "FAILURE", "TARGET_NOT_FOUND"),
    ]
    assert str(pid) in logs[0]["message"]
    assert all(e["settle_time"] >= e["time"] for e in logs)


async def test_an_operator_traces_only_processes_of_accounts_granted(platform: Platform) -> None:
    """The target policy: an operator with no account granted traces nothing; one granted
    'nobody' cannot trace root's process (the manager checks the process itself) but can
    trace nobody's; a library in every process needs an admin."""
    p, c = platform, platform.client
    base = f"/api/v1/machines/{p.machine_id}/monitors"
    none = await add_user(c, p.auth, "none@example.com", "operator", unix_accounts=())
    op = await add_user(c, p.auth, "op@example.com", "operator", unix_accounts=("nobody",))
    with (
        subprocess.Popen(["sleep", "60"]) as root_proc,
        subprocess.Popen(["sleep", "60"], user=65534, group=65534) as nobody_proc,
    ):
        try:
            r = await c.post(
                base,
                json={"monitor_type": "SYSCALL", "target": {"pid": nobody_proc.pid}},
                headers=none,
            )
            assert r.status == 403 and "may trace no process" in await r.text()
            r = await c.post(
                base,
                json={
                    "monitor_type": "CUDA",
                    "target": {"library_path": "/usr/lib/x86_64-linux-gnu/libcudart.so.12"},
                },
                headers=op,
            )
            assert r.status == 403 and "needs an admin" in await r.text()
            ids = {}
            for name, proc in (("root", root_proc), ("nobody", nobody_proc)):
                r = await c.post(
                    base, json={"monitor_type": "SYSCALL", "target": {"pid": proc.pid}}, headers=op
                )
                assert r.status == 201, await r.text()
                ids[name] = (await r.json())["id"]

            async def settled(name: str) -> Any:
                m = await p.monitor(ids[name])
                return m if m["status"] in ("RUNNING", "FAILED_TO_START") else None

            refused = await eventually(lambda: settled("root"), "root's process refused")
            assert refused["status"] == "FAILED_TO_START", refused
            assert refused["error_code"] == "PERMISSION_DENIED"
            assert "belongs to no Unix account this user was granted" in refused["error_message"]
            assert (await eventually(lambda: settled("nobody"), "nobody's traced"))[
                "status"
            ] == "RUNNING"
            r = await c.delete(f"{base}/{ids['nobody']}", headers=op)
            assert r.status == 204
        finally:
            root_proc.kill()
            nobody_proc.kill()
