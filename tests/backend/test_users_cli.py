"""xputrace users / audit / register --invite against a backend on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from backend import cli
from backend.app import create_app
from tests.pg_fixtures import backend_settings


async def test_admin_invites_sets_roles_and_reads_the_audit_log(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await aiohttp_client(create_app(backend_settings(migrated_dsn, tmp_path)))
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": "cli password 123")
    url = str(client.make_url("/")).rstrip("/")

    async def xputrace(*argv: str, rc: int = 0) -> str:
        capsys.readouterr()
        got = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capsys.readouterr()
        assert got == rc, out.err
        return out.out if rc == 0 else out.err

    assert json.loads(await xputrace("register", "root@example.com"))["role"] == "admin"
    err = await xputrace("register", "bob@example.com", rc=1)  # logs nobody out
    assert "403 registration is closed" in err
    invite = json.loads(await xputrace("users", "invite", "Bob@example.com", "--role", "operator"))
    assert (invite["email"], invite["role"]) == ("bob@example.com", "operator")
    r = await client.post(
        "/api/v1/auth:register",
        json={
            "email": "bob@example.com",
            "password": "bob's password",
            "invite_token": invite["invite_token"],
        },
    )
    assert r.status == 201
    users = [json.loads(line) for line in (await xputrace("users")).splitlines()]
    assert [(u["email"], u["role"]) for u in users] == [
        ("root@example.com", "admin"),
        ("bob@example.com", "operator"),
    ]
    bob = json.loads(await xputrace("users", "set-role", "bob@example.com", "viewer"))
    assert bob["role"] == "viewer"
    assert (
        json.loads(await xputrace("users", "set-role", users[1]["user_id"], "admin"))["role"]
        == "admin"
    )
    err = await xputrace("users", "set-role", "nobody@example.com", "admin", rc=1)
    assert "no user has the e-mail nobody@example.com" in err
    audit = [
        json.loads(line)
        for line in (await xputrace("audit", "--filter", "action = SET_ROLE")).splitlines()
    ]
    assert [e["message"] for e in audit] == [
        "bob@example.com is now admin",
        "bob@example.com is now viewer",
    ]
    assert len((await xputrace("audit", "--limit", "1")).splitlines()) == 1
    # a viewer is told what is missing
    invite = json.loads(await xputrace("users", "invite", "eve@example.com"))
    await xputrace("register", "eve@example.com", "--invite", invite["invite_token"])
    err = await xputrace("users", rc=1)
    assert "GET /users: 403" in err and "needs the admin role" in err
