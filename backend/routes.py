"""Every route of the REST API, in one place (base /api/v1, seeds/003 part 1)."""

from __future__ import annotations

from aiohttp import web

from backend.handlers import auth, openapi

__all__ = ["setup_routes"]


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth:register", auth.register)
    app.router.add_post("/api/v1/auth:login", auth.login)
    app.router.add_post("/api/v1/auth:refreshToken", auth.refresh)
    app.router.add_post("/api/v1/auth:logout", auth.logout)
    app.router.add_get("/api/v1/openapi.json", openapi.document)
