# ruff: noqa: RUF001, RUF003 (look-alike letters are what is tested)
"""Accounts (issue #20 section 5): new passwords follow one rule (backend.password_policy,
said in the 400), e-mails are stored NFKC-normalised in lower case, and an address that
looks like an existing account's (Cyrillic or Greek letters, full-width forms, 0 for o) is
refused with 409 ALREADY_EXISTS naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend import emails
from backend.app import create_app
from backend.password_policy import RULE, problem
from tests.backend.accounts import PASSWORD, first_admin, login
from tests.pg_fixtures import backend_settings

REGISTER = "/api/v1/auth:register"


@pytest.fixture
async def client(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> TestClient:
    client: TestClient = await aiohttp_client(
        create_app(backend_settings(migrated_dsn, tmp_path, open_registration=True))
    )
    return client


async def error_of(r: Any, status: int, code: str) -> str:
    assert r.status == status, await r.text()
    error = (await r.json())["error"]
    assert error["status"] == code, error
    message: str = error["message"]
    return message


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("elevenchars", "is 11 characters; at least 12"),
        ("Password1234!", "commonly used"),
        ("P@ssw0rd2024", "commonly used"),
        ("qwertyqwerty", "commonly used"),
        ("iloveyou!!!!", "commonly used"),
        ("zzzzzzzzzzzzzz", "3 different characters or fewer"),
        ("123456789012", "run of keys"),
        ("asdfghjkl;'", "is 11"),
        ("ada.lovelace1815", "e-mail address or its part before '@'"),
        ("ADA.LOVELACE@example.com", "e-mail address"),
    ],
)
async def test_weak_passwords_are_refused_with_the_rule(
    client: TestClient, password: str, why: str
) -> None:
    await first_admin(client)
    r = await client.post(
        REGISTER, json={"email": "ada.lovelace@example.com", "password": password}
    )
    message = await error_of(r, 400, "INVALID_ARGUMENT")
    assert message.startswith("password: ") and why in message, message
    assert RULE in message


@pytest.mark.parametrize(
    "password",
    ["long enough pw", "correct horse battery", "Tr0ub4dor&3-blue", "ada lovelace counted first"],
)
def test_good_passwords_pass(password: str) -> None:
    assert problem(password, "ada.lovelace@example.com") is None


async def test_emails_are_stored_nfkc_in_lower_case(client: TestClient) -> None:
    r = await client.post(REGISTER, json={"email": "ＡＤＡ@Example.COM", "password": PASSWORD})
    assert r.status == 201, await r.text()
    assert (await r.json())["email"] == "ada@example.com"
    await login(client, "Ada@EXAMPLE.com")
    await login(client, "ａｄａ@example.com")  # full-width is the same account
    r = await client.post(REGISTER, json={"email": "ada@example.com", "password": PASSWORD})
    assert "already registered" in await error_of(r, 409, "ALREADY_EXISTS")


@pytest.mark.parametrize(
    "look_alike",
    [
        "аdmin@example.com",  # Cyrillic а
        "ADMİN@example.com".replace("İ", "Ι"),  # Greek capital iota
        "adm1n@example.com".replace("1", "і"),  # Cyrillic і
        "admin@ехample.com",  # Cyrillic е and х
        "admin@examp1e.com",  # digit 1 for l
        "admin@exarnple.com",  # rn for m
    ],
)
async def test_look_alikes_of_an_account_are_refused(client: TestClient, look_alike: str) -> None:
    admin = await first_admin(client, "admin@example.com")
    assert emails.skeleton(look_alike) == emails.skeleton("admin@example.com")
    r = await client.post(REGISTER, json={"email": look_alike, "password": PASSWORD})
    message = await error_of(r, 409, "ALREADY_EXISTS")
    assert message.startswith("email: ")
    assert "looks like the address of an existing account" in message
    assert "admin@example.com" not in message  # not told to whoever registers
    r = await client.post(
        "/api/v1/users:invite", headers=admin, json={"email": look_alike, "role": "viewer"}
    )
    message = await error_of(r, 409, "ALREADY_EXISTS")
    assert message.startswith("email: ") and "'admin@example.com'" in message  # an admin is


async def test_different_addresses_are_not_look_alikes(client: TestClient) -> None:
    await first_admin(client, "admin@example.com")
    for email in ("admins@example.com", "adrian@example.com", "admin@example.org"):
        r = await client.post(REGISTER, json={"email": email, "password": PASSWORD})
        assert r.status == 201, (email, await r.text())
