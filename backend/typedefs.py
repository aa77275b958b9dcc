"""Every web.AppKey of the backend application, in one place."""

from __future__ import annotations

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from backend.settings import Settings
from backend.tokens import AccessClaims

__all__ = ["DB", "SETTINGS", "USER"]

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", AsyncConnectionPool)
# The caller, set by the auth middleware on every authenticated request.
USER = web.RequestKey("user", AccessClaims)
