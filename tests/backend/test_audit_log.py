"""The audit log (issue #21): every control action with who, what, when and the result, read
by admins at GET /api/v1/auditLogs. Here no manager is connected, so a START_MONITOR fails
with AGENT_START_FAILED (the successful round trips are in tests/e2e/test_roles_e2e.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from backend.app import create_app
from backend.repo import machines, monitors
from backend.typedefs import DB, TASKS
from tests.backend.accounts import Team, make_team
from tests.pg_fixtures import backend_settings

MACHINE = "m" * 64

AUDIT = "/api/v1/auditLogs"
MON = f"/api/v1/machines/{MACHINE}/monitors"
START = {"monitor_type": "CUDA", "target": {"pid": 4242}}


@pytest.fixture
async def team(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Team:
    client = await aiohttp_client(create_app(backend_settings(migrated_dsn, tmp_path)))
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
    return await make_team(client)


async def expect(r: Any, status: int, code: str, needle: str = "") -> None:
    body = await r.json()
    assert r.status == status, body
    assert body == {"error": {"code": status, "status": code, "message": body["error"]["message"]}}
    assert needle in body["error"]["message"], body


async def entries(team: Team, **params: str) -> list[dict[str, Any]]:
    r = await team.client.get(AUDIT, params=params, headers=team.admin)
    assert r.status == 200, await r.text()
    found: list[dict[str, Any]] = (await r.json())["audit_logs"]
    return found


async def settled(team: Team, filter: str) -> dict[str, Any]:
    """The newest entry matching filter, once the START_MONITOR round trips the handlers
    started in the background are over."""
    await asyncio.gather(*team.client.server.app[TASKS])
    (newest,) = await entries(team, filter=filter, page_size="1")
    return newest


async def test_start_and_stop_are_audited_with_who_what_when_result(team: Team) -> None:
    c = team.client
    before = datetime.now().astimezone()
    r = await c.post(MON, json=START, headers=team.operator)
    assert r.status == 201, await r.text()
    mon = (await r.json())["id"]
    start = await settled(team, "action = START_MONITOR")
    assert start["actor_email"] == "op@example.com" and start["actor_role"] == "operator"
    assert start["target"] == f"machines/{MACHINE}/monitors/{mon}"
    assert (start["result"], start["error_code"], start["http_status"]) == (
        "FAILURE",
        "AGENT_START_FAILED",
        201,
    )
    assert start["message"] == f"machine '{MACHINE}' is not connected"
    assert (
        before
        <= datetime.fromisoformat(start["time"])
        <= datetime.fromisoformat(start["settle_time"])
    )
    assert start["address"] == "127.0.0.1"
    # stopping the monitor that failed to start: already final, 204, nothing to ask
    r = await c.delete(f"{MON}/{mon}", headers=team.operator)
    assert r.status == 204
    stop = await settled(team, "action = STOP_MONITOR")
    assert (stop["result"], stop["http_status"], stop["target"]) == (
        "SUCCESS",
        204,
        f"machines/{MACHINE}/monitors/{mon}",
    )


async def test_refused_and_unreachable_actions_are_audited(team: Team) -> None:
    c = team.client
    r = await c.post(MON, json=START, headers=team.viewer)
    await expect(r, 403, "PERMISSION_DENIED", "operator")
    denied = await settled(team, "actor_email = 'view@example.com'")
    assert (denied["action"], denied["result"], denied["error_code"], denied["http_status"]) == (
        "START_MONITOR",
        "FAILURE",
        "PERMISSION_DENIED",
        403,
    )
    r = await c.post("/api/v1/machines/nosuch/monitors", json=START, headers=team.operator)
    await expect(r, 404, "NOT_FOUND")
    missing = await settled(team, "target = 'machines/nosuch/monitors'")
    assert (missing["result"], missing["error_code"]) == ("FAILURE", "NOT_FOUND")
    r = await c.post(MON, json={"monitor_type": "GPU"}, headers=team.operator)
    await expect(r, 400, "INVALID_ARGUMENT")
    bad = await settled(team, "error_code = INVALID_ARGUMENT")
    assert bad["action"] == "START_MONITOR" and "monitor_type" in bad["message"]
    # a running monitor whose machine cannot be reached: 202, the stop is still PENDING
    async with c.server.app[DB].connection() as conn:
        m = await monitors.create_monitor(conn, MACHINE, "CUDA", {"pid": 1}, {}, "")
        await monitors.set_status(conn, m["id"], "RUNNING")
    r = await c.delete(f"{MON}/{m['id']}", headers=team.operator)
    assert r.status == 202
    (pending,) = await entries(team, filter="action = STOP_MONITOR")
    assert (pending["result"], pending["http_status"]) == ("PENDING", 202)


async def test_role_changes_and_invites_are_audited(team: Team) -> None:
    c = team.client
    users = (
        await (
            await c.get("/api/v1/users", params={"filter": "role = viewer"}, headers=team.admin)
        ).json()
    )["users"]
    r = await c.patch(
        f"/api/v1/users/{users[0]['user_id']}", json={"role": "operator"}, headers=team.admin
    )
    assert r.status == 200
    got = await settled(team, "action = SET_ROLE")
    assert (got["result"], got["message"], got["actor_email"]) == (
        "SUCCESS",
        "view@example.com is now operator",
        "admin@example.com",
    )
    invites = await entries(team, filter="action = INVITE_USER")
    assert [e["message"] for e in invites] == [
        "view@example.com invited as viewer",
        "op@example.com invited as operator",
    ]
    assert all(e["result"] == "SUCCESS" for e in invites)


async def test_audit_log_pages_newest_first_and_only_admins_read_it(team: Team) -> None:
    c = team.client
    for _ in range(3):
        assert (await c.post(MON, json=START, headers=team.viewer)).status == 403
    ids, token = [], ""
    while True:
        params = {"page_size": "2", "filter": "result = FAILURE"}
        if token:
            params["page_token"] = token
        r = await c.get(AUDIT, params=params, headers=team.admin)
        body = await r.json()
        ids += [int(e["id"]) for e in body["audit_logs"]]
        token = body["next_page_token"]
        if not token:
            break
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    for auth in (team.operator, team.viewer):
        await expect(await c.get(AUDIT, headers=auth), 403, "PERMISSION_DENIED", "admin")
    r = await c.get(AUDIT, params={"filter": "password = 1"}, headers=team.admin)
    await expect(r, 400, "INVALID_ARGUMENT", "filter: unknown field 'password'")
    r = await c.get(
        AUDIT, params={"filter": "result = FAILURE", "page_token": "x"}, headers=team.admin
    )
    await expect(r, 400, "INVALID_ARGUMENT", "page_token:")
    r = await c.get(
        AUDIT,
        params={"filter": "time > '2020-01-01T00:00:00Z' AND http_status = 403"},
        headers=team.admin,
    )
    assert len((await r.json())["audit_logs"]) == 3
