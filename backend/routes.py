"""Every route of the REST API, in one place (base /api/v1, seeds/003 part 1), with the role
each needs (backend.roles): viewers read machines, monitors, events, metrics, AI jobs and
their own traces, and search them; operators also start and stop monitors, stop jobs and
generate traces; admins also manage users and read the audit log. Login, register, refresh
and the OpenAPI document are public (backend.handlers.auth.PUBLIC); logout needs a token, any
role."""

from __future__ import annotations

from aiohttp import web

from backend.access import Handler, requires
from backend.handlers import (
    audit_logs,
    auth,
    devices,
    events,
    job_traces,
    jobs,
    machines,
    metrics,
    monitors,
    openapi,
    process_metrics,
    search,
    stats,
    traces,
    users,
)
from backend.roles import Role

__all__ = ["ROUTES", "setup_routes"]

MONITORS = "/api/v1/machines/{machine_id}/monitors"
JOB = "/api/v1/jobs/{job_id}"

# (method, path, handler, role needed; None: public)
ROUTES: list[tuple[str, str, Handler, Role | None]] = [
    ("POST", "/api/v1/auth:register", auth.register, None),
    ("POST", "/api/v1/auth:login", auth.login, None),
    ("POST", "/api/v1/auth:refreshToken", auth.refresh, None),
    ("POST", "/api/v1/auth:logout", auth.logout, "viewer"),
    ("GET", "/api/v1/machines", machines.list_machines, "viewer"),
    ("GET", "/api/v1/machines/{machine_id}", machines.get_machine, "viewer"),
    ("POST", MONITORS, monitors.create_monitor, "operator"),
    ("GET", MONITORS, monitors.list_monitors, "viewer"),
    ("GET", MONITORS + "/{monitor_id}", monitors.get_monitor, "viewer"),
    ("DELETE", MONITORS + "/{monitor_id}", monitors.delete_monitor, "operator"),
    ("GET", "/api/v1/machines/{machine_id}/jobs", jobs.list_machine_jobs, "viewer"),
    ("GET", "/api/v1/machines/{machine_id}/devices", devices.list_devices, "viewer"),
    ("GET", "/api/v1/machines/{machine_id}/device-processes", devices.list_processes, "viewer"),
    (
        "GET",
        "/api/v1/machines/{machine_id}/device-metrics",
        devices.machine_device_metrics,
        "viewer",
    ),
    ("GET", "/api/v1/device-metrics", devices.list_device_metrics, "viewer"),
    ("GET", "/api/v1/jobs", jobs.list_jobs, "viewer"),
    ("POST", "/api/v1/jobs:batchStop", jobs.batch_stop, "operator"),
    ("GET", JOB, jobs.get_job, "viewer"),
    ("GET", JOB + "/parameters", jobs.get_parameters, "viewer"),
    ("GET", JOB + "/code", jobs.get_code, "viewer"),
    ("GET", JOB + "/status-history", jobs.status_history, "viewer"),
    ("GET", JOB + "/ranks", jobs.get_ranks, "viewer"),
    ("GET", JOB + "/process-metrics", process_metrics.process_metrics, "viewer"),
    ("POST", JOB + ":stop", jobs.stop_job, "operator"),
    ("POST", JOB + ":trace", job_traces.start_job_trace, "operator"),
    ("GET", JOB + "/traces", job_traces.list_job_traces, "viewer"),
    ("GET", JOB + "/traces/{trace_id}", job_traces.get_job_trace, "viewer"),
    ("POST", JOB + "/traces/{trace_id}:stop", job_traces.stop_job_trace, "operator"),
    ("GET", "/api/v1/events", events.list_events, "viewer"),
    ("GET", "/api/v1/metrics/summary", metrics.summary, "viewer"),
    ("GET", "/api/v1/search", search.search, "viewer"),
    ("GET", "/api/v1/stats/cluster", stats.cluster, "viewer"),
    ("GET", "/api/v1/stats/machines/{machine_id}", stats.machine, "viewer"),
    ("GET", "/api/v1/stats/jobs", stats.top_jobs, "viewer"),
    ("GET", "/api/v1/stats/trends", stats.trends, "viewer"),
    ("POST", "/api/v1/traces:generate", traces.generate_trace, "operator"),
    ("GET", "/api/v1/traces/jobs/{trace_job_id}", traces.get_trace_job, "viewer"),
    ("GET", "/api/v1/traces/{trace_id}", traces.download_trace, "viewer"),
    ("GET", "/api/v1/users", users.list_users, "admin"),
    ("POST", "/api/v1/users:invite", users.invite_user, "admin"),
    ("GET", "/api/v1/users/{user_id}", users.get_user, "admin"),
    ("PATCH", "/api/v1/users/{user_id}", users.patch_user, "admin"),
    ("GET", "/api/v1/auditLogs", audit_logs.list_audit_logs, "admin"),
    ("GET", "/api/v1/openapi.json", openapi.document, None),
]


# A job id holds no ':', so that GET /jobs/{job_id} is not also /jobs/{job_id}:stop (whose
# OPTIONS would then allow GET).
_PATTERNS = {"{job_id}": "{job_id:[^/:]+}", "{trace_id}": "{trace_id:[^/:]+}"}


def setup_routes(app: web.Application) -> None:
    for method, path, handler, role in ROUTES:
        for name, pattern in _PATTERNS.items():
            path = path.replace(name, pattern)
        guarded = handler if role is None else requires(role, handler)
        if method == "GET":  # and HEAD, as RFC 9110 expects of a GET
            app.router.add_get(path, guarded)
        else:
            app.router.add_route(method, path, guarded)
