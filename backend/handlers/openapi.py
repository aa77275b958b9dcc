"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the API, built from the routes.

Request bodies come from the msgspec models, so the document cannot drift from what the
handlers accept; the rules a model checks across fields (which target a monitor type needs)
are spelled out as oneOf. Every answer an operation gives is listed with its body
(backend.openapi_schemas); tests/backend/test_openapi_conformance.py runs schemathesis
against a live backend and finds nothing. The role each operation needs
(``x-required-role``, with its 403) comes from the route table's guards; login, register and
every authenticated operation can answer 429 with Retry-After (rate limits).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec
from aiohttp import web

from backend import models
from backend.access import required_role
from backend.handlers import search
from backend.openapi_schemas import ERROR, FORMATS, RESPONSES, nullable
from backend.search_text import MAX_QUERY_LENGTH
from backend.typedefs import INFLUX
from xpucore import abi

__all__ = ["build_document", "document"]

_BODIES: dict[tuple[str, str], type] = {
    ("POST", "/api/v1/auth:register"): models.RegisterBody,
    ("POST", "/api/v1/auth:login"): models.LoginBody,
    ("POST", "/api/v1/auth:refreshToken"): models.RefreshBody,
    ("POST", "/api/v1/machines/{machine_id}/monitors"): models.MonitorCreate,
    ("POST", "/api/v1/traces:generate"): models.TraceGenerate,
    ("POST", "/api/v1/users:invite"): models.InviteBody,
    ("POST", "/api/v1/jobs:batchStop"): models.JobBatchStop,
    ("POST", "/api/v1/jobs/{job_id}:trace"): models.JobTraceCreate,
    ("PATCH", "/api/v1/users/{user_id}"): models.UserPatch,
}
_RATE_LIMITED = {"/api/v1/auth:login", "/api/v1/auth:register"}
PUBLIC = {
    "/api/v1/auth:login",
    "/api/v1/auth:register",
    "/api/v1/auth:refreshToken",
    "/api/v1/openapi.json",
}
_UUID_PARAMS = {"monitor_id", "trace_job_id", "trace_id", "user_id", "job_id"}
_ERRORS = {
    400: "a parameter or body field is wrong; the message names it",
    401: "no valid access token",
    404: "no such resource",
    409: "the resource is not in a state that allows this (FAILED_PRECONDITION), or "
    "is there already (ALREADY_EXISTS)",
    500: "internal error",
    503: "UNAVAILABLE: a service the answer needs is down, or no database connection "
    "was free in time (Retry-After)",
    504: "DEADLINE_EXCEEDED: a query ran past the statement timeout; the message says "
    "what to narrow",
    507: "RESOURCE_EXHAUSTED: the database volume is nearly full "
    "(XPUTRACE_DATABASE_FULL_PERCENT); the message says how full and what to do",
}
_OWN_DB = "/api/v1/openapi.json"  # the one operation that needs no database
# Operations that also answer 429 for a per-user quota (backend.settings max_*_per_user).
_QUOTAS = {
    "/api/v1/machines/{machine_id}/monitors": "monitors STARTING or RUNNING, or events "
    "stored by the caller's monitors",
    "/api/v1/traces:generate": "trace jobs queued or running",
}


def _errors(method: str, path: str, has_query: bool) -> list[int]:
    codes = {500}
    if path != _OWN_DB:
        codes.add(503)
    if path not in PUBLIC and path != "/api/v1/auth:logout":  # backend.request_db
        codes.add(504)
    if (method, path) in _BODIES or has_query or any(p in path for p in _UUID_PARAMS):
        codes.add(400)
    if path not in PUBLIC:
        codes.add(401)
    if "{" in path:
        codes.add(404)
    extra = {
        ("POST", "/api/v1/auth:register"): {409},
        ("POST", "/api/v1/auth:login"): {401},
        ("POST", "/api/v1/auth:refreshToken"): {401},
        ("GET", "/api/v1/traces/{trace_id}"): {409},
        ("GET", "/api/v1/metrics/summary"): {503},
        ("POST", "/api/v1/machines/{machine_id}/monitors"): {507},
        ("POST", "/api/v1/users:invite"): {409},
        ("POST", "/api/v1/jobs/{job_id}:stop"): {409},
        ("GET", "/api/v1/jobs/{job_id}/process-metrics"): {503},
        ("POST", "/api/v1/jobs/{job_id}:trace"): {409},
        ("POST", "/api/v1/jobs/{job_id}/traces/{trace_id}:stop"): {409},
        ("PATCH", "/api/v1/users/{user_id}"): {409},
    }
    return sorted(codes | extra.get((method, path), set()))


def _text(fmt: str, description: str, max_length: int = 4096) -> dict[str, Any]:
    _, fields = FORMATS[fmt]
    names = ", ".join(fields) if fields else ""
    return {
        "type": "string",
        "maxLength": max_length,
        "format": fmt,
        "description": f"{description}{' Fields: ' + names + '.' if names else ''}",
    }


def _list_query(resource: str, *, ordered: bool = True) -> list[dict[str, Any]]:
    """filter, order_by (when ordered: else one fixed order), page_size, page_token."""
    order_by = (
        [
            {
                "name": "order_by",
                "in": "query",
                "schema": _text(
                    f"xputrace-order-by-{resource}",
                    "field [asc|desc], comma-separated, each field once.",
                    1024,
                ),
            }
        ]
        if ordered
        else []
    )
    return [
        {
            "name": "filter",
            "in": "query",
            "schema": _text(
                f"xputrace-filter-{resource}",
                "AIP-160: field op value (= != < <= > >= :), AND, "
                "OR, NOT, parentheses; == is =. Empty: everything.",
            ),
        },
        *order_by,
        {
            "name": "page_size",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 0,
                "maximum": 999_999_999_999_999_999,
                "description": "0 or absent: 100; above 1000: 1000",
            },
        },
        {
            "name": "page_token",
            "in": "query",
            "schema": _text(
                "xputrace-page-token",
                "next_page_token of the previous page, asked with the same "
                "filter and order_by; anything else is 400.",
            ),
        },
    ]


# Lists that also answer CSV (backend.csv_export).
CSV_LISTS = (
    "/api/v1/machines",
    "/api/v1/machines/{machine_id}/monitors",
    "/api/v1/jobs",
    "/api/v1/machines/{machine_id}/jobs",
    "/api/v1/events",
    "/api/v1/device-metrics",
    "/api/v1/machines/{machine_id}/device-metrics",
)
_FORMAT = {
    "name": "format",
    "in": "query",
    "schema": {
        "type": "string",
        "enum": ["json", "csv"],
        "description": "csv: every row matching the filter, streamed as text/csv (page_size "
        "ignored; a page_token is where it starts). Absent: Accept: text/csv asks for it.",
    },
}


def _search_query() -> list[dict[str, Any]]:
    kind = "(" + "|".join(search.SEED_TYPES) + ")"
    kinds = "(" + "|".join(k for k in search.SEED_TYPES if k not in ("all", "node")) + ")"
    size = {
        "type": "integer",
        "minimum": 0,
        "maximum": 999_999_999_999_999_999,
        "description": f"0 or absent: {search.DEFAULT_PAGE_SIZE}; above "
        f"{search.MAX_PAGE_SIZE}: {search.MAX_PAGE_SIZE}",
    }
    blank = search.BLANK.encode("unicode_escape").decode() + r"\u0000"
    return [
        {
            "name": "q",
            "in": "query",
            "required": True,
            "schema": {
                "type": "string",
                "maxLength": MAX_QUERY_LENGTH,
                "pattern": rf"^[^\u0000]*[^{blank}][^\u0000]*$",
                "description": 'words (all needed), "a phrase", OR between two terms; '
                "punctuation separates words, so --lr, lr=0.1, a path or a file name are "
                "phrases of their words",
            },
        },
        {
            "name": "kinds",
            "in": "query",
            "schema": {
                "type": "string",
                "pattern": f"^({kinds}(,{kinds})*)?$",
                "description": "comma-separated; absent or empty: all",
            },
        },
        {
            "name": "type",
            "in": "query",
            "schema": {
                "type": "string",
                "pattern": f"^{kind}$",
                "description": "seed 000's name: one kind, node (machine) or all; kinds wins",
            },
        },
        {"name": "page_size", "in": "query", "schema": size},
        {"name": "limit", "in": "query", "schema": {**size, "description": "page_size wins"}},
        {
            "name": "page_token",
            "in": "query",
            "schema": _text(
                "xputrace-page-token",
                "next_page_token of the previous page, asked with the same q and kinds; "
                "anything else is 400.",
            ),
        },
    ]


def _query(method: str, path: str, app: web.Application) -> list[dict[str, Any]]:
    params = _list_params(method, path, app)
    return [*params, _FORMAT] if method == "GET" and path in CSV_LISTS else params


def _list_params(method: str, path: str, app: web.Application) -> list[dict[str, Any]]:
    if method != "GET":
        return []
    if path == "/api/v1/machines":
        return _list_query("machines")
    if path == "/api/v1/machines/{machine_id}/monitors":
        return _list_query("monitors")
    if path in ("/api/v1/jobs", "/api/v1/machines/{machine_id}/jobs"):
        return _list_query("jobs")
    if path == "/api/v1/jobs/{job_id}/traces":
        return _list_query("job-traces")
    if path == "/api/v1/users":  # oldest first
        return _list_query("users", ordered=False)
    if path == "/api/v1/auditLogs":  # newest first
        return _list_query("audit-logs", ordered=False)
    if path == "/api/v1/events":
        return [
            *_list_query("events"),
            {
                "name": "fields",
                "in": "query",
                "schema": _text(
                    "xputrace-fields-events",
                    "fields to return, comma-separated; event_data.a.b picks inside event_data.",
                ),
            },
        ]
    if path in _DEVICE_QUERIES:
        return _DEVICE_QUERIES[path]
    if path == "/api/v1/jobs/{job_id}/process-metrics":
        return [
            {"name": name, "in": "query", "schema": _text(fmt, what, 64)}
            for name, fmt, what in (
                ("startTime", "xputrace-start-time", "RFC 3339; absent: the job's start."),
                (
                    "endTime",
                    "xputrace-end-time",
                    "RFC 3339, after startTime, excluded; absent: the job's end, or now.",
                ),
            )
        ] + [
            {
                "name": "interval",
                "in": "query",
                "schema": {
                    "type": "string",
                    "enum": ["10s", "30s", "1m", "5m", "15m", "30m", "1h", "6h", "12h", "1d", "7d"],
                    "description": "aggregation interval: one of these, or any whole number "
                    "of s, m, h or d up to 7d; "
                    "absent: the shortest of 10s, 1m, 5m, 15m, 1h, 6h, 1d that spans the "
                    "range in at most 10000 intervals. CPU % is the mean of the samples in an "
                    "interval; sizes and counts (RSS, threads, open files, read and write "
                    "bytes since the process started, accelerator memory) their maximum.",
                },
            }
        ]
    if path == "/api/v1/search":
        return _search_query()
    if path == "/api/v1/metrics/summary":
        sources = ["postgresql", "influxdb"] if app.get(INFLUX) is not None else ["postgresql"]
        return [
            {
                "name": "filter",
                "in": "query",
                "schema": _text(
                    "xputrace-metrics-filter",
                    "field = value joined by AND; timestamp takes > >= < <=.",
                ),
            },
            {
                "name": "metrics",
                "in": "query",
                "schema": _text(
                    "xputrace-metrics",
                    "metric names, comma-separated; absent: the call metrics (with a device "
                    "filter: the accelerator metrics; with a job_id filter: those and "
                    "cpu_utilization). cpu_utilization is the CPU used by the AI jobs' "
                    "processes (not the whole machine's), in % of one core, summed over the "
                    "jobs matched by machine_id, job_id (a distributed job: its ranks) and "
                    "pid: current the sum of each job's latest sample in the range, "
                    "avg_<range> the sum of each job's mean over the range.",
                ),
            },
            {"name": "source", "in": "query", "schema": {"type": "string", "enum": sources}},
        ]
    return []


_DEVICE = [
    {"name": "kind", "in": "query", "schema": {"type": "string", "enum": ["gpu", "npu"]}},
    {
        "name": "device",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": 4095, "description": "index"},
    },
]
_RANGE = [
    {
        "name": name,
        "in": "query",
        "schema": {**_text(fmt, f"RFC 3339; absent: {default}.", 64)},
    }
    for name, fmt, default in (
        ("startTime", "xputrace-start-time", "endTime less 1 hour"),
        ("endTime", "xputrace-end-time", "now"),
    )
] + [
    {
        "name": "interval",
        "in": "query",
        "schema": {
            "type": "string",
            "enum": ["1m", "5m", "1h"],
            "description": "absent: 1m; each value's mean or max per interval (aggregation)",
        },
    }
]
_MACHINE_ID = {
    "name": "machine_id",
    "in": "query",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\x00]+$"},
}
_DEVICE_QUERIES: dict[str, list[dict[str, Any]]] = {
    "/api/v1/stats/trends": [_MACHINE_ID, *_RANGE],
    "/api/v1/stats/jobs": [
        _MACHINE_ID,
        {
            "name": "order_by",
            "in": "query",
            "schema": {
                "type": "string",
                "enum": ["device_time", "memory", "peak_memory"],
                "description": "absent: device_time; largest first",
            },
        },
        {
            "name": "limit",
            "in": "query",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "description": "absent: 10",
            },
        },
    ],
    "/api/v1/machines/{machine_id}/device-processes": _DEVICE,
    "/api/v1/machines/{machine_id}/device-metrics": _DEVICE + _RANGE,
    "/api/v1/device-metrics": [
        {
            "name": "machine_id",
            "in": "query",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "pattern": "^[^\\x00]+$",
            },
        },
        *_DEVICE,
        *_RANGE,
    ],
}


def _monitor_rules(schema: dict[str, Any]) -> None:
    """MonitorCreate's cross-field rules (models.MonitorCreate.__post_init__) as oneOf."""
    given = {"type": "integer"}, {"type": "string"}
    absent = {"type": "null"}

    def target(
        *, any_of: list[str], none: list[str], all_of: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        t: dict[str, Any] = {"properties": {k: absent for k in none}}
        if any_of:
            t["anyOf"] = [{"required": [k], "properties": {k: given[k != "pid"]}} for k in any_of]
        if all_of:
            t["required"] = list(all_of)
            t["properties"].update({k: given[k != "pid"] for k in all_of})
        return t

    no_functions = {"properties": {"functions": absent}}
    syscalls = sorted(abi.function_names("SYSCALL").values())
    schema["oneOf"] = [
        {
            "properties": {
                "monitor_type": {"enum": ["CUDA", "ACL", "OLLAMA"]},
                "target": target(any_of=["pid", "library_path"], none=["syscalls"]),
                "config": no_functions,
            }
        },
        {
            "properties": {
                "monitor_type": {"const": "PYTHON"},
                "target": target(any_of=[], none=["library_path", "syscalls"], all_of=("pid",)),
            }
        },
        {
            "properties": {
                "monitor_type": {"const": "SYSCALL"},
                "target": {
                    **target(any_of=["pid", "comm"], none=["library_path"]),
                    "properties": {
                        "library_path": absent,
                        "syscalls": nullable(
                            {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 512,
                                "items": {"enum": syscalls},
                            }
                        ),
                    },
                },
                "config": no_functions,
            }
        },
    ]
    schema["description"] = (
        "Refused with 400 when the machine's manager does not announce the monitor type, or "
        "a target or config field set to other than its default for that type (GET "
        "/api/v1/machines/{machine_id}: monitor_types). config.sampling_rate is honoured "
        "only at 1.0 (every call is recorded), config.enable_profiling only false, and "
        "target.binary_path by no monitor type yet."
    )


def _components() -> tuple[dict[type, Any], dict[str, Any]]:
    bodies = list(_BODIES.values())
    schemas, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    components = copy.deepcopy(components)
    _monitor_rules(components["MonitorCreate"])
    components["TraceGenerate"]["properties"]["filter"].update(
        _text("xputrace-filter-events", "AIP-160 over the events fields; empty: every event.")
    )
    components["Error"] = ERROR
    return dict(zip(bodies, schemas, strict=True)), components


def _responses(method: str, path: str, has_query: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, body in RESPONSES.get((method, path), {}).items():
        r: dict[str, Any] = {"description": "done" if code < 300 else ""}
        if body is not None and path == "/api/v1/traces/{trace_id}":
            r["content"] = {
                t: {"schema": body}
                for t in ("application/octet-stream", "application/json", "application/gzip")
            }
            r["headers"] = {"Content-Disposition": {"schema": {"type": "string"}}}
        elif body is not None:
            r["content"] = {"application/json": {"schema": body}}
            if method == "GET" and path in CSV_LISTS:
                r["content"]["text/csv"] = {"schema": {"type": "string"}}
                r["headers"] = {"Content-Disposition": {"schema": {"type": "string"}}}
        if (method, path) == ("POST", "/api/v1/traces:generate"):
            r["headers"] = {"Location": {"schema": {"type": "string"}}}
        if code == 202 and method == "DELETE":
            r["description"] = "the machine is unreachable: the monitor is STOPPING"
        out[str(code)] = r
    for code in _errors(method, path, has_query):
        out[str(code)] = {
            "description": _ERRORS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if code == 503:
            out[str(code)]["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait (when the database was busy)",
                    "schema": {"type": "integer"},
                }
            }
    return out


def _access(op: dict[str, Any], path: str, role: str | None) -> None:
    """The role an operation needs, and the 403 and 429 answers that come with it."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    if role is not None:
        op["x-required-role"] = role
    if role in ("operator", "admin"):
        op["responses"]["403"] = {
            "description": f"PERMISSION_DENIED: needs the {role} role",
            "content": error,
        }
    if path == "/api/v1/auth:register":
        op["responses"]["403"] = {
            "description": "PERMISSION_DENIED: registration is closed "
            "and no valid invite_token was given",
            "content": error,
        }
    if role is not None or path in _RATE_LIMITED:
        quota = _QUOTAS.get(path) if op["operationId"].startswith("post_") else None
        op["responses"]["429"] = {
            "description": "RESOURCE_EXHAUSTED: rate limited (Retry-After), or the user's "
            "requests already hold their share of database connections"
            + (
                f", or the caller's quota of {quota} is reached (the message names it)"
                if quota
                else ""
            ),
            "headers": {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            },
            "content": error,
        }


def build_document(app: web.Application) -> dict[str, Any]:
    by_type, components = _components()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method == "HEAD":
            continue
        doc = (route.handler.__doc__ or "").strip()
        query = _query(route.method, path, app)
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "summary": doc.splitlines()[0] if doc else route.handler.__name__,
            "responses": _responses(route.method, path, bool(query)),
        }
        if (route.method, path) not in RESPONSES:  # a route nobody documented yet
            op["responses"]["default"] = {
                "description": "error",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        _access(op, path, required_role(route.handler))
        body = _BODIES.get((route.method, path))
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[body]}},
            }
        if path not in PUBLIC:
            op["security"] = [{"bearer": []}]
        params = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"}
                if p in _UUID_PARAMS
                else {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\x00]+$"},
            }
            for p in re.findall(r"\{(\w+)\}", path)
        ]
        if params or query:
            op["parameters"] = params + query
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "xputrace", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def document(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return web.json_response(build_document(request.app))
