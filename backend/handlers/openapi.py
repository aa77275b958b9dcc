"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the API, built from the routes.

Request bodies come from the msgspec models and the role each operation needs
(``x-required-role``, with its 403) from the route table's guards, so the document cannot
drift from what the handlers accept. Login, register and every authenticated operation
can answer 429 with Retry-After (rate limits).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from backend import models
from backend.access import required_role

__all__ = ["build_document", "document"]

_BODIES: dict[tuple[str, str], type] = {
    ("POST", "/api/v1/auth:register"): models.RegisterBody,
    ("POST", "/api/v1/auth:login"): models.LoginBody,
    ("POST", "/api/v1/auth:refreshToken"): models.RefreshBody,
    ("POST", "/api/v1/machines/{machine_id}/monitors"): models.MonitorCreate,
    ("POST", "/api/v1/traces:generate"): models.TraceGenerate,
    ("POST", "/api/v1/users:invite"): models.InviteBody,
    ("PATCH", "/api/v1/users/{user_id}"): models.UserPatch,
}
_RATE_LIMITED = {"/api/v1/auth:login", "/api/v1/auth:register"}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"},
        "status": {"type": "string"}}}},
}


def build_document(app: web.Application) -> dict[str, Any]:
    bodies = list(_BODIES.values())
    schemas, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(bodies, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method == "HEAD":
            continue
        doc = (route.handler.__doc__ or "").strip()
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "summary": doc.splitlines()[0] if doc else route.handler.__name__,
            "responses": {
                "default": {"description": "error",
                            "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        role = required_role(route.handler)
        error = {"application/json": {"schema": _ERROR}}
        if role is not None:
            op["x-required-role"] = role
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "no valid access token", "content": error}
        if role in ("operator", "admin"):
            op["responses"]["403"] = {"description": f"PERMISSION_DENIED: needs the {role} role",
                                      "content": error}
        if path == "/api/v1/auth:register":
            op["responses"]["403"] = {"description": "PERMISSION_DENIED: registration is closed "
                                      "and no valid invite_token was given", "content": error}
        if role is not None or path in _RATE_LIMITED:
            op["responses"]["429"] = {
                "description": "RESOURCE_EXHAUSTED: rate limited",
                "headers": {"Retry-After": {"description": "seconds to wait",
                                            "schema": {"type": "integer"}}},
                "content": error,
            }
        body = _BODIES.get((route.method, path))
        if body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": by_type[body]}}}
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "xputrace", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


async def document(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return web.json_response(build_document(request.app))
