"""Every web.AppKey of the backend application, in one place."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import zmq.asyncio
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend.aggregates import Aggregator
from backend.control import ControlServer
from backend.influx import InfluxWriter
from backend.ingest import Ingest
from backend.passwords import Passwords
from backend.ratelimit import RateLimits
from backend.roles import Caller
from backend.settings import Settings
from backend.tokens import AccessClaims
from backend.trace_jobs import TraceJobs

if TYPE_CHECKING:
    from backend.reconciler import Reconciler
    from backend.request_db import RequestDb
    from backend.retention import Retention

__all__ = [
    "AGGREGATOR",
    "CALLER",
    "CONTROL",
    "DB",
    "INFLUX",
    "INGEST",
    "PASSWORDS",
    "RATE_LIMITS",
    "RECONCILER",
    "REQUEST_DB",
    "RETENTION",
    "SETTINGS",
    "TASKS",
    "TRACE_JOBS",
    "USER",
    "ZMQ",
]

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", AsyncConnectionPool)
# What REST handlers query on: its own pool, a statement timeout, a bound per user
# (backend.request_db); DB serves ingest, trace jobs, the audit log and the token check.
REQUEST_DB: web.AppKey[RequestDb] = web.AppKey("request_db")
# The caller, set by the auth middleware on every authenticated request.
USER = web.RequestKey("user", AccessClaims)
# ... and who that is now: e-mail, role (read from the database on every request), address.
CALLER = web.RequestKey("caller", Caller)
# Argon2 hashing off the event loop, and the in-memory rate limits (login, API).
PASSWORDS = web.AppKey("passwords", Passwords)
RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
ZMQ = web.AppKey("zmq", zmq.asyncio.Context)
CONTROL = web.AppKey("control", ControlServer)
INGEST = web.AppKey("ingest", Ingest)
# Background work started by handlers (START_MONITOR round trips), awaited at shutdown.
TASKS = web.AppKey("tasks", set[asyncio.Task[None]])
# Keeps machines' monitors and managers in agreement (backend.reconciler.Reconciler).
RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler")
# Drops events past their retention (backend.retention.Retention).
RETENTION: web.AppKey[Retention] = web.AppKey("retention")
# The trace job runner (backend.trace_jobs).
TRACE_JOBS = web.AppKey("trace_jobs", TraceJobs)
# Per-interval aggregates and their InfluxDB writer; absent when no InfluxDB is configured.
AGGREGATOR = web.AppKey("aggregator", Aggregator)
INFLUX = web.AppKey("influx", InfluxWriter)
