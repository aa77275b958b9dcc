"""create_app(settings): the backend's aiohttp application.

Each external resource is its own cleanup_ctx generator, torn down in reverse:
trace jobs (stopped between chunks, resumed at the next start), retention, the
reconciler, background tasks, ingest (written out first), aggregates (every
pending interval flushed, and sent to InfluxDB within influx_shutdown_timeout_s),
control channel, ZeroMQ context, password hashing threads, PostgreSQL pools (the
requests' own, backend.request_db, and the one background work, the audit log and
the token check use). backend.serve runs the teardown to its end whatever signals
come meanwhile. The rate limits (backend.ratelimit) are plain memory, made with the
application.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

import psycopg
import zmq.auth
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend import device_counters, job_traces
from backend.admission import Admission
from backend.aggregate_clock import close_by_clock
from backend.aggregates import Aggregator
from backend.control import ControlServer, curve_context
from backend.control_events import handle_event
from backend.db.migrate import migrate
from backend.errors import error_middleware
from backend.handlers.auth import require_user
from backend.influx import InfluxConfig, InfluxWriter
from backend.ingest import Ingest
from backend.monitor_lifecycle import apply_late_reply
from backend.passwords import Passwords
from backend.ratelimit import RateLimits
from backend.reconciler import Reconciler
from backend.repo.metrics import last_drop_totals
from backend.request_db import RequestDb
from backend.retention import Retention
from backend.routes import setup_routes
from backend.settings import Settings
from backend.storage import describe
from backend.trace_jobs import TraceJobs
from backend.typedefs import (
    AGGREGATOR,
    CONTROL,
    DB,
    INFLUX,
    INGEST,
    PASSWORDS,
    RATE_LIMITS,
    RECONCILER,
    REQUEST_DB,
    RETENTION,
    SETTINGS,
    TASKS,
    TRACE_JOBS,
    ZMQ,
)

__all__ = ["create_app", "server_keys"]

log = logging.getLogger(__name__)


def server_keys(settings: Settings) -> tuple[bytes, bytes]:
    """(public, secret) of the backend's CURVE certificate, created on first use."""
    settings.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_file = settings.keys_dir / "backend.key_secret"
    if not secret_file.exists():
        zmq.auth.create_certificates(str(settings.keys_dir), "backend")
        secret_file.chmod(0o600)
    public, secret = zmq.auth.load_certificate(str(secret_file))
    assert secret is not None
    return public, secret


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.database_dsn:
        raise RuntimeError("database_dsn is not set (python -m backend starts the embedded one)")
    async with await psycopg.AsyncConnection.connect(
        settings.database_dsn, autocommit=True
    ) as conn:
        await migrate(conn)
    pool = AsyncConnectionPool(
        settings.database_dsn,
        min_size=1,
        max_size=10,
        open=False,
        timeout=settings.db_pool_wait_s,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True, timeout=30)
    requests = RequestDb(settings.database_dsn, settings)
    await requests.open()
    app[DB], app[REQUEST_DB] = pool, requests
    log.info("%s", describe(settings))
    yield
    await requests.close()
    await pool.close()


async def zmq_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    settings.enrolled_dir.mkdir(parents=True, exist_ok=True)
    ctx, auth = curve_context(settings.enrolled_dir)
    app[ZMQ] = ctx
    yield
    auth.stop()
    ctx.term()


async def control_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    public, secret = server_keys(settings)

    async def on_event(machine_id: str, key: str, msg: dict[str, object]) -> None:
        await handle_event(app, machine_id, key, msg)

    async def on_late_reply(
        machine_id: str, command: dict[str, object], reply: dict[str, object]
    ) -> None:
        await apply_late_reply(app, machine_id, command, reply)

    control = ControlServer(
        app[ZMQ],
        settings.control_endpoint,
        secret,
        public,
        on_event,
        on_late_reply,
        settings.late_reply_s,
    )
    await control.start()
    app[CONTROL] = control
    yield
    await control.close()


async def aggregates_ctx(app: web.Application) -> AsyncIterator[None]:
    """The aggregator, the clock that closes its intervals and its InfluxDB writer, when
    InfluxDB is configured. Refuses to start (InfluxSetupError) when the v1 database
    neither exists nor can be created."""
    s = app[SETTINGS]
    if not s.influx_url:
        yield
        return
    if s.influx_api not in ("v1", "v2"):
        raise ValueError(f"influx_api must be v1 or v2, not {s.influx_api!r}")
    config = InfluxConfig(
        s.influx_url,
        s.influx_api,  # type: ignore[arg-type]
        database=s.influx_database,
        retention_policy=s.influx_retention_policy,
        username=s.influx_username,
        password=s.influx_password,
        token=s.influx_token,
        org=s.influx_org,
        bucket=s.influx_bucket,
    )
    writer = InfluxWriter(config, max_buffer_lines=s.influx_buffer_lines)
    await writer.start()
    try:
        await writer.ensure_database()  # when InfluxDB is not reachable, before the first write
        aggregator = Aggregator(
            lambda points: writer.submit([p.line() for p in points]),
            interval_ns=round(s.aggregate_interval_s * 1e9),
            lateness_ns=round(s.aggregate_lateness_s * 1e9),
        )
        async with app[DB].connection() as conn:  # drops already counted before a restart
            aggregator.drops.last.update(await last_drop_totals(conn))
    except BaseException:
        await writer.close(0)
        raise
    app[INFLUX], app[AGGREGATOR] = writer, aggregator
    clock = asyncio.create_task(close_by_clock(aggregator), name="aggregate-clock")
    yield
    clock.cancel()
    await asyncio.gather(clock, return_exceptions=True)
    aggregator.flush()  # the ingest has stopped: every pending interval
    await writer.close(s.influx_shutdown_timeout_s)  # sent, or counted lost after the timeout


async def ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    public, secret = server_keys(settings)
    ingest = Ingest(
        app[ZMQ],
        settings.ingest_endpoint,
        secret,
        public,
        app[DB],
        aggregator=app.get(AGGREGATOR),
        admission=Admission(app[DB]),
    )
    await ingest.start()
    app[INGEST] = ingest
    yield
    await ingest.close()


async def tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    app[TASKS] = set()
    yield
    pending = app[TASKS]
    if pending:
        await asyncio.wait(list(pending), timeout=30)


async def reconcile_ctx(app: web.Application) -> AsyncIterator[None]:
    reconciler = Reconciler(app)
    app[RECONCILER] = reconciler
    await reconciler.start()
    yield
    await reconciler.close()


async def passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    passwords = Passwords(app[SETTINGS].password_hash_workers)
    app[PASSWORDS] = passwords
    yield
    passwords.close()


async def trace_jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_dsn is not None  # database_ctx has checked
    jobs = TraceJobs(
        app[DB],
        settings.database_dsn,
        settings.traces_dir,
        workers=settings.trace_workers,
        chunk_rows=settings.trace_chunk_rows,
        device_counters=functools.partial(device_counters.for_trace, app),
    )
    app[TRACE_JOBS] = jobs
    jobs.on_done.append(functools.partial(job_traces.trace_job_done, app))
    await jobs.start()
    await job_traces.resume(app)
    yield
    await jobs.close()


async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
    retention = Retention(app[DB], app[SETTINGS])
    app[RETENTION] = retention
    retention.start()
    yield
    await retention.close()


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """Names the product, not its versions (aiohttp's default tells Python's and its own)."""
    response.headers["Server"] = "xputrace"


def create_app(settings: Settings) -> web.Application:
    if len(settings.jwt_secret) < 32:
        raise ValueError("jwt_secret must be at least 32 characters")
    if not 1 <= settings.db_connections_per_user < settings.request_pool_size:
        raise ValueError(
            "db_connections_per_user must be at least 1 and less than "
            "request_pool_size: one user must not be able to fill the pool"
        )
    # max_line_size: the longest query the OpenAPI document allows (filter, order_by,
    # page_token and fields at their maxLength, each character %-encoded UTF-8) must reach
    # the handlers, which answer in the seed's error body; aiohttp's 8190 would answer
    # a bare text/plain 400 first.
    app = web.Application(
        middlewares=[error_middleware, require_user],
        client_max_size=1024 * 1024,
        handler_args={"max_line_size": 256 * 1024},
    )
    app[SETTINGS] = settings
    app.on_response_prepare.append(_server_header)
    app[RATE_LIMITS] = RateLimits.from_settings(
        settings.login_attempts_per_account,
        settings.login_attempts_per_address,
        settings.login_window_s,
        settings.api_requests_per_s,
        settings.api_burst,
    )
    app.cleanup_ctx.extend(
        [
            database_ctx,
            passwords_ctx,
            zmq_ctx,
            control_ctx,
            aggregates_ctx,
            ingest_ctx,
            tasks_ctx,
            reconcile_ctx,
            retention_ctx,
            trace_jobs_ctx,
        ]
    )
    setup_routes(app)
    return app
