"""A NUL (U+0000) anywhere PostgreSQL would get it is a 400 naming the field, never a 500
with a traceback (issue #20 section 5): text columns cannot hold one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.repo import machines
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD, first_admin
from tests.pg_fixtures import backend_settings

MACHINE = "gpu-node-1"
ANY_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
async def api(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> tuple[TestClient, dict[str, str]]:
    client: TestClient = await aiohttp_client(
        create_app(backend_settings(migrated_dsn, tmp_path, open_registration=True))
    )
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
    return client, await first_admin(client)


async def expect_400(r: Any, field: str) -> None:
    assert r.status == 400, await r.text()
    error = (await r.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT", error
    assert error["message"].startswith(f"{field}: "), error
    assert "NUL" in error["message"] or "regex" in error["message"], error


@pytest.mark.parametrize("path", ["/api/v1/auth:register", "/api/v1/auth:login"])
async def test_email(api: tuple[TestClient, dict[str, str]], path: str) -> None:
    client, _ = api
    r = await client.post(path, json={"email": "ada\x00@example.com", "password": PASSWORD})
    await expect_400(r, "email")


async def test_invited_email(api: tuple[TestClient, dict[str, str]]) -> None:
    client, admin = api
    r = await client.post(
        "/api/v1/users:invite",
        headers=admin,
        json={"email": "bob@exa\x00mple.com", "role": "viewer"},
    )
    await expect_400(r, "email")


async def test_display_name(api: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = api
    r = await client.post(
        "/api/v1/auth:register",
        json={"email": "bob@example.com", "password": PASSWORD, "display_name": "Bob\x00"},
    )
    await expect_400(r, "display_name")


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"monitor_type": "SYSCALL", "target": {"comm": "py\x00thon"}}, "target.comm"),
        (
            {"monitor_type": "CUDA", "target": {"library_path": "/usr/lib/libcudart\x00.so"}},
            "target.library_path",
        ),
        ({"monitor_type": "CUDA", "target": {"pid": 1}, "display_name": "x\x00"}, "display_name"),
    ],
)
async def test_monitor_fields(
    api: tuple[TestClient, dict[str, str]], target: dict[str, Any], field: str
) -> None:
    client, admin = api
    r = await client.post(f"/api/v1/machines/{MACHINE}/monitors", json=target, headers=admin)
    await expect_400(r, field)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/machines/gpu%00", "machine_id"),
        ("GET", "/api/v1/machines/gpu%00/monitors", "machine_id"),
        ("POST", "/api/v1/machines/gpu%00/monitors", "machine_id"),
        ("GET", f"/api/v1/machines/gpu%00/monitors/{ANY_UUID}", "machine_id"),
        ("DELETE", f"/api/v1/machines/gpu%00/monitors/{ANY_UUID}", "machine_id"),
        ("DELETE", f"/api/v1/machines/{MACHINE}/monitors/%00", "monitor_id"),
        ("GET", "/api/v1/users/%00", "user_id"),
        ("PATCH", "/api/v1/users/%00", "user_id"),
        ("GET", "/api/v1/traces/jobs/%00", "trace_job_id"),
    ],
)
async def test_path_ids(
    api: tuple[TestClient, dict[str, str]], method: str, path: str, field: str
) -> None:
    client, admin = api
    r = await client.request(method, path, headers=admin, json={"role": "viewer"})
    await expect_400(r, field)
    # the refused action is in the audit log, its target kept readable
    if method in ("DELETE", "PATCH"):
        logs = await (await client.get("/api/v1/auditLogs", headers=admin)).json()
        assert "\ufffd" in logs["audit_logs"][0]["target"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/events",
        "/api/v1/machines",
        f"/api/v1/machines/{MACHINE}/monitors",
        "/api/v1/users",
        "/api/v1/auditLogs",
        "/api/v1/metrics/summary",
    ],
)
async def test_filter_values(api: tuple[TestClient, dict[str, str]], path: str) -> None:
    client, admin = api
    field = {
        "/api/v1/events": "comm",
        "/api/v1/machines": "hostname",
        "/api/v1/users": "email",
        "/api/v1/auditLogs": "target",
        "/api/v1/metrics/summary": "machine_id",
    }.get(path, "display_name")
    r = await client.get(path, params={"filter": f'{field} = "a\x00b"'}, headers=admin)
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["message"].startswith("filter: ")
