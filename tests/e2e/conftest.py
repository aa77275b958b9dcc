"""The platform for end-to-end tests: backend on a real PostgreSQL, a real manager process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.typedefs import INGEST
from tests.agent.procs import JsonLineProc
from tests.platform import Platform, eventually, open_platform

__all__ = ["Platform", "eventually", "monitored", "platform"]


@pytest.fixture
async def platform(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, build_dir: Path
) -> AsyncIterator[Platform]:
    async with open_platform(
        aiohttp_client, migrated_dsn, tmp_path, build_dir / "xputrace-agent"
    ) as p:
        yield p


async def monitored(
    p: Platform, argv: list[str], monitor: dict[str, Any], go: str = "go"
) -> tuple[dict[str, Any], str]:
    """Runs a workload speaking workload_protocol.h under a monitor started through the REST
    API (monitor: the body without target.pid): started once the workload is ready, stopped
    once it is done, everything ingested. Returns (ready, monitor id)."""
    work = JsonLineProc(argv)
    try:
        ready = work.read_json("ready")
        body = {**monitor, "target": {**monitor.get("target", {}), "pid": ready["pid"]}}
        r = await p.client.post(
            f"/api/v1/machines/{p.machine_id}/monitors", headers=p.auth, json=body
        )
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
