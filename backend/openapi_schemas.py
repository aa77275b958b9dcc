"""JSON Schemas of what the REST API answers and of the strings it parses, for the OpenAPI
document (backend.handlers.openapi). tests/backend/test_openapi_conformance.py runs
schemathesis against a live backend to keep them exact.

The query languages (filter, order_by, fields, page_token) are named by custom string
formats (``xputrace-filter-events`` ...): JSON Schema cannot spell AIP-160, and a format
says which grammar and which fields apply. FORMATS lists each with the fields it takes.
"""

from __future__ import annotations

from typing import Any

from backend.cpu_summary import CPU_METRIC
from backend.device_samples import AGGREGATION, VALUES
from backend.device_summary import DEVICE_METRICS as SUMMARY_DEVICE_METRICS
from backend.filters import FieldSpec
from backend.metrics_summary import METRICS
from backend.repo import audit_logs, events, job_traces, jobs, machines, monitors, users
from xpucore.device_wire import DEVICE_FLOATS, HEALTH, KINDS
from xpucore.job_wire import JOB_STATUSES

__all__ = ["ERROR", "FORMATS", "GRPC_STATUSES", "RESPONSES", "fields_of", "nullable"]

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
UUID: Schema = {"type": "string", "format": "uuid"}
ANY_OBJECT: Schema = {"type": "object"}


def nullable(s: Schema) -> Schema:
    return {"anyOf": [s, {"type": "null"}]}


def obj(props: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with every key of props (required) and maybe those of optional."""
    return {
        "type": "object",
        "required": sorted(props),
        "properties": {**props, **(optional or {})},
    }


GRPC_STATUSES = [
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
]
ERROR = obj(
    {
        "error": obj(
            {"code": INT, "message": STR, "status": {"type": "string", "enum": GRPC_STATUSES}}
        )
    }
)

MONITOR_STATUS = {
    "type": "string",
    "enum": ["STARTING", "RUNNING", "STOPPING", "STOPPED", "ERROR", "FAILED_TO_START"],
}
MONITOR_TYPE = {"type": "string", "enum": ["CUDA", "ACL", "PYTHON", "SYSCALL", "OLLAMA"]}
MACHINE_STATUS = {"type": "string", "enum": ["ACTIVE", "INACTIVE"]}
OPTIONS = {
    "type": "object",
    "additionalProperties": nullable(
        obj({"target": {"type": "array", "items": STR}, "config": {"type": "array", "items": STR}})
    ),
}
MONITOR_SUMMARY = obj(
    {
        "id": UUID,
        "display_name": STR,
        "monitor_type": MONITOR_TYPE,
        "status": MONITOR_STATUS,
        "start_time": nullable(TIME),
        "machine_status": nullable(MACHINE_STATUS),
    }
)
MONITOR = obj(
    {
        **MONITOR_SUMMARY["properties"],
        "machine_id": STR,
        "target": ANY_OBJECT,
        "config": ANY_OBJECT,
        "error_code": nullable(STR),
        "error_message": nullable(STR),
        "create_time": TIME,
        "stop_time": nullable(TIME),
        "agent_pid": nullable(INT),
    }
)
MACHINE = obj(
    {
        "id": STR,
        "hostname": STR,
        "os_info": STR,
        "accelerators": {"type": "array", "items": ANY_OBJECT},
        "agent_manager_status": {"type": "string", "enum": ["RUNNING", "STOPPED", "UNKNOWN"]},
        "manager_version": STR,
        "last_seen": nullable(TIME),
        "status": MACHINE_STATUS,
        "monitor_types": nullable(OPTIONS),
        # its clock against the backend's (xpucore.clock_sync); null: unmeasured
        "clock": nullable(
            obj({"offset_ns": INT, "error_bound_ns": {**INT, "minimum": 0}, "measured_at": TIME})
        ),
    }
)
EVENT = {
    "type": "object",
    "properties": {  # every key, or those `fields` asks for
        "timestamp": STR,
        "machine_id": STR,
        "monitor_id": UUID,
        "pid": INT,
        "tid": INT,
        "cpu": INT,
        "comm": STR,
        "event_type": STR,
        "duration_ns": INT,
        "ret": INT,
        "flags": INT,
        "incomplete": BOOL,
        "event_data": ANY_OBJECT,
        "python_stack": {
            "type": "array",
            "items": obj({"function": STR, "file": STR, "line": INT}),
        },
    },
}
TRACE_JOB = obj(
    {
        "trace_job_id": UUID,
        "trace_name": STR,
        "status": {"type": "string", "enum": ["PROCESSING", "COMPLETED", "FAILED"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "filter": STR,
        "format": {"type": "string", "enum": ["perfetto", "chrome"]},
        "gzip": BOOL,
        "events": INT,
        "events_total": nullable(INT),
        "attempts": INT,
        "create_time": TIME,
        "start_time": nullable(TIME),
        "end_time": nullable(TIME),
    },
    {
        "trace_id": UUID,
        "download_url": STR,
        "file_name": STR,
        "file_size": INT,
        "stats": ANY_OBJECT,
        "error_message": nullable(STR),
    },
)
ROLE = {"type": "string", "enum": ["admin", "operator", "viewer"]}
USER = obj(
    {
        "user_id": UUID,
        "email": STR,
        "display_name": STR,
        "role": ROLE,
        "create_time": TIME,
        # the target policy: whose processes the user may trace (an operator's grant)
        "unix_accounts": {"type": "array", "items": STR},
    }
)
AUDIT_ENTRY = obj(
    {
        "id": {**STR, "description": "decimal; newer entries have larger ids"},
        "time": TIME,
        "actor_id": nullable(UUID),
        "actor_email": STR,
        "actor_role": ROLE,
        "address": STR,
        "action": {
            "type": "string",
            "enum": [
                "START_MONITOR",
                "STOP_MONITOR",
                "SET_ROLE",
                "INVITE_USER",
                "STOP_JOB",
                "BATCH_STOP_JOBS",
                "TRACE_JOB",
                "STOP_JOB_TRACE",
            ],
        },
        "target": STR,
        "result": {"type": "string", "enum": ["PENDING", "SUCCESS", "FAILURE"]},
        "http_status": nullable(INT),
        "error_code": nullable(STR),
        "message": STR,
        "settle_time": nullable(TIME),
    }
)
JOB_STATUS = {"type": "string", "enum": list(JOB_STATUSES)}
JOB_SUMMARY = obj(
    {
        "jobId": UUID,
        "nodeId": STR,
        "jobName": STR,
        "jobType": nullable(STR),
        "framework": nullable(STR),
        "frameworkVersion": nullable(STR),
        "modelFormat": nullable(STR),
        "pid": {**nullable(INT), "description": "null for a distributed job"},
        "ppid": nullable(INT),
        "pgid": nullable(INT),
        "processName": STR,
        "cwd": nullable(STR),
        "user": nullable(STR),
        "startTime": {**INT, "description": "Unix ms"},
        "endTime": {
            **nullable(INT),
            "description": "Unix ms; null while running or when the end was not seen",
        },
        "status": JOB_STATUS,
        "statusReason": STR,
        "exitCode": nullable(INT),
        "signal": nullable(INT),
        "coreDumped": BOOL,
        "createdAt": TIME,
        "updatedAt": TIME,
        "kind": {
            "type": "string",
            "enum": ["process", "distributed"],
            "description": "distributed: the ranks of one launch across machines "
            "(GET /jobs/{id}/ranks); nodeId, description and parameters are its rank 0's",
        },
        "distributedJobId": {**nullable(UUID), "description": "a rank's distributed job"},
        "launcher": nullable(obj({"kind": STR, "id": STR})),
        "rank": nullable(INT),
        "localRank": nullable(INT),
        "worldSize": nullable(INT),
        "device": nullable(STR),
    },
    {
        "ranksSeen": {**INT, "description": "distributed: distinct ranks that have appeared"},
        "ranksMissing": {
            **nullable(INT),
            "description": "distributed: the world size less the ranks seen",
        },
        "nodeIds": {"type": "array", "items": STR},
    },
)
JOB_RANKS = obj(
    {
        "jobId": UUID,
        "worldSize": nullable(INT),
        "ranksSeen": INT,
        "missing": nullable(INT),
        "ranks": {
            "type": "array",
            "items": obj(
                {
                    "jobId": UUID,
                    "nodeId": STR,
                    "hostname": STR,
                    "pid": INT,
                    "rank": nullable(INT),
                    "localRank": nullable(INT),
                    "device": nullable(STR),
                    "status": JOB_STATUS,
                    "startTime": INT,
                    "endTime": nullable(INT),
                }
            ),
        },
    }
)
JOB = obj(
    {
        **JOB_SUMMARY["properties"],
        "commandLine": STR,
        "startTicks": nullable(INT),
        "node": nullable(obj({"nodeId": STR, "hostname": STR})),
        "latestMetrics": {
            **nullable(ANY_OBJECT),
            "description": "the job's last process metrics sample (its timestamp, state, "
            "cpuPercent, rssBytes, memoryMb, threadCount, readBytes, writeBytes, ioSource, "
            "openFiles, accelMemoryBytes); null before the first",
        },
    },
    {k: {} for k in jobs.DETAILS},
)
JOB_ITEMS = obj({"jobId": UUID, "items": {"type": "array", "items": ANY_OBJECT}})
JOB_HISTORY = obj(
    {
        "jobId": UUID,
        "items": {
            "type": "array",
            "items": obj(
                {
                    "id": INT,
                    "jobId": UUID,
                    "oldStatus": nullable(JOB_STATUS),
                    "newStatus": JOB_STATUS,
                    "reason": STR,
                    "changedAt": TIME,
                }
            ),
        },
    }
)
NUM: Schema = {"type": "number"}
PROCESS_METRICS = obj(
    {
        "jobId": UUID,
        "pid": INT,
        "startTime": TIME,
        "endTime": TIME,
        "interval": STR,
        "source": {"type": "string", "enum": ["influxdb", "postgresql"]},
        "aggregates": {"type": "object", "additionalProperties": STR},
        "metrics": {
            "type": "array",
            "items": obj(
                {
                    "jobId": UUID,
                    "pid": INT,
                    "timestamp": {**TIME, "description": "the interval's start"},
                    "cpuPercent": nullable(NUM),
                    "rssBytes": nullable(INT),
                    "memoryMb": nullable(NUM),
                    "threadCount": nullable(INT),
                    "openFiles": nullable(INT),
                    "readBytes": nullable(INT),
                    "writeBytes": nullable(INT),
                    "accelMemoryBytes": nullable(INT),
                    "suspended": BOOL,
                    "samples": INT,
                }
            ),
        },
    }
)
DEVICE_VALUES: Schema = {
    v: nullable(NUM if v in DEVICE_FLOATS or AGGREGATION[v] == "mean" else INT) for v in VALUES
}
_KIND = {"type": "string", "enum": list(KINDS)}
DEVICE = obj(
    {
        "kind": _KIND,
        "index": INT,
        "uuid": nullable(STR),
        "name": nullable(STR),
        "bus_id": nullable(STR),
        "health": {"type": "string", "enum": list(HEALTH)},
        "health_detail": nullable(STR),
        **{v: nullable(NUM if v in DEVICE_FLOATS else INT) for v in VALUES},
        "sampled_at": TIME,
    }
)
DEVICES = obj(
    {
        "machine_id": STR,
        "errors": nullable({"type": "array", "items": obj({"library": STR, "message": STR})}),
        "devices": {"type": "array", "items": DEVICE},
    }
)
DEVICE_PROCESSES = obj(
    {
        "machine_id": STR,
        "processes": {
            "type": "array",
            "items": obj(
                {
                    "kind": _KIND,
                    "index": INT,
                    "uuid": nullable(STR),
                    "pid": INT,
                    "memory_bytes": nullable(INT),
                    "job_id": nullable(UUID),
                    "job_name": nullable(STR),
                    "process_name": nullable(STR),
                    "sampled_at": TIME,
                }
            ),
        },
    }
)
DEVICE_METRICS = obj(
    {
        "start_time": TIME,
        "end_time": TIME,
        "interval": STR,
        "aggregation": ANY_OBJECT,
        "source": {"type": "string", "enum": ["postgresql", "influxdb"]},
        "metrics": {
            "type": "array",
            "items": obj(
                {
                    "machine_id": STR,
                    "kind": _KIND,
                    "index": INT,
                    "uuid": nullable(STR),
                    "time": TIME,
                    **DEVICE_VALUES,
                }
            ),
        },
    },
    {"machine_id": STR},
)
_COUNTS: Schema = {"type": "object", "additionalProperties": INT}
_FIGURES: dict[str, Schema] = {
    "devices": obj({"total": INT, "by_kind": _COUNTS, "by_health": _COUNTS}),
    "utilization_pct_mean": nullable(NUM),
    "temperature_c_mean": nullable(NUM),
    "power_w_mean": nullable(NUM),
    "memory_used_bytes": INT,
    "memory_total_bytes": INT,
    "jobs": obj({"total": INT, "by_status": _COUNTS, "by_type": _COUNTS, "by_framework": _COUNTS}),
    "timestamp": TIME,
}
STATS_CLUSTER = obj({"machines": obj({"total": INT, "by_status": _COUNTS}), **_FIGURES})
STATS_MACHINE = obj({"machine_id": STR, "hostname": STR, "status": STR, **_FIGURES})
_HELD = {
    "device_seconds": NUM,
    "memory_bytes": INT,
    "peak_memory_bytes": INT,
}
STATS_JOBS = obj(
    {
        "order_by": STR,
        "jobs": {
            "type": "array",
            "items": obj(
                {
                    "job_id": UUID,
                    "job_name": STR,
                    "machine_id": STR,
                    "hostname": nullable(STR),
                    "status": STR,
                    **_HELD,
                    "devices": {
                        "type": "array",
                        "items": obj(
                            {
                                "machine_id": STR,
                                "kind": _KIND,
                                "index": INT,
                                "uuid": nullable(STR),
                                **_HELD,
                            }
                        ),
                    },
                }
            ),
        },
    }
)
STATS_TRENDS = obj(
    {
        "start_time": TIME,
        "end_time": TIME,
        "interval": STR,
        "source": {"type": "string", "enum": ["postgresql", "influxdb"]},
        "points": {
            "type": "array",
            "items": obj(
                {
                    "time": TIME,
                    "devices": INT,
                    "utilization_pct_mean": nullable(NUM),
                    "temperature_c_mean": nullable(NUM),
                    "memory_used_bytes": INT,
                    "jobs_running": INT,
                }
            ),
        },
    },
    {"machine_id": STR},
)
NEXT_PAGE = {"next_page_token": {"type": "string", "description": "empty on the last page"}}
JOB_TRACE_STATE = {
    "type": "string",
    "enum": ["RUNNING", "STOPPING", "GENERATING", "DONE", "FAILED"],
}
JOB_TRACE_RANK = obj(
    {
        "rank": nullable(INT),
        "jobId": {**UUID, "description": "the rank's process"},
        "nodeId": STR,
        "hostname": STR,
        "pid": INT,
        "late": {**BOOL, "description": "joined while the trace ran"},
        "monitorId": nullable(UUID),
        "monitorStatus": nullable(MONITOR_STATUS),
        "error": {**nullable(STR), "description": "why the rank has no monitor, or its "
                  "monitor did not start"},
        "eventsSent": {**nullable(INT), "description": "events its agent said it sent "
                       "(null: not said, or not stopped yet)"},
        "eventsStored": {**nullable(INT), "description": "events of its monitor stored when "
                         "the trace was generated"},
    }
)  # fmt: skip
JOB_TRACE_SUMMARY = obj(
    {
        "jobTraceId": UUID,
        "jobId": UUID,
        "monitorType": {"type": "string", "enum": ["CUDA", "ACL", "PYTHON", "SYSCALL"]},
        "config": ANY_OBJECT,
        "window": nullable(ANY_OBJECT),
        "name": STR,
        "state": JOB_TRACE_STATE,
        "stateReason": STR,
        "createdBy": nullable(UUID),
        "createTime": TIME,
        "stopTime": nullable(TIME),
        "endTime": nullable(TIME),
        "traceJobId": {**nullable(UUID), "description": "GET /api/v1/traces/jobs/{id}: the "
                       "trace, once GENERATING"},
        "clockAlignment": {
            **nullable({"type": "array", "items": obj(
                {"nodeId": STR, "offsetNs": INT, "errorNs": nullable(INT)})}),
            "description": "per machine: offsetNs added to its events' timestamps to put "
            "them on the backend's clock, errorNs the bound of that correction (null: never "
            "measured, taken as is); set once the trace is generated",
        },
        "complete": {**nullable(BOOL), "description": "every rank's monitor had stored the "
                     "events its agent sent when the trace was generated; false: stateReason "
                     "names the ranks short and by how many; null: not generated yet"},
    }
)  # fmt: skip
JOB_TRACE = obj(
    {**JOB_TRACE_SUMMARY["properties"], "ranks": {"type": "array", "items": JOB_TRACE_RANK}}
)

# Bodies of the 2xx answers, by (method, path); None: no body.
SEARCH_HIT = obj(
    {
        "kind": {"type": "string", "enum": ["job", "machine", "monitor", "trace"]},
        "id": {**STR, "description": "the machine's id, or the job's, monitor's or trace job's"},
        "title": {**STR, "description": "hostname, job name, display name or trace name"},
        "url": {**STR, "description": "where the API serves it"},
        "machine_id": nullable(STR),
        "status": nullable(STR),
        "score": {"type": "number", "description": "higher first; 3 and over: the name exactly"},
        "matched_field": {**STR, "description": "the field the snippet is from"},
        "snippet": STR,
        "highlights": {
            "type": "array",
            "items": {"type": "array", "items": INT, "minItems": 2, "maxItems": 2},
            "description": "[start, end) character offsets of the matches in snippet",
        },
    }
)

RESPONSES: dict[tuple[str, str], dict[int, Schema | None]] = {
    ("GET", "/api/v1/search"): {
        200: obj({"results": {"type": "array", "items": SEARCH_HIT}, **NEXT_PAGE})
    },
    ("POST", "/api/v1/auth:register"): {201: USER},
    ("POST", "/api/v1/auth:login"): {
        200: obj({"access_token": STR, "refresh_token": STR, "expires_in": INT})
    },
    ("POST", "/api/v1/auth:refreshToken"): {
        200: obj(
            {"access_token": STR, "expires_in": INT},
            {"refresh_token": {**STR, "description": "only with refresh_token_rotation"}},
        )
    },
    ("POST", "/api/v1/auth:logout"): {204: None},
    ("GET", "/api/v1/machines"): {
        200: obj({"machines": {"type": "array", "items": MACHINE}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/machines/{machine_id}"): {
        200: obj({**MACHINE["properties"], "monitors": {"type": "array", "items": MONITOR_SUMMARY}})
    },
    ("POST", "/api/v1/machines/{machine_id}/monitors"): {201: MONITOR},
    ("GET", "/api/v1/machines/{machine_id}/monitors"): {
        200: obj({"monitors": {"type": "array", "items": MONITOR_SUMMARY}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/machines/{machine_id}/monitors/{monitor_id}"): {200: MONITOR},
    ("DELETE", "/api/v1/machines/{machine_id}/monitors/{monitor_id}"): {202: None, 204: None},
    ("GET", "/api/v1/events"): {
        200: obj({"events": {"type": "array", "items": EVENT}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/metrics/summary"): {
        200: obj(
            {
                "summary": obj(
                    {
                        "time_range": STR,
                        "start_ns": INT,
                        "end_ns": INT,
                        "interval_ns": INT,
                        "current_interval_ns": INT,
                        "source": STR,
                        "metrics": ANY_OBJECT,
                    },
                    {
                        "machine_id": STR,
                        "monitor_id": STR,
                        "pid": INT,
                        "function": STR,
                        "device": INT,
                        "job_id": UUID,
                    },
                )
            }
        )
    },
    ("POST", "/api/v1/traces:generate"): {202: obj({"trace_job_id": UUID})},
    ("GET", "/api/v1/traces/jobs/{trace_job_id}"): {200: TRACE_JOB},
    ("GET", "/api/v1/traces/{trace_id}"): {200: {"type": "string", "format": "binary"}},
    ("GET", "/api/v1/users"): {200: obj({"users": {"type": "array", "items": USER}, **NEXT_PAGE})},
    ("POST", "/api/v1/users:invite"): {
        201: obj(
            {
                "email": STR,
                "role": ROLE,
                "expire_time": TIME,
                "invite_token": {**STR, "description": "auth:register's invite_token, valid once"},
            }
        )
    },
    ("GET", "/api/v1/users/{user_id}"): {200: USER},
    ("PATCH", "/api/v1/users/{user_id}"): {200: USER},
    ("GET", "/api/v1/auditLogs"): {
        200: obj({"audit_logs": {"type": "array", "items": AUDIT_ENTRY}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/openapi.json"): {200: ANY_OBJECT},
    ("GET", "/api/v1/machines/{machine_id}/devices"): {200: DEVICES},
    ("GET", "/api/v1/machines/{machine_id}/device-processes"): {200: DEVICE_PROCESSES},
    ("GET", "/api/v1/machines/{machine_id}/device-metrics"): {200: DEVICE_METRICS},
    ("GET", "/api/v1/device-metrics"): {200: DEVICE_METRICS},
    ("GET", "/api/v1/stats/cluster"): {200: STATS_CLUSTER},
    ("GET", "/api/v1/stats/machines/{machine_id}"): {200: STATS_MACHINE},
    ("GET", "/api/v1/stats/jobs"): {200: STATS_JOBS},
    ("GET", "/api/v1/stats/trends"): {200: STATS_TRENDS},
    ("GET", "/api/v1/jobs"): {
        200: obj({"jobs": {"type": "array", "items": JOB_SUMMARY}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/machines/{machine_id}/jobs"): {
        200: obj({"jobs": {"type": "array", "items": JOB_SUMMARY}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/jobs/{job_id}"): {200: JOB},
    ("GET", "/api/v1/jobs/{job_id}/parameters"): {200: JOB_ITEMS},
    ("GET", "/api/v1/jobs/{job_id}/code"): {200: JOB_ITEMS},
    ("GET", "/api/v1/jobs/{job_id}/status-history"): {200: JOB_HISTORY},
    ("GET", "/api/v1/jobs/{job_id}/ranks"): {200: JOB_RANKS},
    ("GET", "/api/v1/jobs/{job_id}/process-metrics"): {200: PROCESS_METRICS},
    ("POST", "/api/v1/jobs/{job_id}:stop"): {200: JOB_SUMMARY},
    ("POST", "/api/v1/jobs/{job_id}:trace"): {202: JOB_TRACE},
    ("GET", "/api/v1/jobs/{job_id}/traces"): {
        200: obj({"traces": {"type": "array", "items": JOB_TRACE_SUMMARY}, **NEXT_PAGE})
    },
    ("GET", "/api/v1/jobs/{job_id}/traces/{trace_id}"): {200: JOB_TRACE},
    ("POST", "/api/v1/jobs/{job_id}/traces/{trace_id}:stop"): {202: JOB_TRACE},
    ("POST", "/api/v1/jobs:batchStop"): {
        200: obj(
            {
                "success": {"type": "array", "items": UUID},
                "failed": {
                    "type": "array",
                    "items": obj({"jobId": UUID, "code": INT, "status": STR, "reason": STR}),
                },
            }
        )
    },
}


def fields_of(specs: dict[str, FieldSpec]) -> dict[str, str]:
    """{field name: type} of a filter's fields (json fields as "name.*")."""
    return {name: spec.type for name, spec in specs.items()}


# Custom string formats: {format: (grammar, {field: type})}.
FORMATS: dict[str, tuple[str, dict[str, str]]] = {
    "xputrace-filter-events": ("filter", fields_of(events.EVENT_FIELDS)),
    "xputrace-filter-machines": ("filter", fields_of(machines.fields(1.0))),
    "xputrace-filter-monitors": ("filter", fields_of(monitors.FIELDS)),
    "xputrace-filter-users": ("filter", fields_of(users.FIELDS)),
    "xputrace-filter-audit-logs": ("filter", fields_of(audit_logs.FIELDS)),
    "xputrace-order-by-events": ("order_by", dict.fromkeys(events.ORDERABLE, "")),
    "xputrace-order-by-machines": ("order_by", dict.fromkeys(machines.ORDERABLE, "")),
    "xputrace-order-by-monitors": ("order_by", dict.fromkeys(monitors.ORDERABLE, "")),
    "xputrace-filter-jobs": ("filter", fields_of(jobs.FIELDS)),
    "xputrace-order-by-jobs": ("order_by", dict.fromkeys(jobs.ORDERABLE, "")),
    "xputrace-filter-job-traces": ("filter", fields_of(job_traces.FIELDS)),
    "xputrace-order-by-job-traces": ("order_by", dict.fromkeys(job_traces.ORDERABLE, "")),
    "xputrace-fields-events": (
        "fields",
        dict.fromkeys(
            [
                "timestamp",
                "machine_id",
                "monitor_id",
                "pid",
                "tid",
                "cpu",
                "comm",
                "event_type",
                "duration_ns",
                "ret",
                "flags",
                "incomplete",
                "event_data.*",
                "python_stack",
            ],
            "",
        ),
    ),
    "xputrace-page-token": ("page_token", {}),
    "xputrace-metrics-filter": (
        "metrics_filter",
        {
            "machine_id": "str",
            "monitor_id": "str",
            "pid": "int",
            "function": "str",
            "device": "int",
            "job_id": "uuid",
            "time_range": "duration",
            "timestamp": "timestamp",
        },
    ),
    "xputrace-metrics": (
        "metrics",
        dict.fromkeys([*METRICS, *SUMMARY_DEVICE_METRICS, CPU_METRIC], ""),
    ),
    "xputrace-start-time": ("rfc3339", {}),
    "xputrace-end-time": ("rfc3339_end", {}),
}
