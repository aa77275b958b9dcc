"""Every route of the REST API, in one place (base /api/v1, seeds/003 part 1)."""

from __future__ import annotations

from aiohttp import web

from backend.handlers import auth, events, machines, metrics, monitors, openapi, traces

__all__ = ["setup_routes"]

MONITORS = "/api/v1/machines/{machine_id}/monitors"


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/auth:register", auth.register)
    r.add_post("/api/v1/auth:login", auth.login)
    r.add_post("/api/v1/auth:refreshToken", auth.refresh)
    r.add_post("/api/v1/auth:logout", auth.logout)
    r.add_get("/api/v1/machines", machines.list_machines)
    r.add_get("/api/v1/machines/{machine_id}", machines.get_machine)
    r.add_post(MONITORS, monitors.create_monitor)
    r.add_get(MONITORS, monitors.list_monitors)
    r.add_get(MONITORS + "/{monitor_id}", monitors.get_monitor)
    r.add_delete(MONITORS + "/{monitor_id}", monitors.delete_monitor)
    r.add_get("/api/v1/events", events.list_events)
    r.add_get("/api/v1/metrics/summary", metrics.summary)
    r.add_post("/api/v1/traces:generate", traces.generate_trace)
    r.add_get("/api/v1/traces/jobs/{trace_job_id}", traces.get_trace_job)
    r.add_get("/api/v1/traces/{trace_id}", traces.download_trace)
    r.add_get("/api/v1/openapi.json", openapi.document)
