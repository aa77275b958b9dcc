"""Auth over HTTP against a real PostgreSQL: register, login, refresh (as the seed: the refresh
token is kept; rotation as a setting), logout, 401s.

Registration is opened here (open_registration) so that these tests of the token mechanics
can register several accounts; closed registration and invites are tested in test_roles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend import tokens
from backend.app import create_app
from backend.settings import Settings
from tests.pg_fixtures import backend_settings

SECRET = "s" * 40


@pytest.fixture
async def client(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> TestClient:
    settings = backend_settings(
        migrated_dsn, tmp_path, jwt_secret=SECRET, access_token_ttl_s=60, open_registration=True
    )
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def rotating(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> TestClient:
    settings = backend_settings(
        migrated_dsn,
        tmp_path,
        jwt_secret=SECRET,
        access_token_ttl_s=60,
        refresh_token_rotation=True,
        open_registration=True,
    )
    return await aiohttp_client(create_app(settings))


async def register_and_login(client: TestClient, email: str = "ada@example.com") -> dict[str, Any]:
    r = await client.post(
        "/api/v1/auth:register",
        json={"email": email, "password": "correct horse", "display_name": "Ada"},
    )
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["email"] == email and body["display_name"] == "Ada" and body["user_id"]
    r = await client.post("/api/v1/auth:login", json={"email": email, "password": "correct horse"})
    assert r.status == 200
    return await r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_error(r: Any, status: int, code: str, needle: str) -> None:
    assert r.status == status, await r.text()
    body = await r.json()
    assert body["error"]["code"] == status
    assert body["error"]["status"] == code
    assert needle in body["error"]["message"]


async def test_register_login_and_use_token(client: TestClient) -> None:
    tok = await register_and_login(client)
    assert tok["expires_in"] == 60 and tok["refresh_token"]
    r = await client.post("/api/v1/auth:logout", headers=bearer(tok["access_token"]))
    assert r.status == 204


async def test_duplicate_email_is_409_already_exists(client: TestClient) -> None:
    await register_and_login(client)
    r = await client.post(
        "/api/v1/auth:register", json={"email": "ADA@example.com", "password": "another pass"}
    )
    await assert_error(r, 409, "ALREADY_EXISTS", "already registered")


async def test_wrong_password_is_401(client: TestClient) -> None:
    await register_and_login(client)
    r = await client.post(
        "/api/v1/auth:login", json={"email": "ada@example.com", "password": "wrong"}
    )
    await assert_error(r, 401, "UNAUTHENTICATED", "wrong email or password")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "ada@example.com"}, "password"),
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "ada@example.com", "password": "short"}, "password"),
        ({"email": 5, "password": "long enough"}, "email"),
        ({"email": "ada@example.com", "password": "long enough pw", "admin": True}, "admin"),
    ],
)
async def test_register_names_the_bad_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/api/v1/auth:register", json=body)
    await assert_error(r, 400, "INVALID_ARGUMENT", f"{field}:")


async def test_malformed_json_is_400(client: TestClient) -> None:
    r = await client.post(
        "/api/v1/auth:login", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    await assert_error(r, 400, "INVALID_ARGUMENT", "body: invalid JSON")


async def test_refresh_token_is_kept_as_the_seed_says(client: TestClient) -> None:
    """seeds/003: auth:refreshToken answers {access_token, expires_in}; a client keeps its
    refresh token and refreshes with it again, as often as it needs, until logout."""
    tok = await register_and_login(client)
    for _ in range(3):
        r = await client.post(
            "/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]}
        )
        assert r.status == 200, await r.text()
        new = await r.json()
        assert set(new) == {"access_token", "expires_in"} and new["expires_in"] == 60
        r = await client.get("/api/v1/machines", headers=bearer(new["access_token"]))
        assert r.status == 200
    r = await client.post("/api/v1/auth:logout", headers=bearer(new["access_token"]))
    assert r.status == 204
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]})
    await assert_error(r, 401, "UNAUTHENTICATED", "refresh_token")


def test_rotation_setting_from_the_environment() -> None:
    assert not Settings.from_env({}).refresh_token_rotation
    assert Settings.from_env({"XPUTRACE_REFRESH_TOKEN_ROTATION": "true"}).refresh_token_rotation
    assert not Settings.from_env({"XPUTRACE_REFRESH_TOKEN_ROTATION": "0"}).refresh_token_rotation
    with pytest.raises(ValueError, match="XPUTRACE_REFRESH_TOKEN_ROTATION"):
        Settings.from_env({"XPUTRACE_REFRESH_TOKEN_ROTATION": "maybe"})


async def test_refresh_rotates_and_replay_revokes(rotating: TestClient) -> None:
    client = rotating
    tok = await register_and_login(client)
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]})
    assert r.status == 200
    new = await r.json()
    assert new["refresh_token"] != tok["refresh_token"] and new["access_token"]
    r = await client.post("/api/v1/auth:logout", headers=bearer(new["access_token"]))
    assert r.status == 204
    tok = await register_and_login(client, "bob@example.com")
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]})
    new = await r.json()
    # the old one was rotated: using it again is a replay, and revokes the new one too
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]})
    await assert_error(r, 401, "UNAUTHENTICATED", "refresh_token")
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": new["refresh_token"]})
    await assert_error(r, 401, "UNAUTHENTICATED", "refresh_token")


async def test_logout_revokes_refresh_token(client: TestClient) -> None:
    tok = await register_and_login(client)
    r = await client.post("/api/v1/auth:logout", headers=bearer(tok["access_token"]))
    assert r.status == 204
    r = await client.post("/api/v1/auth:refreshToken", json={"refresh_token": tok["refresh_token"]})
    await assert_error(r, 401, "UNAUTHENTICATED", "refresh_token")
    # the access token of that session is revoked too, before it expires
    r = await client.post("/api/v1/auth:logout", headers=bearer(tok["access_token"]))
    await assert_error(r, 401, "UNAUTHENTICATED", "revoked")


async def test_missing_expired_and_forged_tokens_are_401(client: TestClient) -> None:
    tok = await register_and_login(client)
    r = await client.post("/api/v1/auth:logout")
    await assert_error(r, 401, "UNAUTHENTICATED", "Bearer")
    uid, sid = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
    expired = tokens.issue_access_token(SECRET, uid, sid, 10, now=time.time() - 3600)
    r = await client.post("/api/v1/auth:logout", headers=bearer(expired))
    await assert_error(r, 401, "UNAUTHENTICATED", "invalid or expired")
    forged = tokens.issue_access_token("x" * 40, uid, sid, 60)
    r = await client.post("/api/v1/auth:logout", headers=bearer(forged))
    await assert_error(r, 401, "UNAUTHENTICATED", "invalid or expired")
    r = await client.post("/api/v1/auth:logout", headers=bearer(tok["refresh_token"]))
    await assert_error(r, 401, "UNAUTHENTICATED", "invalid or expired")


async def test_openapi_document_is_public_and_lists_routes(client: TestClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc["openapi"].startswith("3.")
    login = doc["paths"]["/api/v1/auth:login"]["post"]
    assert "security" not in login
    schema_ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert schema_ref.endswith("/LoginBody")
    assert "email" in doc["components"]["schemas"]["LoginBody"]["properties"]
    assert doc["paths"]["/api/v1/auth:logout"]["post"]["security"] == [{"bearer": []}]


def test_tokens_never_read_as_command_line_options() -> None:
    """Invite and refresh tokens are typed after flags (`register --invite TOKEN`): none may
    begin with '-' (1 in 64 of URL-safe base64 strings do)."""
    made = [tokens.new_refresh_token() for _ in range(5000)]
    assert not [t for t in made if t.startswith("-")]
    assert len(set(made)) == len(made) and {len(t) for t in made} == {43}
