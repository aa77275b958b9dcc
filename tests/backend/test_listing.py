"""order_by and filter on machines and monitors (seeds/003 sections 2 and 3), against a real
PostgreSQL: each order is followed across pages of one, and filters on status and last_seen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.repo import machines, monitors
from backend.typedefs import DB
from tests.pg_fixtures import backend_settings

# id order a < b < c < d differs from every order the tests ask for
MACHINES = [  # id, hostname, seconds since last seen, manager status
    ("a" * 64, "gpu3", 120, "RUNNING"),
    ("b" * 64, "gpu1", 1, "RUNNING"),
    ("c" * 64, "gpu4", 30, "STOPPED"),
    ("d" * 64, "gpu2", 2, "RUNNING"),
]
HOST = "b" * 64
MONITORS = [  # display name, status, seconds since created
    ("first", "STOPPED", 50),
    ("second", "RUNNING", 40),
    ("third", "FAILED_TO_START", 30),
    ("fourth", "RUNNING", 20),
    ("fifth", "ERROR", 10),
]


@pytest.fixture
async def api(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> tuple[TestClient, dict]:
    settings = backend_settings(migrated_dsn, tmp_path, heartbeat_timeout_s=10.0)
    client = await aiohttp_client(create_app(settings))
    async with client.server.app[DB].connection() as conn:
        for mid, host, age, status in MACHINES:
            await machines.record_hello(conn, mid, f"key-{host}", {"hostname": host})
            await conn.execute(
                "UPDATE machines SET last_seen = now() - make_interval(secs => %s), "
                "agent_manager_status = %s WHERE id = %s",
                (age, status, mid),
            )
        for name, status, age in MONITORS:
            m = await monitors.create_monitor(conn, HOST, "CUDA", {"pid": 1}, {}, name)
            await conn.execute(
                "UPDATE monitors SET status = %s, create_time = now() - make_interval(secs => %s)"
                " WHERE id = %s",
                (status, age, m["id"]),
            )
    await client.post(
        "/api/v1/auth:register", json={"email": "e@example.com", "password": "long enough pw"}
    )
    r = await client.post(
        "/api/v1/auth:login", json={"email": "e@example.com", "password": "long enough pw"}
    )
    return client, {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def every_page(
    client: TestClient, auth: dict, path: str, key: str, **params: str
) -> list[dict[str, Any]]:
    """Every item, following next_page_token one item at a time."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        r = await client.get(
            path, params={**params, "page_size": "1", "page_token": token}, headers=auth
        )
        body = await r.json()
        assert r.status == 200, body
        items += body[key]
        token = body["next_page_token"]
        if not token:
            return items


@pytest.mark.parametrize(
    ("order_by", "hosts"),
    [
        ("last_seen desc", ["gpu1", "gpu2", "gpu4", "gpu3"]),
        ("last_seen", ["gpu3", "gpu4", "gpu2", "gpu1"]),
        ("hostname", ["gpu1", "gpu2", "gpu3", "gpu4"]),
        ("hostname desc", ["gpu4", "gpu3", "gpu2", "gpu1"]),
    ],
)
async def test_machines_order_by(api: Any, order_by: str, hosts: list[str]) -> None:
    client, auth = api
    found = await every_page(client, auth, "/api/v1/machines", "machines", order_by=order_by)
    assert [m["hostname"] for m in found] == hosts


@pytest.mark.parametrize(
    ("filter_", "hosts"),
    [
        ("status = ACTIVE", {"gpu1", "gpu2"}),
        ("status = INACTIVE", {"gpu3", "gpu4"}),
        ("status != ACTIVE AND hostname = gpu4", {"gpu4"}),
    ],
)
async def test_machines_filter_on_status(api: Any, filter_: str, hosts: set[str]) -> None:
    client, auth = api
    found = await every_page(client, auth, "/api/v1/machines", "machines", filter=filter_)
    assert {m["hostname"] for m in found} == hosts
    assert all(
        m["status"] == ("ACTIVE" if m["hostname"] in ("gpu1", "gpu2") else "INACTIVE")
        for m in found
    )


async def test_machines_filter_on_last_seen(api: Any) -> None:
    client, auth = api
    r = await client.get("/api/v1/machines", params={"order_by": "last_seen desc"}, headers=auth)
    seen = [m["last_seen"] for m in (await r.json())["machines"]]
    found = await every_page(
        client,
        auth,
        "/api/v1/machines",
        "machines",
        filter=f'last_seen < "{seen[1]}"',
        order_by="hostname",
    )
    assert [m["hostname"] for m in found] == ["gpu3", "gpu4"]


@pytest.mark.parametrize(
    ("order_by", "names"),
    [
        ("", ["first", "second", "third", "fourth", "fifth"]),
        ("create_time desc", ["fifth", "fourth", "third", "second", "first"]),
        # ties (two RUNNING) break by id, so only the set within a status is fixed
        ("status", [{"fifth"}, {"third"}, {"second", "fourth"}, {"second", "fourth"}, {"first"}]),
        ("status desc, create_time desc", ["first", "fourth", "second", "third", "fifth"]),
    ],
)
async def test_monitors_order_by(api: Any, order_by: str, names: list[Any]) -> None:
    client, auth = api
    found = await every_page(
        client, auth, f"/api/v1/machines/{HOST}/monitors", "monitors", order_by=order_by
    )
    got = [m["display_name"] for m in found]
    assert len(got) == len(names)
    for g, want in zip(got, names, strict=True):
        assert g in want if isinstance(want, set) else g == want, got


async def test_order_by_names_the_parameter(api: Any) -> None:
    client, auth = api
    for path in ("/api/v1/machines", f"/api/v1/machines/{HOST}/monitors"):
        r = await client.get(path, params={"order_by": "pid"}, headers=auth)
        body = await r.json()
        assert r.status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"].startswith("order_by: cannot sort by 'pid'")


async def test_page_token_is_bound_to_its_order(api: Any) -> None:
    client, auth = api
    r = await client.get(
        "/api/v1/machines", params={"order_by": "hostname", "page_size": "1"}, headers=auth
    )
    token = (await r.json())["next_page_token"]
    r = await client.get(
        "/api/v1/machines", params={"order_by": "last_seen", "page_token": token}, headers=auth
    )
    assert r.status == 400 and "different order_by" in (await r.json())["error"]["message"]
