"""Who may do what (issue #21): the bootstrap admin, closed registration and invites, the role
each route needs (403 PERMISSION_DENIED below it), user management by admins."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.db.migrate import MIGRATIONS_DIR, migrate
from backend.repo import machines
from backend.routes import ROUTES
from backend.settings import Settings
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD, Team, invite, make_team
from tests.pg_fixtures import backend_settings

MACHINE = "m" * 64
ANY_UUID = "00000000-0000-4000-8000-000000000000"


async def start(aiohttp_client: Any, dsn: str, tmp_path: Path, **kw: Any) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(backend_settings(dsn, tmp_path, **kw)))
    return client


@pytest.fixture
async def team(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Team:
    client = await start(aiohttp_client, migrated_dsn, tmp_path)
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
    return await make_team(client)


async def expect(r: Any, status: int, code: str, needle: str = "") -> dict[str, Any]:
    body: dict[str, Any] = await r.json()
    assert r.status == status, body
    assert body == {"error": {"code": status, "status": code, "message": body["error"]["message"]}}
    assert needle in body["error"]["message"], body
    return body


async def register(client: TestClient, email: str, **extra: Any) -> Any:
    return await client.post(
        "/api/v1/auth:register", json={"email": email, "password": PASSWORD, **extra}
    )


# --- registration ----------------------------------------------------------------------------


async def test_first_account_is_admin_then_registration_is_closed(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, migrated_dsn, tmp_path)
    r = await register(client, "first@example.com")
    assert r.status == 201 and (await r.json())["role"] == "admin"
    r = await register(client, "second@example.com")
    await expect(r, 403, "PERMISSION_DENIED", "registration is closed")
    r = await client.post(
        "/api/v1/auth:login", json={"email": "second@example.com", "password": PASSWORD}
    )
    await expect(r, 401, "UNAUTHENTICATED")


async def test_open_registration_makes_viewers(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    client = await start(aiohttp_client, migrated_dsn, tmp_path, open_registration=True)
    roles = []
    for email in ("a@example.com", "b@example.com"):
        r = await register(client, email)
        assert r.status == 201, await r.text()
        roles.append((await r.json())["role"])
    assert roles == ["admin", "viewer"]


def test_open_registration_is_read_as_a_boolean() -> None:
    env = {"XPUTRACE_OPEN_REGISTRATION": "yes", "XPUTRACE_LOGIN_WINDOW_S": "60"}
    s = Settings.from_env(env)
    assert s.open_registration is True and s.login_window_s == 60.0
    assert Settings.from_env({"XPUTRACE_OPEN_REGISTRATION": "0"}).open_registration is False
    with pytest.raises(ValueError, match="XPUTRACE_OPEN_REGISTRATION"):
        Settings.from_env({"XPUTRACE_OPEN_REGISTRATION": "maybe"})


@pytest.mark.parametrize("open_registration", [False, True])
async def test_concurrent_first_registrations_make_one_admin(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, open_registration: bool
) -> None:
    client = await start(
        aiohttp_client, migrated_dsn, tmp_path, open_registration=open_registration
    )
    rs = await asyncio.gather(*(register(client, f"u{n}@example.com") for n in range(4)))
    got = sorted([[r.status, (await r.json()).get("role")] for r in rs])
    closed = [403, None] if not open_registration else [201, "viewer"]
    assert got == sorted([[201, "admin"], closed, closed, closed])


async def test_invite_registers_once_its_email_with_its_role(team: Team) -> None:
    c = team.client
    token = await invite(c, team.admin, "new@example.com", "operator")
    r = await register(c, "other@example.com", invite_token=token)
    await expect(r, 403, "PERMISSION_DENIED", "invite_token")
    r = await register(c, "new@example.com", invite_token="not-a-token")
    await expect(r, 403, "PERMISSION_DENIED", "invite_token")
    r = await register(c, "NEW@example.com", invite_token=token)
    assert r.status == 201 and (await r.json())["role"] == "operator"
    r = await register(c, "new2@example.com", invite_token=token)  # used
    await expect(r, 403, "PERMISSION_DENIED", "invite_token")
    # expired
    late = await invite(c, team.admin, "late@example.com", "viewer")
    async with c.server.app[DB].connection() as conn:
        await conn.execute(
            "UPDATE invites SET expires_at = now() - interval '1 s' "
            "WHERE email = 'late@example.com'"
        )
    await expect(
        await register(c, "late@example.com", invite_token=late),
        403,
        "PERMISSION_DENIED",
        "expired",
    )
    # a registered e-mail cannot be invited; only admins invite
    r = await c.post("/api/v1/users:invite", json={"email": "op@example.com"}, headers=team.admin)
    await expect(r, 409, "ALREADY_EXISTS", "already registered")
    r = await c.post(
        "/api/v1/users:invite", json={"email": "x@example.com", "role": "root"}, headers=team.admin
    )
    await expect(r, 400, "INVALID_ARGUMENT", "role")
    r = await c.post("/api/v1/users:invite", json={"email": "x@example.com"}, headers=team.operator)
    await expect(r, 403, "PERMISSION_DENIED", "admin")


# --- the role of each route ------------------------------------------------------------------

# The policy, written independently of backend.routes: the least role each route needs.
POLICY: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/auth:logout"): "viewer",
    ("GET", "/api/v1/machines"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}/monitors"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}/monitors/{monitor_id}"): "viewer",
    ("GET", "/api/v1/events"): "viewer",
    ("GET", "/api/v1/metrics/summary"): "viewer",
    ("GET", "/api/v1/traces/jobs/{trace_job_id}"): "viewer",
    ("GET", "/api/v1/traces/{trace_id}"): "viewer",
    ("POST", "/api/v1/machines/{machine_id}/monitors"): "operator",
    ("DELETE", "/api/v1/machines/{machine_id}/monitors/{monitor_id}"): "operator",
    ("POST", "/api/v1/traces:generate"): "operator",
    ("GET", "/api/v1/users"): "admin",
    ("POST", "/api/v1/users:invite"): "admin",
    ("GET", "/api/v1/users/{user_id}"): "admin",
    ("PATCH", "/api/v1/users/{user_id}"): "admin",
    ("GET", "/api/v1/auditLogs"): "admin",
    ("GET", "/api/v1/jobs"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}/jobs"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}/parameters"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}/code"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}/status-history"): "viewer",
    ("POST", "/api/v1/jobs/{job_id}:stop"): "operator",
    ("POST", "/api/v1/jobs:batchStop"): "operator",
    ("GET", "/api/v1/jobs/{job_id}/ranks"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}/process-metrics"): "viewer",
    ("POST", "/api/v1/jobs/{job_id}:trace"): "operator",
    ("GET", "/api/v1/jobs/{job_id}/traces"): "viewer",
    ("GET", "/api/v1/jobs/{job_id}/traces/{trace_id}"): "viewer",
    ("POST", "/api/v1/jobs/{job_id}/traces/{trace_id}:stop"): "operator",
    ("GET", "/api/v1/machines/{machine_id}/devices"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}/device-processes"): "viewer",
    ("GET", "/api/v1/machines/{machine_id}/device-metrics"): "viewer",
    ("GET", "/api/v1/device-metrics"): "viewer",
    ("GET", "/api/v1/stats/cluster"): "viewer",
    ("GET", "/api/v1/stats/machines/{machine_id}"): "viewer",
    ("GET", "/api/v1/stats/jobs"): "viewer",
    ("GET", "/api/v1/stats/trends"): "viewer",
    ("GET", "/api/v1/search"): "viewer",
}
PUBLIC = {
    ("POST", "/api/v1/auth:register"),
    ("POST", "/api/v1/auth:login"),
    ("POST", "/api/v1/auth:refreshToken"),
    ("GET", "/api/v1/openapi.json"),
}
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def test_every_route_has_the_role_of_the_policy() -> None:
    table = {(method, path): role for method, path, _, role in ROUTES}
    assert {k for k, v in table.items() if v is None} == PUBLIC
    assert {k: v for k, v in table.items() if v is not None} == POLICY


@pytest.mark.parametrize(("method", "path"), sorted(POLICY))
async def test_a_role_below_the_route_is_403(team: Team, method: str, path: str) -> None:
    # No body: a caller allowed in gets the handler's own answer (400, 404, 200, 204), one
    # below the route's role a 403 before the handler reads anything.
    url = path.format(
        machine_id=MACHINE,
        monitor_id=ANY_UUID,
        trace_job_id=ANY_UUID,
        trace_id=ANY_UUID,
        user_id=ANY_UUID,
        job_id=ANY_UUID,
    )
    need = POLICY[(method, path)]
    for role in RANK:
        r = await team.client.request(method, url, headers=team.auth(role))
        if RANK[role] < RANK[need]:
            who = {"viewer": "view@example.com", "operator": "op@example.com"}[role]
            await expect(r, 403, "PERMISSION_DENIED", f"needs the {need} role; {who} is a {role}")
        else:
            assert r.status not in (401, 403), (role, await r.text())


# --- user management -------------------------------------------------------------------------


async def test_admin_sets_roles_and_they_apply_at_once(team: Team) -> None:
    c = team.client
    r = await c.post(f"/api/v1/machines/{MACHINE}/monitors", headers=team.viewer)
    await expect(r, 403, "PERMISSION_DENIED", "operator")
    users = (await (await c.get("/api/v1/users", headers=team.admin)).json())["users"]
    assert [(u["email"], u["role"]) for u in users] == [
        ("admin@example.com", "admin"),
        ("op@example.com", "operator"),
        ("view@example.com", "viewer"),
    ]
    viewer_id = users[2]["user_id"]
    r = await c.patch(f"/api/v1/users/{viewer_id}", json={"role": "operator"}, headers=team.admin)
    assert r.status == 200 and (await r.json())["role"] == "operator"
    # the same access token, the new role
    r = await c.post(f"/api/v1/machines/{MACHINE}/monitors", headers=team.viewer)
    await expect(r, 400, "INVALID_ARGUMENT")
    r = await c.get(f"/api/v1/users/{viewer_id}", headers=team.admin)
    assert (await r.json())["role"] == "operator"


async def test_the_last_admin_cannot_be_demoted(team: Team) -> None:
    c = team.client
    admin_id = (
        await (
            await c.get("/api/v1/users", params={"filter": "role = admin"}, headers=team.admin)
        ).json()
    )["users"][0]["user_id"]
    r = await c.patch(f"/api/v1/users/{admin_id}", json={"role": "viewer"}, headers=team.admin)
    await expect(r, 409, "FAILED_PRECONDITION", "last admin")
    op_id = (
        await (
            await c.get("/api/v1/users", params={"filter": "email = 'op@*'"}, headers=team.admin)
        ).json()
    )["users"][0]["user_id"]
    r = await c.patch(f"/api/v1/users/{op_id}", json={"role": "admin"}, headers=team.admin)
    assert r.status == 200
    r = await c.patch(f"/api/v1/users/{admin_id}", json={"role": "viewer"}, headers=team.admin)
    assert r.status == 200
    r = await c.get("/api/v1/users", headers=team.admin)  # no longer an admin
    await expect(r, 403, "PERMISSION_DENIED", "admin")


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (f"/api/v1/users/{ANY_UUID}", {"role": "viewer"}, 404, "not found"),
        ("/api/v1/users/not-a-uuid", {"role": "viewer"}, 400, "user_id"),
        (f"/api/v1/users/{ANY_UUID}", {"role": "superuser"}, 400, "role"),
        (f"/api/v1/users/{ANY_UUID}", {"role": "viewer", "email": "x@y.z"}, 400, "email"),
    ],
)
async def test_bad_user_patches(
    team: Team, path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    r = await team.client.patch(path, json=body, headers=team.admin)
    await expect(r, status, "NOT_FOUND" if status == 404 else "INVALID_ARGUMENT", needle)


async def test_users_list_pages_and_filters(team: Team) -> None:
    c = team.client
    seen, token = [], ""
    while True:
        params = {"page_size": "1", "filter": "role != admin"}
        if token:
            params["page_token"] = token
        body = await (await c.get("/api/v1/users", params=params, headers=team.admin)).json()
        seen += [u["email"] for u in body["users"]]
        token = body["next_page_token"]
        if not token:
            break
    assert seen == ["op@example.com", "view@example.com"]
    r = await c.get("/api/v1/users", params={"filter": "password_hash = 'x'"}, headers=team.admin)
    await expect(r, 400, "INVALID_ARGUMENT", "filter:")
    r = await c.get(
        "/api/v1/users",
        params={"filter": "role = viewer", "page_token": token or "garbage"},
        headers=team.admin,
    )
    await expect(r, 400, "INVALID_ARGUMENT", "page_token:")


async def test_a_revoked_session_is_401_before_any_role_check(team: Team) -> None:
    r = await team.client.post("/api/v1/auth:logout", headers=team.viewer)
    assert r.status == 204
    r = await team.client.post(f"/api/v1/machines/{MACHINE}/monitors", headers=team.viewer)
    await expect(r, 401, "UNAUTHENTICATED", "revoked")


async def test_openapi_documents_roles_403_and_429(team: Team) -> None:
    doc = await (await team.client.get("/api/v1/openapi.json")).json()
    for (method, path), role in POLICY.items():
        op = doc["paths"][path][method.lower()]
        assert op["x-required-role"] == role and op["security"] == [{"bearer": []}]
        assert ("403" in op["responses"]) == (role != "viewer"), (method, path)
        assert op["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    login = doc["paths"]["/api/v1/auth:login"]["post"]
    assert (
        "security" not in login and "429" in login["responses"] and "403" not in login["responses"]
    )
    assert {"403", "429"} <= set(doc["paths"]["/api/v1/auth:register"]["post"]["responses"])
    patch = doc["paths"]["/api/v1/users/{user_id}"]["patch"]
    ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    role = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["role"]
    enum = next(r["enum"] for r in role.get("anyOf", [role]) if "enum" in r)  # optional: or null
    assert sorted(enum) == ["admin", "operator", "viewer"]
    assert "invite_token" in doc["components"]["schemas"]["RegisterBody"]["properties"]


async def test_accounts_made_before_roles_become_operators_and_the_oldest_admin(
    fresh_dsn: str, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(path, before)
    async with await psycopg.AsyncConnection.connect(fresh_dsn, autocommit=True) as conn:
        assert await migrate(conn, before) == [1, 2, 3, 4]
        for n, email in enumerate(["old@example.com", "older@example.com", "new@example.com"]):
            await conn.execute(
                "INSERT INTO users (email, password_hash, created_at) VALUES "
                "(%s, 'x', now() - %s * interval '1 day')",
                (email, [2, 3, 1][n]),
            )
        assert (await migrate(conn))[:2] == [5, 6]  # and what came after
        cur = await conn.execute("SELECT email, role FROM users ORDER BY email")
        assert await cur.fetchall() == [
            ("new@example.com", "operator"),
            ("old@example.com", "operator"),
            ("older@example.com", "admin"),
        ]
