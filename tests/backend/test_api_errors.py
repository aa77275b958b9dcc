"""Every endpoint's bad input: 400 naming the field, 404 and 401 in the seed's error body;
machines that stop sending heartbeats turn INACTIVE; garbage on the ingest socket is counted."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio
from aiohttp.test_utils import TestClient
from zmq.utils.monitor import recv_monitor_message

from backend.app import create_app
from backend.repo import machines, monitors
from backend.settings import Settings
from backend.typedefs import DB, INGEST
from manager import keys as manager_keys
from tests.pg_fixtures import backend_settings
from xpucore import abi

MACHINE = "m" * 64
OLD = "o" * 64


@pytest.fixture
async def api(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> tuple[TestClient, dict]:
    settings = backend_settings(migrated_dsn, tmp_path, heartbeat_timeout_s=5.0)
    client = await aiohttp_client(create_app(settings))
    app = client.server.app
    async with app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
        await machines.record_hello(conn, OLD, "key-b", {"hostname": "gpu2"})
        await conn.execute(
            "UPDATE machines SET last_seen = now() - interval '1 minute' WHERE id = %s", (OLD,)
        )
        await monitors.create_monitor(conn, OLD, "CUDA", {"pid": 1}, {}, "old one")
    await client.post(
        "/api/v1/auth:register", json={"email": "e@example.com", "password": "long enough pw"}
    )
    r = await client.post(
        "/api/v1/auth:login", json={"email": "e@example.com", "password": "long enough pw"}
    )
    token = (await r.json())["access_token"]
    return client, {"Authorization": f"Bearer {token}"}


async def expect(r: Any, status: int, code: str, needle: str) -> None:
    body = await r.json()
    assert r.status == status, body
    assert body == {"error": {"code": status, "status": code, "message": body["error"]["message"]}}
    assert needle in body["error"]["message"], body


MON = f"/api/v1/machines/{MACHINE}/monitors"


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        ("GET", "/api/v1/events", {"filter": "pid = 'x'"}, "filter:"),
        ("GET", "/api/v1/events", {"filter": "nosuch = 1"}, "unknown field 'nosuch'"),
        ("GET", "/api/v1/events", {"filter": "(pid = 1"}, "filter:"),
        ("GET", "/api/v1/events", {"order_by": "bogus desc"}, "order_by:"),
        ("GET", "/api/v1/events", {"page_size": "-1"}, "page_size:"),
        ("GET", "/api/v1/events", {"page_token": "garbage"}, "page_token:"),
        ("GET", "/api/v1/events", {"fields": "pid,nosuch"}, "fields:"),
        (
            "GET",
            "/api/v1/events",
            {"fields": ",".join(["event_data" + ".a" * 449] * 4)},
            "fields: 'event_data.a.a",
        ),
        ("GET", "/api/v1/events", {"fields": "event_data" + ".a" * 1999}, "levels deep"),
        (
            "GET",
            "/api/v1/events",
            {"fields": ",".join(f"event_data.a{i}" for i in range(33))},
            "at most 32",
        ),
        ("GET", "/api/v1/machines", {"filter": "hostname >"}, "filter:"),
        ("GET", "/api/v1/machines", {"page_token": "x"}, "page_token:"),
        ("GET", MON, {"filter": "status = "}, "filter:"),
        ("GET", MON, {"page_size": "abc"}, "page_size:"),
    ],
)
async def test_bad_query_parameters_name_the_field(
    api: Any, method: str, path: str, params: dict[str, str], field: str
) -> None:
    client, auth = api
    r = await client.request(method, path, params=params, headers=auth)
    await expect(r, 400, "INVALID_ARGUMENT", field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "monitor_type"),
        ({"monitor_type": "GPU", "target": {"pid": 1}}, "monitor_type"),
        ({"monitor_type": "CUDA"}, "target"),
        ({"monitor_type": "CUDA", "target": {}}, "target"),
        ({"monitor_type": "CUDA", "target": {"pid": 0}}, "target.pid"),
        ({"monitor_type": "CUDA", "target": {"pid": "12"}}, "target.pid"),
        ({"monitor_type": "CUDA", "target": {"library_path": "rel/lib.so"}}, "target.library_path"),
        ({"monitor_type": "CUDA", "target": {"pid": 1, "shell": "rm -rf /"}}, "target.shell"),
        (
            {"monitor_type": "CUDA", "target": {"pid": 1}, "config": {"sampling_rate": 2}},
            "config.sampling_rate",
        ),
        ({"monitor_type": "CUDA", "target": {"pid": 1, "syscalls": ["read"]}}, "target.syscalls"),
        ({"monitor_type": "SYSCALL", "target": {}}, "target"),
        (
            {"monitor_type": "SYSCALL", "target": {"library_path": "/usr/lib/libc.so.6"}},
            "target.library_path",
        ),
        (
            {"monitor_type": "SYSCALL", "target": {"pid": 1, "syscalls": ["read", "readd"]}},
            "target.syscalls[1]",
        ),
        (
            {"monitor_type": "SYSCALL", "target": {"pid": 1, "syscalls": ["read;ls"]}},
            "target.syscalls[0]",
        ),
        ({"monitor_type": "SYSCALL", "target": {"pid": 1, "syscalls": []}}, "target.syscalls"),
    ],
)
async def test_bad_monitor_body_names_the_field(api: Any, body: dict[str, Any], field: str) -> None:
    client, auth = api
    r = await client.post(MON, json=body, headers=auth)
    await expect(r, 400, "INVALID_ARGUMENT", f"{field}:")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/machines/nosuch"),
        ("GET", "/api/v1/machines/nosuch/monitors"),
        ("POST", "/api/v1/machines/nosuch/monitors"),
        ("GET", f"{MON}/00000000-0000-4000-8000-000000000000"),
        ("DELETE", f"{MON}/00000000-0000-4000-8000-000000000000"),
        ("GET", "/api/v1/nosuch"),
    ],
)
async def test_unknown_resources_are_404(api: Any, method: str, path: str) -> None:
    client, auth = api
    body = {"monitor_type": "CUDA", "target": {"pid": 1}} if method == "POST" else None
    r = await client.request(method, path, json=body, headers=auth)
    await expect(r, 404, "NOT_FOUND", "not found" if path[-6:] != "nosuch" else "")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_malformed_monitor_id_is_400(api: Any, method: str) -> None:
    client, auth = api
    r = await client.request(method, f"{MON}/not-a-uuid", headers=auth)
    await expect(r, 400, "INVALID_ARGUMENT", "monitor_id: 'not-a-uuid' is not a UUID")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/machines", "GET,HEAD"),
        ("DELETE", MON, "GET,HEAD,POST"),
        ("GET", "/api/v1/auth:logout", "POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(api: Any, method: str, path: str, allow: str) -> None:
    """RFC 9110 15.5.6: a 405 carries Allow; the body names a gRPC status."""
    client, auth = api
    r = await client.request(method, path, headers=auth)
    await expect(r, 405, "UNIMPLEMENTED", "Method Not Allowed")
    assert sorted(r.headers["Allow"].split(",")) == sorted(allow.split(","))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/machines"),
        ("GET", f"/api/v1/machines/{MACHINE}"),
        ("GET", MON),
        ("POST", MON),
        ("GET", "/api/v1/events"),
        ("DELETE", f"{MON}/x"),
    ],
)
async def test_every_endpoint_needs_a_token(api: Any, method: str, path: str) -> None:
    client, _ = api
    r = await client.request(method, path)
    await expect(r, 401, "UNAUTHENTICATED", "Bearer")


async def test_machine_without_heartbeats_is_inactive(api: Any) -> None:
    client, auth = api
    listed = {
        m["id"]: m["status"]
        for m in (await (await client.get("/api/v1/machines", headers=auth)).json())["machines"]
    }
    assert listed == {MACHINE: "ACTIVE", OLD: "INACTIVE"}
    old = await (await client.get(f"/api/v1/machines/{OLD}", headers=auth)).json()
    assert old["status"] == "INACTIVE"
    assert [m["machine_status"] for m in old["monitors"]] == ["INACTIVE"]


async def ingest_and_sender(
    aiohttp_client: Any, dsn: str, tmp_path: Path, enroll: bool
) -> tuple[Any, Settings, zmq.asyncio.Context, Any, Any]:
    """A backend, and a CURVE DEALER toward its ingest with a key it enrolled (or not)."""
    settings = backend_settings(dsn, tmp_path)
    pub, secret = manager_keys.generate(tmp_path / "sender")
    if enroll:
        settings.enrolled_dir.mkdir(parents=True)
        shutil.copy(pub, settings.enrolled_dir / "sender.key")
    client = await aiohttp_client(create_app(settings))
    server_public, _ = zmq.auth.load_certificate(str(settings.keys_dir / "backend.key"))
    public, sender_secret = zmq.auth.load_certificate(str(secret))
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
        server_public,
        public,
        sender_secret,
    )
    app = client.server.app
    async with app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "another key", {"hostname": "gpu1"})
    return app[INGEST], settings, ctx, sock, app


async def test_garbage_on_the_ingest_socket_is_counted_and_others_get_through(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    ingest, settings, ctx, push, app = await ingest_and_sender(
        aiohttp_client, migrated_dsn, tmp_path, enroll=True
    )
    mon = await sender_monitor(app, tmp_path)
    push.connect(settings.ingest_endpoint)
    events = abi.empty_events(3)
    events["ts_ns"] = np.arange(3) + 1_000
    events["func"] = 0x400
    good = abi.encode_batch(
        events, monitor_id=mon, machine_id=MACHINE, mono_to_real_ns=time.time_ns()
    )
    try:
        await push.send(b"garbage that is no batch")
        await push.send(good[:50])  # truncated
        await push.send(b"\0" * (65 << 20))  # oversized: the socket drops the peer's frame
        await push.send(good)
        await ingest.flushed()
        for _ in range(200):
            if ingest.stats.malformed >= 2 and ingest.stats.batches:
                break
            await asyncio.sleep(0.05)
            await ingest.flushed()
    finally:
        push.close(linger=0)
        ctx.term()
    assert ingest.stats.malformed == 2
    assert (ingest.stats.batches, ingest.stats.events, ingest.stats.rejected) == (1, 3, 0)


async def sender_monitor(
    app: Any, tmp_path: Path, status: str = "RUNNING", machine: str = MACHINE
) -> str:
    """A monitor in status on machine, which is bound (by its hello) to the sender's key."""
    key = zmq.auth.load_certificate(str(tmp_path / "sender" / "manager.key"))[0].decode()
    async with app[DB].connection() as conn:
        await conn.execute("UPDATE machines SET public_key = %s WHERE id = %s", (key, machine))
        m = await monitors.create_monitor(conn, machine, "CUDA", {"pid": 1}, {}, "sent")
        await conn.execute("UPDATE monitors SET status = %s WHERE id = %s", (status, m["id"]))
    return str(m["id"])


async def test_unenrolled_sender_is_refused_and_counted(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    ingest, settings, ctx, sock, _ = await ingest_and_sender(
        aiohttp_client, migrated_dsn, tmp_path, enroll=False
    )
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    sock.connect(settings.ingest_endpoint)
    try:
        event = await asyncio.wait_for(recv_monitor_message(mon), 10)
        assert event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        for _ in range(200):  # the server side counts its own refusal
            if ingest.stats.unauthenticated:
                break
            await asyncio.sleep(0.05)
    finally:
        sock.disable_monitor()
        mon.close(linger=0)
        sock.close(linger=0)
        ctx.term()
    assert ingest.stats.unauthenticated >= 1
    assert ingest.stats.batches == ingest.stats.malformed == 0


async def test_the_server_header_names_no_versions(api: Any) -> None:
    client, _ = api
    for path in ("/api/v1/openapi.json", "/api/v1/machines", "/nowhere"):
        r = await client.get(path)
        assert r.headers["Server"] == "xputrace", (path, r.headers["Server"])


async def test_batches_are_believed_only_for_the_senders_machine_and_live_monitors(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    """An enrolled key claiming another machine, a monitor that is not its machine's, or
    one that has ended, is counted and dropped; a forged copy of a real batch's (monitor,
    agent, seq) sent first does not make the real one a duplicate."""
    ingest, settings, ctx, push, app = await ingest_and_sender(
        aiohttp_client, migrated_dsn, tmp_path, enroll=True
    )
    mine = await sender_monitor(app, tmp_path)
    stopped = await sender_monitor(app, tmp_path, status="STOPPED")
    async with app[DB].connection() as conn:
        await machines.record_hello(conn, OLD, "the other manager's key", {"hostname": "b"})
        theirs = str((await monitors.create_monitor(conn, OLD, "CUDA", {"pid": 1}, {}, "t"))["id"])
        await conn.execute("UPDATE monitors SET status = 'RUNNING' WHERE id = %s", (theirs,))
    events = abi.empty_events(2)
    events["ts_ns"] = np.arange(2) + 1_000
    events["func"] = 0x400

    def batch(monitor: str, machine: str, seq: int = 0) -> bytes:
        return abi.encode_batch(
            events, monitor_id=monitor, machine_id=machine, seq=seq, mono_to_real_ns=time.time_ns()
        )

    forged = [
        batch(theirs, OLD),
        batch(mine, OLD, seq=1),  # another machine's
        batch(theirs, MACHINE),  # a monitor of another machine
        batch("6f1f4b8e-0000-4000-8000-000000000009", MACHINE),  # no such monitor
        batch(stopped, MACHINE),
    ]  # ended
    push.connect(settings.ingest_endpoint)
    try:
        for b in forged:
            await push.send(b)
        await push.send(batch(mine, MACHINE, seq=1))  # the real batch the forgery copied
        for _ in range(400):
            await ingest.flushed()
            if ingest.stats.refused + ingest.stats.batches >= len(forged) + 1:
                break
            await asyncio.sleep(0.05)
    finally:
        push.close(linger=0)
        ctx.term()
    assert ingest.stats.refused == len(forged)
    assert (ingest.stats.batches, ingest.stats.duplicates) == (1, 0)
    async with app[DB].connection() as conn:
        cur = await conn.execute(
            "SELECT monitor_id::text, machine_id, count(*) FROM events GROUP BY 1, 2"
        )
        assert await cur.fetchall() == [(mine, MACHINE, 2)]
