"""The platform for end-to-end tests: backend on a real PostgreSQL, a real manager process."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app, server_keys
from backend.typedefs import INGEST
from manager import keys as manager_keys
from tests.agent.procs import JsonLineProc
from tests.pg_fixtures import backend_settings

DEADLINE_S = 60.0


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     timeout: float = DEADLINE_S) -> Any:
    """check() until it returns something truthy: awaiting a state the API reports."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s (last: {got!r})")
        await asyncio.sleep(0.05)


class Platform:
    def __init__(self, client: TestClient, token: str, machine_id: str,
                 manager: subprocess.Popen[bytes]) -> None:
        self.client, self.token, self.machine_id, self.manager = client, token, machine_id, manager

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.client.get(path, headers=self.auth, params=params)
        assert r.status == 200, await r.text()
        return await r.json()

    async def monitor(self, monitor_id: str) -> dict[str, Any]:
        return await self.get(f"/api/v1/machines/{self.machine_id}/monitors/{monitor_id}")

    async def all_events(self, filter: str = "", page_size: int = 1000) -> list[dict[str, Any]]:
        out, token = [], ""
        while True:
            params: dict[str, Any] = {"filter": filter, "page_size": page_size}
            if token:
                params["page_token"] = token
            body = await self.get("/api/v1/events", **params)
            out += body["events"]
            token = body["next_page_token"]
            if not token:
                return out


@pytest.fixture
async def platform(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path,
                   build_dir: Path) -> AsyncIterator[Platform]:
    settings = backend_settings(migrated_dsn, tmp_path, heartbeat_timeout_s=5.0)
    pub, secret = manager_keys.generate(tmp_path / "manager")
    settings.enrolled_dir.mkdir(parents=True)
    shutil.copy(pub, settings.enrolled_dir / "manager.key")
    server_keys(settings)
    client = await aiohttp_client(create_app(settings))
    machine_file = tmp_path / "machine-id"
    machine_file.write_text("0123456789abcdef0123456789abcdef\n")
    runtime = tmp_path / "run"
    manager = subprocess.Popen(
        [sys.executable, "-m", "manager", "--backend", settings.control_endpoint,
         "--server-key", str(settings.keys_dir / "backend.key"), "--key", str(secret),
         "--agent-path", str(build_dir / "xputrace-agent"), "--runtime-dir", str(runtime),
         "--heartbeat-interval", "0.5", "--machine-id-file", str(machine_file),
         "--agent-stop-timeout", "20"],
        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL)
    try:
        r = await client.post("/api/v1/auth:register",
                              json={"email": "ops@example.com", "password": "long enough pw"})
        assert r.status == 201
        r = await client.post("/api/v1/auth:login",
                              json={"email": "ops@example.com", "password": "long enough pw"})
        token = (await r.json())["access_token"]
        p = Platform(client, token, "", manager)

        async def registered() -> Any:
            return (await p.get("/api/v1/machines"))["machines"]

        machines = await eventually(registered, "manager registration")
        p.machine_id = machines[0]["id"]
        yield p
    finally:
        manager.terminate()
        manager.wait(30)


async def monitored(p: Platform, argv: list[str], monitor: dict[str, Any],
                    go: str = "go") -> tuple[dict[str, Any], str]:
    """Runs a workload speaking workload_protocol.h under a monitor started through the REST
    API (monitor: the body without target.pid): started once the workload is ready, stopped
    once it is done, everything ingested. Returns (ready, monitor id)."""
    work = JsonLineProc(argv)
    try:
        ready = work.read_json("ready")
        body = {**monitor, "target": {**monitor.get("target", {}), "pid": ready["pid"]}}
        r = await p.client.post(f"/api/v1/machines/{p.machine_id}/monitors", headers=p.auth,
                                json=body)
        assert r.status == 201, await r.text()
        mon = (await r.json())["id"]

        async def running() -> Any:
            m = await p.monitor(mon)
            assert m["status"] != "FAILED_TO_START", m
            return m["status"] == "RUNNING" or None

        await eventually(running, "monitor RUNNING")
        work.send_line(go)
        work.read_json("done")
        r = await p.client.delete(f"/api/v1/machines/{p.machine_id}/monitors/{mon}",
                                  headers=p.auth)  # fmt: skip
        assert r.status == 204
        work.send_line("exit")
    finally:
        work.kill()
    await p.client.app[INGEST].flushed()
    return ready, mon
