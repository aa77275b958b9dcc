"""Every route of the REST API, in one place (base /api/v1, seeds/003 part 1), with the role
each needs (backend.roles): viewers read machines, monitors, events, metrics and their own
traces; operators also start and stop monitors and generate traces; admins also manage
users and read the audit log. Login, register, refresh and the OpenAPI document are public
(backend.handlers.auth.PUBLIC); logout needs a token, any role."""

from __future__ import annotations

from aiohttp import web

from backend.access import Handler, requires
from backend.handlers import (
    audit_logs,
    auth,
    events,
    machines,
    metrics,
    monitors,
    openapi,
    traces,
    users,
)
from backend.roles import Role

__all__ = ["ROUTES", "setup_routes"]

MONITORS = "/api/v1/machines/{machine_id}/monitors"

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
    ("GET", "/api/v1/events", events.list_events, "viewer"),
    ("GET", "/api/v1/metrics/summary", metrics.summary, "viewer"),
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


def setup_routes(app: web.Application) -> None:
    for method, path, handler, role in ROUTES:
        guarded = handler if role is None else requires(role, handler)
        if method == "GET":  # and HEAD, as RFC 9110 expects of a GET
            app.router.add_get(path, guarded)
        else:
            app.router.add_route(method, path, guarded)
