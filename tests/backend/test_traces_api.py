"""Traces API on a real PostgreSQL: generate, follow the job, download; bad input; jobs held,
failing, stopped by a restart and resumed; several at once while the API keeps answering."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.repo import machines, monitors
from backend.settings import Settings
from backend.trace_jobs import TraceJobs
from backend.typedefs import DB, TRACE_JOBS
from tests.backend.accounts import add_user
from tests.backend.trace_data import (
    DAY_PARTITION,
    MACHINE,
    calls,
    chrome_events,
    perfetto_slices,
    store,
)
from tests.pg_fixtures import backend_settings

GENERATE = "/api/v1/traces:generate"
PASSWORD = "long enough pw"


async def login(client: TestClient, email: str) -> dict[str, str]:
    await client.post("/api/v1/auth:register", json={"email": email, "password": PASSWORD})
    r = await client.post("/api/v1/auth:login", json={"email": email, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


@dataclass
class Api:
    client: TestClient
    auth: dict[str, str]
    settings: Settings
    dsn: str
    monitor: uuid.UUID  # a CUDA monitor: 1000 calls of pid 100, 500 of pid 200

    @property
    def jobs(self) -> TraceJobs:
        return self.client.server.app[TRACE_JOBS]

    async def generate(self, **body: Any) -> str:
        body.setdefault("trace_name", "t")
        r = await self.client.post(GENERATE, json=body, headers=self.auth)
        assert r.status == 202, await r.text()
        job_id: str = (await r.json())["trace_job_id"]
        assert r.headers["Location"] == f"/api/v1/traces/jobs/{job_id}"
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/traces/jobs/{job_id}", headers=self.auth)
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body

    async def wait(
        self, job_id: str, status: str = "COMPLETED", timeout: float = 60
    ) -> dict[str, Any]:
        """Polls the job (an HTTP status, with a deadline) until it is no longer PROCESSING."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] != "PROCESSING":
                assert job["status"] == status, job
                return job
            assert time.monotonic() < deadline, f"still PROCESSING after {timeout}s: {job}"
            await asyncio.sleep(0.05)

    async def trace_id(self, job_id: str) -> str:
        """The trace id the job was given (the API shows it only once COMPLETED)."""
        async with self.client.server.app[DB].connection() as conn:
            cur = await conn.execute(
                "SELECT trace_id FROM trace_jobs WHERE id = %s", (uuid.UUID(job_id),)
            )
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])


async def start(aiohttp_client: Any, settings: Settings) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


@pytest.fixture
async def api(aiohttp_client: Any, migrated_dsn: str, tmp_path: Path) -> Api:
    settings = backend_settings(migrated_dsn, tmp_path, trace_chunk_rows=100)
    client = await start(aiohttp_client, settings)
    async with client.server.app[DB].connection() as conn:
        await machines.record_hello(conn, MACHINE, "key-a", {"hostname": "gpu1"})
        mon = await monitors.create_monitor(conn, MACHINE, "CUDA", {"pid": 100}, {}, "train")
    await store(migrated_dsn, mon["id"], calls(1000, 100))
    await store(migrated_dsn, mon["id"], calls(500, 200, start_ns=500, step_ns=2000), seq=1)
    return Api(client, await login(client, "e@example.com"), settings, migrated_dsn, mon["id"])


class Hold:
    """A runner checkpoint that holds each job reaching `stage` until `until` is set."""

    def __init__(
        self,
        stage: str,
        until: threading.Event | None = None,
        action: Callable[[uuid.UUID], None] | None = None,
    ) -> None:
        self.stage, self.action = stage, action
        self.until = until or threading.Event()
        self.reached: list[uuid.UUID] = []
        self._cond = threading.Condition()

    def __call__(self, job_id: uuid.UUID, stage: str) -> None:
        if stage != self.stage:
            return
        if self.action is not None:
            self.action(job_id)
        with self._cond:
            self.reached.append(job_id)
            self._cond.notify_all()
        self.until.wait(30)

    async def reach(self, n: int) -> list[uuid.UUID]:
        """Waits until n jobs are held here."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: len(self.reached) >= n, timeout=30)

        assert await asyncio.to_thread(wait), self.reached
        return self.reached[:n]


@pytest.fixture
def holds(api: Api) -> Iterator[list[Hold]]:
    """Holds registered here are let go before the backend stops (a failed test included)."""
    made: list[Hold] = []
    yield made
    for h in made:
        h.until.set()


def hold(api: Api, holds: list[Hold], stage: str, **kw: Any) -> Hold:
    h = Hold(stage, **kw)
    holds.append(h)
    api.jobs.checkpoint = h
    return h


def sql(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement.encode())


# --- generate, follow, download -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "gz", "name", "ctype"),
    [
        ("perfetto", False, "gpu run_1.pftrace", "application/octet-stream"),
        ("perfetto", True, "gpu run_1.pftrace.gz", "application/gzip"),
        ("chrome", False, "gpu run_1.json", "application/json"),
        ("chrome", True, "gpu run_1.json.gz", "application/gzip"),
    ],
)
async def test_generate_poll_and_download(
    api: Api, fmt: str, gz: bool, name: str, ctype: str
) -> None:
    job_id = await api.generate(filter="pid = 100", trace_name="gpu run/1", format=fmt, gzip=gz)
    job = await api.wait(job_id)
    assert job["trace_job_id"] == job_id
    assert (job["progress"], job["events"], job["events_total"]) == (1, 1000, 1000)
    assert (job["format"], job["gzip"], job["attempts"], job["file_name"]) == (fmt, gz, 1, name)
    assert job["download_url"] == f"/api/v1/traces/{job['trace_id']}"
    assert job["stats"]["slices"] == 1000 and job["stats"]["flows"] == 1000
    assert "error_message" not in job
    r = await api.client.get(job["download_url"], headers=api.auth)
    assert r.status == 200, await r.text()
    assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    assert r.headers["Content-Type"] == ctype
    assert "Content-Encoding" not in r.headers
    data = await r.read()
    assert len(data) == job["file_size"]
    if fmt == "perfetto":
        assert perfetto_slices(data) == 1000
    else:
        xs = [e for e in chrome_events(data) if e["ph"] == "X"]
        assert len(xs) == 1000 and {e["pid"] for e in xs} == {100}
        assert [e["ts"] for e in xs] == sorted(e["ts"] for e in xs)


async def test_every_event_in_time_order_across_chunks(api: Api) -> None:
    """No filter: both threads, 15 chunks of 100 rows, the calls in start-time order."""
    job = await api.wait(await api.generate(filter="", format="chrome"))
    assert (job["events"], job["events_total"]) == (1500, 1500)
    r = await api.client.get(job["download_url"], headers=api.auth)
    xs = [e for e in chrome_events(await r.read()) if e["ph"] == "X"]
    assert [e["pid"] for e in xs].count(200) == 500
    assert [e["ts"] for e in xs] == sorted(e["ts"] for e in xs)


async def test_download_name_keeps_unicode(api: Api) -> None:
    job = await api.wait(await api.generate(filter="pid = 1", trace_name='..ollama "ü"'))
    r = await api.client.get(job["download_url"], headers=api.auth)
    assert r.headers["Content-Disposition"] == (
        "attachment; filename=\"ollama ___.pftrace\"; filename*=UTF-8''ollama%20_%C3%BC_.pftrace"
    )


@pytest.mark.parametrize("fmt", ["perfetto", "chrome"])
async def test_filter_matching_nothing_gives_a_valid_empty_trace(api: Api, fmt: str) -> None:
    job = await api.wait(await api.generate(filter="pid = 999", format=fmt))
    assert (job["events"], job["events_total"], job["progress"]) == (0, 0, 1)
    r = await api.client.get(job["download_url"], headers=api.auth)
    assert r.status == 200
    data = await r.read()
    if fmt == "perfetto":
        assert perfetto_slices(data) == 0
    else:
        assert [e for e in chrome_events(data) if e["ph"] != "M"] == []


async def test_monitor_types_come_from_the_monitors_table(api: Api) -> None:
    """Events of a PYTHON monitor interleaved with the CUDA ones: each call keeps its type."""
    async with api.client.server.app[DB].connection() as conn:
        py = await monitors.create_monitor(conn, MACHINE, "PYTHON", {"pid": 300}, {}, "py")
    await store(api.dsn, py["id"], calls(300, 300, start_ns=250, step_ns=3000))
    job = await api.wait(await api.generate(filter="pid = 100 OR pid = 300", format="chrome"))
    assert job["events"] == 1300
    r = await api.client.get(job["download_url"], headers=api.auth)
    xs = [e for e in chrome_events(await r.read()) if e["ph"] == "X"]
    assert {(e["pid"], e["cat"]) for e in xs} == {(100, "CUDA"), (300, "PYTHON")}
    assert [e["ts"] for e in xs] == sorted(e["ts"] for e in xs)


async def test_progress_is_written_as_chunks_go(api: Api, holds: list[Hold]) -> None:
    api.jobs.progress_interval_s = 0
    seen: list[tuple[Any, ...]] = []
    chunks = 0

    def after_chunk(job_id: uuid.UUID) -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 3:
            with psycopg.connect(api.dsn) as conn:
                row = conn.execute(
                    "SELECT status, events_done, events_total, progress "
                    "FROM trace_jobs WHERE id = %s",
                    (job_id,),
                ).fetchone()
            seen.append(tuple(row or ()))

    h = hold(api, holds, "chunk", action=after_chunk)
    h.until.set()
    await api.wait(await api.generate(filter="pid = 100"))
    assert seen == [("PROCESSING", 300, 1000, pytest.approx(0.3))]


# --- bad input, unknown ids, auth -----------------------------------------------------------


async def expect(r: Any, status: int, code: str, needle: str) -> None:
    body = await r.json()
    assert r.status == status, body
    assert body == {"error": {"code": status, "status": code, "message": body["error"]["message"]}}
    assert needle in body["error"]["message"], body


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"filter": "pid = 'x'", "trace_name": "t"}, "filter: field 'pid' expects an integer"),
        ({"filter": "nosuch = 1", "trace_name": "t"}, "filter: unknown field 'nosuch'"),
        ({"filter": "(pid = 1", "trace_name": "t"}, "filter: missing ')'"),
        ({"filter": 42, "trace_name": "t"}, "filter:"),
        ({"trace_name": "t"}, "filter: is required"),
        ({"filter": ""}, "trace_name: is required"),
        ({"filter": "", "trace_name": ""}, "trace_name:"),
        ({"filter": "", "trace_name": "   "}, "trace_name:"),
        ({"filter": "", "trace_name": "a\nb"}, "trace_name:"),
        ({"filter": "", "trace_name": "x" * 201}, "trace_name:"),
        ({"filter": "", "trace_name": "t", "format": "pdf"}, "format:"),
        ({"filter": "", "trace_name": "t", "format": None}, "format:"),
        ({"filter": "", "trace_name": "t", "gzip": "yes"}, "gzip:"),
        ({"filter": "", "trace_name": "t", "path": "/etc/passwd"}, "path: is not allowed"),
        ([], "body:"),
    ],
)
async def test_bad_body_names_the_field(api: Api, body: Any, needle: str) -> None:
    r = await api.client.post(GENERATE, json=body, headers=api.auth)
    await expect(r, 400, "INVALID_ARGUMENT", needle)


async def test_body_that_is_not_json(api: Api) -> None:
    r = await api.client.post(GENERATE, data=b"{nope", headers=api.auth)
    await expect(r, 400, "INVALID_ARGUMENT", "body: invalid JSON")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/traces/jobs/00000000-0000-4000-8000-000000000000",
        "/api/v1/traces/00000000-0000-4000-8000-000000000000",
    ],
)
async def test_unknown_ids_are_404(api: Api, path: str) -> None:
    r = await api.client.get(path, headers=api.auth)
    await expect(r, 404, "NOT_FOUND", "not found")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/traces/jobs/not-a-uuid", "trace_job_id"),
        ("/api/v1/traces/not-a-uuid", "trace_id"),
    ],
)
async def test_malformed_ids_are_400(api: Api, path: str, field: str) -> None:
    r = await api.client.get(path, headers=api.auth)
    await expect(r, 400, "INVALID_ARGUMENT", f"{field}: 'not-a-uuid' is not a UUID")


async def test_other_users_jobs_and_traces_are_404(api: Api) -> None:
    job = await api.wait(await api.generate(filter="pid = 100"))
    other = await add_user(api.client, api.auth, "other@example.com", "operator")
    r = await api.client.get(f"/api/v1/traces/jobs/{job['trace_job_id']}", headers=other)
    await expect(r, 404, "NOT_FOUND", "not found")
    r = await api.client.get(job["download_url"], headers=other)
    await expect(r, 404, "NOT_FOUND", "not found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", GENERATE),
        ("GET", "/api/v1/traces/jobs/00000000-0000-4000-8000-000000000000"),
        ("GET", "/api/v1/traces/00000000-0000-4000-8000-000000000000"),
    ],
)
async def test_every_trace_endpoint_needs_a_token(api: Api, method: str, path: str) -> None:
    r = await api.client.request(method, path, json={"filter": "", "trace_name": "t"})
    await expect(r, 401, "UNAUTHENTICATED", "Bearer")


async def test_openapi_documents_the_trace_endpoints(api: Api) -> None:
    doc = await (await api.client.get("/api/v1/openapi.json")).json()
    post = doc["paths"]["/api/v1/traces:generate"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/TraceGenerate"
    schema = doc["components"]["schemas"]["TraceGenerate"]
    assert schema["required"] == ["filter", "trace_name"]
    assert sorted(schema["properties"]["format"]["enum"]) == ["chrome", "perfetto"]
    for path, param in (
        ("/api/v1/traces/jobs/{trace_job_id}", "trace_job_id"),
        ("/api/v1/traces/{trace_id}", "trace_id"),
    ):
        op = doc["paths"][path]["get"]
        assert op["security"] == [{"bearer": []}]
        assert [p["name"] for p in op["parameters"]] == [param]


# --- jobs held, failing, concurrent -------------------------------------------------------


async def test_download_before_completion_is_409(api: Api, holds: list[Hold]) -> None:
    h = hold(api, holds, "counted")
    job_id = await api.generate(filter="pid = 100")
    await h.reach(1)
    trace_id = await api.trace_id(job_id)
    job = await api.job(job_id)
    assert job["status"] == "PROCESSING" and job["events_total"] == 1000
    assert "trace_id" not in job and "download_url" not in job
    r = await api.client.get(f"/api/v1/traces/{trace_id}", headers=api.auth)
    await expect(r, 409, "FAILED_PRECONDITION", "is still being generated")
    h.until.set()
    await api.wait(job_id)
    r = await api.client.get(f"/api/v1/traces/{trace_id}", headers=api.auth)
    assert r.status == 200


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            "DELETE FROM events WHERE pid = 100 AND ts >= (SELECT min(ts) + 600000 FROM events "
            "WHERE pid = 100)",
            "400 of the 1000 events matching the filter were deleted",
        ),
        (
            f"ALTER TABLE events DETACH PARTITION {DAY_PARTITION}",
            "1000 of the 1000 events matching the filter were deleted",
        ),
    ],
)
async def test_events_deleted_during_generation_fail_the_job(
    api: Api, holds: list[Hold], change: str, needle: str
) -> None:
    """Rows vanish between the count and the read (retention, a dropped partition)."""
    h = hold(api, holds, "counted", action=lambda job_id: sql(api.dsn, change))
    h.until.set()
    job_id = await api.generate(filter="pid = 100")
    job = await api.wait(job_id, "FAILED")
    assert needle in job["error_message"], job
    assert "trace_id" not in job and "download_url" not in job
    r = await api.client.get(f"/api/v1/traces/{await api.trace_id(job_id)}", headers=api.auth)
    await expect(r, 409, "FAILED_PRECONDITION", "could not be generated: ")
    assert list(api.settings.traces_dir.iterdir()) == []


async def test_two_jobs_run_at_once_and_the_api_keeps_answering(
    api: Api, holds: list[Hold]
) -> None:
    h = hold(api, holds, "counted")
    ids = [await api.generate(filter=f"pid = {pid}") for pid in (100, 200, 100)]
    running = await h.reach(2)
    assert {str(j) for j in running} == set(ids[:2])
    r = await api.client.get("/api/v1/machines", headers=api.auth)
    assert r.status == 200 and [m["id"] for m in (await r.json())["machines"]] == [MACHINE]
    third = await api.job(ids[2])
    assert (third["status"], third["start_time"], third["attempts"]) == ("PROCESSING", None, 0)
    h.until.set()
    done = [await api.wait(i) for i in ids]
    assert [j["events"] for j in done] == [1000, 500, 1000]
    assert len(h.reached) == 3


# --- restarts ---------------------------------------------------------------------------------


async def test_a_job_stopped_by_shutdown_resumes_at_the_next_start(
    api: Api, holds: list[Hold], aiohttp_client: Any
) -> None:
    h = hold(api, holds, "chunk", until=api.jobs.stop_flag)
    job_id = await api.generate(filter="", trace_name="resumed")
    await h.reach(1)
    await api.client.close()  # the runner sets its stop flag: the build ends after the chunk
    async with await psycopg.AsyncConnection.connect(api.dsn) as conn:
        cur = await conn.execute(
            "SELECT status, attempts FROM trace_jobs WHERE id = %s", (uuid.UUID(job_id),)
        )
        assert await cur.fetchone() == ("PROCESSING", 0)  # the stopped run did not count
    assert list(api.settings.traces_dir.iterdir()) == []
    api.client = await start(aiohttp_client, api.settings)
    job = await api.wait(job_id)
    assert (job["events"], job["attempts"]) == (1500, 1)


async def test_unfinished_jobs_resume_or_fail_after_three_runs(
    api: Api, aiohttp_client: Any
) -> None:
    """Jobs left PROCESSING by a backend that died mid-run (attempts already counted)."""
    done = await api.wait(await api.generate(filter="pid = 200"))
    await api.client.close()
    ids = {n: uuid.uuid4() for n in (0, 2, 3)}
    with psycopg.connect(api.dsn, autocommit=True) as conn:
        for attempts, job_id in ids.items():
            conn.execute(
                "INSERT INTO trace_jobs (id, user_id, trace_id, trace_name, filter, format, "
                "attempts, start_time) SELECT %s, user_id, %s, 'left', 'pid = 200', 'chrome', "
                "%s, now() FROM trace_jobs LIMIT 1",
                (job_id, uuid.uuid4(), attempts),
            )
    stale = api.settings.traces_dir / f".{uuid.uuid4()}.abc.tmp"
    stale.write_bytes(b"half a trace")
    api.client = await start(aiohttp_client, api.settings)
    failed = await api.wait(str(ids[3]), "FAILED")
    assert failed["error_message"] == "backend restarted 3 times during generation"
    resumed = [await api.wait(str(ids[n])) for n in (0, 2)]
    assert [(j["attempts"], j["events"]) for j in resumed] == [(1, 500), (3, 500)]
    assert not stale.exists()
    assert (await api.job(done["trace_job_id"]))["status"] == "COMPLETED"


async def test_shutdown_cancels_a_query_in_flight(api: Api) -> None:
    """A job waiting on its count (here: on a lock) is cancelled at shutdown, not waited for."""
    async with (
        await psycopg.AsyncConnection.connect(api.dsn) as locker,
        await psycopg.AsyncConnection.connect(api.dsn, autocommit=True) as watch,
    ):
        await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        job_id = await api.generate(filter="pid = 100")
        deadline = time.monotonic() + 30
        while True:  # until the count waits for the lock
            cur = await watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'SELECT e.monitor_id%%'"
            )
            if (await cur.fetchone() or (0,))[0]:
                break
            assert time.monotonic() < deadline, "the job's count never waited for the lock"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await api.client.close()
        assert time.monotonic() - started < 10
        await locker.rollback()
        cur = await watch.execute(
            "SELECT status, attempts, events_total FROM trace_jobs WHERE id = %s",
            (uuid.UUID(job_id),),
        )
        assert await cur.fetchone() == ("PROCESSING", 0, None)
