"""CSV export of lists (issue #15 section 5) on a real PostgreSQL: the same rows as the JSON
list, filter and order honoured; format negotiation and its 400; an error after the first
byte ends the body with the #ERROR record; 1M events in bounded memory (slow)."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend import cli
from backend.app import create_app
from backend.handlers import jobs as jobs_api
from backend.repo import jobs, machines, monitors
from backend.typedefs import DB
from tests.backend.accounts import PASSWORD, add_user, first_admin
from tests.backend.csv_reading import as_items, csv_body, json_items, stream_records
from tests.backend.trace_data import MONO, OFFSET, calls, store
from tests.pg_fixtures import backend_settings

EVENT_COLUMNS = [
    "timestamp", "machine_id", "monitor_id", "pid", "tid", "cpu", "comm", "event_type",
    "duration_ns", "ret", "flags", "incomplete", "event_data", "python_stack",
]  # fmt: skip


async def start(aiohttp_client: Any, dsn: str, tmp_path: Path) -> tuple[TestClient, dict]:
    client = await aiohttp_client(create_app(backend_settings(dsn, tmp_path)))
    admin = await first_admin(client)
    return client, admin


async def test_events_csv_holds_the_rows_of_the_json_list(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    await store(migrated_dsn, uuid.uuid4(), calls(2300, 100))
    await store(migrated_dsn, uuid.uuid4(), calls(700, 200, start_ns=500), seq=1)
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    viewer = await add_user(client, admin, "v@example.com")  # viewers export what they list
    query = {"filter": "pid = 100 OR pid = 200", "order_by": "pid desc, timestamp"}
    want = await json_items(client, "/api/v1/events", "events", viewer, **query)
    r, header, records = await csv_body(client, "/api/v1/events", viewer, **query)
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8; header=present"
    assert r.headers["Content-Disposition"] == 'attachment; filename="events.csv"'
    assert header == EVENT_COLUMNS
    assert len(want) == 3000 and [e["pid"] for e in want[:1]] == [200]
    assert as_items(header, records, want) == [{c: e.get(c) for c in EVENT_COLUMNS} for e in want]
    # a page token is where the export starts; page_size is not a limit
    first = await (
        await client.get("/api/v1/events", params={**query, "page_size": "1000"}, headers=viewer)
    ).json()
    _, _, rest = await csv_body(
        client, "/api/v1/events", viewer, **query, page_size="5",
        page_token=first["next_page_token"],
    )  # fmt: skip
    assert rest == records[1000:]
    # fields: the columns, paths into event_data included
    _, header, picked = await csv_body(
        client, "/api/v1/events", viewer, filter="pid = 200", fields="timestamp,event_data.stream"
    )
    assert header == ["timestamp", "event_data.stream"]
    assert picked == [[e["timestamp"], str(e["event_data"]["stream"])] for e in want[:700]]
    # Accept: text/csv asks for the same; format wins over it
    accept = {**viewer, "Accept": "text/csv"}
    r = await client.get("/api/v1/events", params=query, headers=accept)
    assert r.content_type == "text/csv"
    assert list(csv.reader(io.StringIO((await r.read()).decode(), newline="")))[1:] == records
    r = await client.get("/api/v1/events", params={**query, "format": "json"}, headers=accept)
    assert r.content_type == "application/json" and len((await r.json())["events"]) == 100


async def test_a_bad_format_or_filter_is_the_usual_400_before_any_csv(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    for path in ("/api/v1/events", "/api/v1/jobs", "/api/v1/machines"):
        r = await client.get(path, params={"format": "xml"}, headers=admin)
        assert r.status == 400
        error = (await r.json())["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith("format:")
    r = await client.get("/api/v1/events", params={"format": "csv", "filter": "nope ="},
                         headers=admin)  # fmt: skip
    assert r.status == 400 and (await r.json())["error"]["message"].startswith("filter:")
    r = await client.get("/api/v1/machines/nope/monitors", params={"format": "csv"},
                         headers=admin)  # fmt: skip
    assert r.status == 404 and r.content_type == "application/json"
    r = await client.get("/api/v1/events", params={"format": "csv"})
    assert r.status == 401 and (await r.json())["error"]["status"] == "UNAUTHENTICATED"
    # an empty list is its header row
    _, header, records = await csv_body(client, "/api/v1/jobs", admin)
    assert header == list(jobs_api.SUMMARY_FIELDS) and records == []


async def test_an_error_after_the_first_byte_ends_the_body_with_the_error_record(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 30 pages of 1000: the server stops writing once the client's buffers are full, long
    # before the last page, and fails on the next page it fetches after the DROP
    await store(migrated_dsn, uuid.uuid4(), calls(30_000, 100))
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    r = await client.get("/api/v1/events", params={"format": "csv"}, headers=admin)
    assert r.status == 200
    body = await r.content.readany()
    async with await psycopg.AsyncConnection.connect(migrated_dsn, autocommit=True) as conn:
        await conn.execute("DROP TABLE events CASCADE")
    with caplog.at_level(logging.ERROR, "backend.csv_export"):
        body += await r.read()
    records = list(csv.reader(io.StringIO(body.decode(), newline="")))
    sent = len(records) - 2
    assert 0 < sent < 30_000 and records[-2][0] != "#ERROR"
    assert records[-1] == [
        "#ERROR", "500", "INTERNAL",
        f"the export failed after {sent} rows; the backend's log says why",
    ]  # fmt: skip
    assert any(f"events.csv: failed after {sent} rows" in m for m in caplog.messages)


HOSTS = [("a" * 32, "gpu1"), ("b" * 32, "gpu2"), ("c" * 32, "cpu1")]


async def test_jobs_monitors_and_machines_export_what_their_filter_lists(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    async with client.server.app[DB].connection() as conn:
        for mid, host in HOSTS:
            await machines.record_hello(conn, mid, f"key-{host}", {"hostname": host})
        for i in range(12):
            await monitors.create_monitor(
                conn, HOSTS[0][0], "CUDA", {"pid": i}, {"x": i}, f'mon "{i}",\r\nnext line'
            )
            job = {"pid": 100 + i, "startTicks": 7, "startTime": 1_767_000_000_000 + i,
                   "jobName": f"train,{i}.py", "framework": "torch" if i % 3 else None,
                   "jobType": "training", "processName": "python3"}  # fmt: skip
            jid = jobs.job_id(HOSTS[i % 3][0], job["pid"], 7)
            await jobs.upsert(conn, jid, HOSTS[i % 3][0], job, "running", "seen", {})
        await conn.execute("UPDATE monitors SET status = 'RUNNING' WHERE (config->>'x')::int < 6")
    cases = [
        ("/api/v1/jobs", "jobs", {"filter": 'framework = "torch"', "order_by": "name"}, 8),
        (f"/api/v1/machines/{HOSTS[1][0]}/jobs", "jobs", {}, 4),
        (f"/api/v1/machines/{HOSTS[0][0]}/monitors", "monitors",
         {"filter": 'status = "RUNNING"', "order_by": "display_name desc"}, 6),
        ("/api/v1/machines", "machines", {"filter": 'hostname = "gpu*"'}, 2),
    ]  # fmt: skip
    for path, key, query, n in cases:
        want = await json_items(client, path, key, admin, **query)
        r, header, records = await csv_body(client, path, admin, **query)
        assert r.headers["Content-Disposition"] == f'attachment; filename="{key}.csv"'
        assert len(want) == n, (path, len(want))
        assert set(header) >= set(want[0]), path  # every field of the JSON has its column
        assert as_items(header, records, want) == [{c: i.get(c) for c in header} for i in want]


def _ns(stamp: str) -> int:
    """2026-03-10T11:00:00.000001000Z → Unix ns (read without the backend's code)."""
    m = re.fullmatch(r"(.{19})\.(\d{9})Z", stamp)
    assert m, stamp
    secs = datetime.fromisoformat(m[1]).replace(tzinfo=UTC).timestamp()
    return int(secs) * 10**9 + int(m[2])


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _kib(field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    assert m
    return int(m[1])


async def _export_checked(client: TestClient, headers: dict[str, str], n: int) -> int:
    """Exports the first n events (pid 100, 1 us apart) as CSV, reads it as it comes and
    checks every row; the peak RSS growth of this process (server and client) in KiB."""
    end = OFFSET + MONO + n * 1000
    stamp = datetime.fromtimestamp(end // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    params = {"format": "csv", "filter": f'timestamp < "{stamp}.{end % 10**9:09d}Z"'}
    _reset_peak_rss()
    base = _kib("VmRSS")
    r = await client.get("/api/v1/events", params=params, headers=headers)
    assert r.status == 200
    seen, header = 0, None
    async for records in stream_records(r):
        if header is None:
            header, records = records[0], records[1:]
            ts, pid, kind = (header.index(c) for c in ("timestamp", "pid", "event_type"))
        for rec in records:
            assert _ns(rec[ts]) == OFFSET + MONO + seen * 1000, (seen, rec)
            assert (rec[pid], rec[kind]) == (
                "100", "cudaMemcpyAsync" if seen % 2 else "cudaLaunchKernel"
            )  # fmt: skip
            seen += 1
    assert seen == n
    return _kib("VmHWM") - base


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_million_events_export_in_bounded_memory(
    aiohttp_client: Any, migrated_dsn: str, tmp_path: Path
) -> None:
    n = 1_000_000
    await store(migrated_dsn, uuid.uuid4(), calls(n, 100))
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    small = await _export_checked(client, admin, n // 10)
    large = await _export_checked(client, admin, n)
    print(f"peak RSS growth: {small} KiB for {n // 10:,} rows, {large} KiB for {n:,}")
    # the rows of 1M events are 280 MB of CSV: holding them, let alone their objects,
    # would grow far past this
    assert large < small + 16 * 1024, (small, large)
    assert large < 64 * 1024, large
    # and the rows are the JSON list's: the first and the last page compared whole
    params = {"format": "csv", "page_size": "1000"}
    for order in ("timestamp", "timestamp desc"):
        r = await client.get(
            "/api/v1/events", params={**params, "order_by": order, "format": "json"},
            headers=admin,
        )  # fmt: skip
        want = (await r.json())["events"]
        r = await client.get("/api/v1/events", params={**params, "order_by": order},
                             headers=admin)  # fmt: skip
        head: list[list[str]] = []
        async for records in stream_records(r):
            head += records
            if len(head) > 1000:
                break
        r.close()
        assert as_items(head[0], head[1:1001], want) == [
            {c: e.get(c) for c in head[0]} for e in want
        ]
    await asyncio.sleep(0)


async def test_cli_csv_prints_the_export_and_fails_on_its_error_record(
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    await store(migrated_dsn, uuid.uuid4(), calls(1500, 100))
    client, admin = await start(aiohttp_client, migrated_dsn, tmp_path)
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, HOSTS[0][0], "key", {"hostname": "gpu1"})
    monkeypatch.setattr(cli, "CREDENTIALS", tmp_path / "credentials.json")
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt="": PASSWORD)
    url = str(client.make_url("/")).rstrip("/")

    async def xputrace(*argv: str) -> tuple[int, bytes, bytes]:
        capfdbinary.readouterr()
        rc = await asyncio.to_thread(cli.main, ["--url", url, *argv])
        out = capfdbinary.readouterr()
        return rc, out.out, out.err

    assert (await xputrace("login", "admin@example.com"))[0] == 0
    for argv, path in [
        (["events", "--csv", "--filter", "pid = 100"], "/api/v1/events?filter=pid+%3D+100"),
        (["machines", "--csv"], "/api/v1/machines"),
        (["jobs", "list", "--csv"], "/api/v1/jobs"),
        (["monitors", "list", "--csv"], f"/api/v1/machines/{HOSTS[0][0]}/monitors"),
    ]:
        rc, out, err = await xputrace(*argv)
        assert rc == 0, err
        r = await client.get(path, params={"format": "csv"}, headers=admin)
        assert out == await r.read(), argv
    assert out.startswith(b"id,display_name,")
    # an export that ended with the error record: its rows, and the message, rc 1
    failed = io.BytesIO(b'a,b\r\n1,2\r\n#ERROR,504,DEADLINE_EXCEEDED,"too slow, narrow"\r\n')
    copied = io.BytesIO()
    with pytest.raises(cli.ApiError, match="504 DEADLINE_EXCEEDED too slow, narrow"):
        cli.export_csv(failed, copied)
    assert copied.getvalue() == b"a,b\r\n1,2\r\n"
