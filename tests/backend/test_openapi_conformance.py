"""The OpenAPI document says what the server checks and answers: schemathesis (`st run
--checks all`) against a live backend on a real PostgreSQL finds nothing.

The auth endpoints are left out (the run would log its own token out); they have their own
tests. The run is the first account, an admin: it reaches the users endpoints too, and cannot
lock itself out (the last admin cannot be demoted; invites make no account). Examples per
operation are bounded to keep the run near a minute on two cores.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.app import create_app
from backend.handlers.openapi import build_document
from tests.pg_fixtures import backend_settings

ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).with_name("st")
# 10: about 590 requests, 75 s on two shared cores (the coverage phase's boundary values
# take most of it); XPUTRACE_ST_EXAMPLES=100 for a deeper run
MAX_EXAMPLES = int(os.environ.get("XPUTRACE_ST_EXAMPLES", "10"))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_schemathesis_finds_nothing(
    aiohttp_server: Any, aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    server = await aiohttp_server(create_app(backend_settings(migrated_dsn, tmp_path)))
    client = await aiohttp_client(server)
    user = {"email": "st@example.com", "password": "long enough pw"}
    assert (await client.post("/api/v1/auth:register", json=user)).status == 201
    token = (await (await client.post("/api/v1/auth:login", json=user)).json())["access_token"]
    base = f"http://127.0.0.1:{server.port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.backend.st_hooks"}
    proc = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        f"{base}/api/v1/openapi.json",
        "--url",
        base,
        "--checks",
        "all",
        "-H",
        f"Authorization: Bearer {token}",
        "--exclude-path-regex",
        "auth:",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "21",
        "--no-color",
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "st"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    (tmp_path / "st.txt").write_text(text)
    assert proc.returncode == 0, f"{tmp_path / 'st.txt'}\n{text[-20000:]}"
    # The run is the admin, and reaches PATCH /users/{user_id} with its own id (links from GET
    # /users): the last admin cannot be demoted (409), so it never locks itself out.
    me = await client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200 and [u["role"] for u in (await me.json())["users"]] == ["admin"]
    summary = text[text.find("Test cases:") :].splitlines()[:2]
    print(" ".join(line.strip() for line in summary))  # shown with -s: how many were sent


def test_every_operation_lists_its_answers(migrated_dsn: str, tmp_path: Path) -> None:
    """Each answer with its body, no catch-all: auth:logout is a 204 without a body, a 405
    is no operation's, monitors say which target each type needs."""
    doc = build_document(create_app(backend_settings(migrated_dsn, tmp_path)))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "default" not in op["responses"], (method, path)
            for code, answer in op["responses"].items():
                if code in ("202", "204"):
                    assert "content" not in answer or code == "202", (method, path)
                else:
                    assert answer["content"], (method, path, code)
    logout = doc["paths"]["/api/v1/auth:logout"]["post"]["responses"]
    assert sorted(logout) == ["204", "401", "429", "500", "503"] and "content" not in logout["204"]
    create = doc["components"]["schemas"]["MonitorCreate"]
    python = next(
        b for b in create["oneOf"] if b["properties"]["monitor_type"] == {"const": "PYTHON"}
    )
    assert python["properties"]["target"]["required"] == ["pid"]
    events = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert events["filter"]["format"] == "xputrace-filter-events"
    assert events["page_size"]["type"] == "integer"
    # the admin's endpoints: their filters, path ids, bodies and conflicts
    users = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/users"]["get"]["parameters"]}
    assert users["filter"]["format"] == "xputrace-filter-users" and "order_by" not in users
    logs = doc["paths"]["/api/v1/auditLogs"]["get"]
    assert logs["parameters"][0]["schema"]["format"] == "xputrace-filter-audit-logs"
    assert (
        "audit_logs"
        in logs["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    )
    patch = doc["paths"]["/api/v1/users/{user_id}"]["patch"]
    assert patch["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert {"200", "400", "403", "404", "409"} <= set(patch["responses"])
    assert "409" in doc["paths"]["/api/v1/users:invite"]["post"]["responses"]
