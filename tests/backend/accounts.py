"""Accounts for backend tests, made as a deployment makes them: the first one registered is
the bootstrap admin; the others are invited by it (registration is closed by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

__all__ = [
    "PASSWORD",
    "Team",
    "add_user",
    "bearer",
    "first_admin",
    "grant",
    "invite",
    "login",
    "make_team",
]

PASSWORD = "long enough pw"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Authorization headers of a new session of the account."""
    r = await client.post("/api/v1/auth:login", json={"email": email, "password": password})
    assert r.status == 200, await r.text()
    return bearer((await r.json())["access_token"])


async def first_admin(client: TestClient, email: str = "admin@example.com") -> dict[str, str]:
    """Registers the first account (the admin) and logs it in."""
    r = await client.post("/api/v1/auth:register", json={"email": email, "password": PASSWORD})
    assert r.status == 201, await r.text()
    assert (await r.json())["role"] == "admin"
    return await login(client, email)


async def invite(client: TestClient, admin: dict[str, str], email: str, role: str) -> str:
    r = await client.post(
        "/api/v1/users:invite", json={"email": email, "role": role}, headers=admin
    )
    assert r.status == 201, await r.text()
    token: str = (await r.json())["invite_token"]
    return token


async def add_user(
    client: TestClient,
    admin: dict[str, str],
    email: str,
    role: str = "viewer",
    unix_accounts: tuple[str, ...] = ("root",),
) -> dict[str, str]:
    """An account the admin invited with role, registered with the invite and logged in; an
    operator is granted unix_accounts (the tests' workloads run as root)."""
    token = await invite(client, admin, email, role)
    body: dict[str, Any] = {"email": email, "password": PASSWORD, "invite_token": token}
    r = await client.post("/api/v1/auth:register", json=body)
    assert r.status == 201, await r.text()
    user = await r.json()
    assert user["role"] == role
    if role == "operator" and unix_accounts:
        await grant(client, admin, user["user_id"], list(unix_accounts))
    return await login(client, email)


async def grant(
    client: TestClient, admin: dict[str, str], user_id: str, accounts: list[str]
) -> None:
    """The admin grants the user these Unix accounts (the target policy)."""
    r = await client.patch(
        f"/api/v1/users/{user_id}", json={"unix_accounts": accounts}, headers=admin
    )
    assert r.status == 200, await r.text()
    assert (await r.json())["unix_accounts"] == sorted(set(accounts))


@dataclass
class Team:
    """admin@example.com (the first account), op@example.com, view@example.com, logged in."""

    client: TestClient
    admin: dict[str, str]
    operator: dict[str, str]
    viewer: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        auth: dict[str, str] = getattr(self, role)
        return auth


async def make_team(client: TestClient) -> Team:
    admin = await first_admin(client)
    return Team(
        client,
        admin,
        await add_user(client, admin, "op@example.com", "operator"),
        await add_user(client, admin, "view@example.com", "viewer"),
    )
