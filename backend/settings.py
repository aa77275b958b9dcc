"""Backend settings: one frozen dataclass, built once from flags and XPUTRACE_* variables.

No other module reads os.environ; everything that needs a setting gets this passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    # HTTP. With tls_cert_file and tls_key_file (PEM) the API is served over HTTPS only.
    # A host other than loopback without TLS is refused unless allow_insecure_http is set
    # (e.g. behind a TLS-terminating proxy on the same host): tokens and passwords travel
    # in every request.
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    allow_insecure_http: bool = False
    # PostgreSQL: a DSN for a real cluster; None runs the embedded server in data_dir
    database_dsn: str | None = field(default=None, repr=False)
    data_dir: Path = Path("var/backend")
    # REST handlers query on a pool of their own (backend.request_db): each statement is
    # canceled after request_statement_timeout_s (504 DEADLINE_EXCEEDED); one user holds at
    # most db_connections_per_user of its request_pool_size connections at once, and a
    # request beyond that waits db_slot_wait_s for one, then gets 429 with Retry-After. No
    # connection free within db_pool_wait_s (either pool): 503 UNAVAILABLE. Ingest, trace
    # jobs and migrations are never cut by the timeout.
    request_statement_timeout_s: float = 10.0
    request_pool_size: int = 10
    db_connections_per_user: int = 3
    db_slot_wait_s: float = 1.0
    db_pool_wait_s: float = 5.0
    # ZeroMQ: agents PUSH batches to ingest_endpoint; managers dial control_endpoint
    ingest_endpoint: str = "tcp://127.0.0.1:5556"
    # what agents are told to dial (differs from ingest_endpoint behind NAT or 0.0.0.0)
    ingest_public_endpoint: str = "tcp://127.0.0.1:5556"
    control_endpoint: str = "tcp://127.0.0.1:5557"
    # the backend's CURVE certificate (backend.key_secret) and the enrolled managers' (*.key)
    keys_dir: Path = Path("var/backend/keys")
    enrolled_dir: Path = Path("var/backend/enrolled")
    # Auth
    jwt_secret: str = field(default="", repr=False)
    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # False (seeds/003): a refresh token stays valid until it expires or its session logs
    # out, and auth:refreshToken answers only a new access token. True: every refresh swaps
    # the refresh token for a new one, and using a swapped one again (a replay, e.g. a stolen
    # copy) revokes the whole session.
    refresh_token_rotation: bool = False
    # Registration: the first account is the bootstrap admin; after it, only an admin's invite
    # (valid invite_ttl_s) registers, unless open_registration lets anyone in as a viewer.
    open_registration: bool = False
    invite_ttl_s: int = 7 * 24 * 3600
    # Argon2 hashes run in a pool of this many threads, off the event loop (64 MiB and 4
    # lanes each); more logins at once wait their turn
    password_hash_workers: int = 2
    # Rate limits (token buckets, in memory): login attempts per account and per client
    # address, each so many per window; REST requests per user: a sustained rate and a burst.
    # 0 turns a limit off.
    login_attempts_per_account: int = 10
    login_attempts_per_address: int = 50
    login_window_s: float = 300.0
    api_requests_per_s: float = 50.0
    api_burst: int = 200
    # Machines missing heartbeats for this long become INACTIVE, their agent_manager_status
    # UNKNOWN
    heartbeat_timeout_s: float = 15.0
    # Control commands: how long a request waits for the manager's reply (START answers once
    # the agent is ready; STOP once it exited). A reply after that is still applied when it
    # comes, for up to late_reply_s; the request then answers with what is known (a monitor
    # stays STARTING, a DELETE answers 202 and the monitor stays STOPPING).
    start_wait_s: float = 15.0
    stop_wait_s: float = 15.0
    status_wait_s: float = 10.0
    # Stopping a job (POST /jobs/{id}:stop): SIGTERM, then SIGKILL this long after
    job_stop_grace_s: float = 10.0
    late_reply_s: float = 600.0
    # A job trace, once its monitors stopped, waits up to this long for the events each agent
    # said it sent to be stored before it generates its trace anyway, saying which ranks fell
    # short and by how many (backend.job_traces)
    job_trace_events_wait_s: float = 30.0
    # Every connected machine's monitors are compared with its manager's GET_STATUS this often
    # (and at each HELLO, and when a heartbeat's active monitors disagree with them)
    reconcile_interval_s: float = 60.0
    # Trace jobs: how many run at once, and how many events rows are read per chunk
    trace_workers: int = 2
    trace_chunk_rows: int = 50_000
    # Per-user quotas; 0: none. A monitor and a trace job belong to the user who created them;
    # admins are held to the same quotas. Beyond one: 429 RESOURCE_EXHAUSTED naming it.
    # - monitors STARTING or RUNNING at once (checked at POST monitors);
    # - trace jobs queued or being built at once (checked at POST traces:generate);
    # - events stored by the user's monitors (checked at POST monitors: no new monitor while
    #   over it; monitors already running keep storing, retention brings the count down).
    max_running_monitors_per_user: int = 20
    max_trace_jobs_per_user: int = 10
    max_events_per_user: int = 200_000_000
    # Retention: events older than this many days are dropped, by whole day partitions
    # (backend.retention), every retention_interval_s; 0 keeps them. A monitor type may keep
    # its events for less or more: XPUTRACE_RETENTION_DAYS_<TYPE> (e.g. ..._SYSCALL=2), read
    # into retention_days_by_type.
    retention_days: int = 30
    retention_days_by_type: tuple[tuple[str, int], ...] = ()
    retention_interval_s: float = 3600.0
    # Accelerator samples kept in PostgreSQL's device_metrics (only when InfluxDB is not
    # configured: backend.device_events) are deleted at this age, by the same rounds; 0 keeps.
    device_retention_days: int = 7
    # The database volume: at database_full_percent used (0: never), POST monitors is refused
    # with 507. Measured on database_data_dir when the database's files are on this host (the
    # embedded server's: set by python -m backend), else as pg_database_size against
    # database_volume_bytes; with neither, not checked (the backend says so at start).
    database_full_percent: float = 90.0
    database_data_dir: Path | None = None
    database_volume_bytes: int = 0
    # Aggregates (backend.aggregates) into InfluxDB; no influx_url: none are computed, and
    # the metrics summary is served from PostgreSQL. influx_api: v1 (/write: database,
    # retention policy, user, password) or v2 (/api/v2/write: token, org, bucket).
    influx_url: str = ""
    influx_api: str = "v1"
    influx_database: str = "xputrace"
    influx_retention_policy: str = ""
    influx_username: str = ""
    influx_password: str = field(default="", repr=False)
    influx_token: str = field(default="", repr=False)
    influx_org: str = ""
    influx_bucket: str = "xputrace"
    influx_buffer_lines: int = 200_000  # held while InfluxDB is down; beyond: counted, dropped
    influx_shutdown_timeout_s: float = 10.0  # at shutdown, how long aggregates may take to send
    # An interval is written aggregate_lateness_s after its end by the wall clock (events that
    # come later: its points are written again, whole, with them merged in)
    aggregate_interval_s: float = 1.0
    aggregate_lateness_s: float = 2.0

    @property
    def page_token_secret(self) -> bytes:
        """The key page tokens are signed with: derived from jwt_secret for this use only
        (HMAC-SHA256 with a label), so a page token is never a valid signature of a JWT,
        nor the other way round."""
        return hmac.new(
            self.jwt_secret.encode(), b"xputrace page tokens v1", hashlib.sha256
        ).digest()

    def retention_days_of(self, monitor_type: str) -> int:
        """How many days a monitor type's events are kept (0: forever)."""
        return dict(self.retention_days_by_type).get(monitor_type, self.retention_days)

    @property
    def traces_dir(self) -> Path:
        """Where trace files are kept, each named by its trace id."""
        return self.data_dir / "traces"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from XPUTRACE_<FIELD> variables (upper case), then explicit overrides."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = env.get(f"XPUTRACE_{name.upper()}")
            if raw is None or name == "retention_days_by_type":
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if "bool" in kind:
                values[name] = _bool(name, raw)
            elif "int" in kind:
                values[name] = int(raw)
            elif "float" in kind:
                values[name] = float(raw)
            elif "Path" in kind:
                values[name] = Path(raw)
            else:
                values[name] = raw
        by_type = sorted(
            (key.removeprefix(_RETENTION_OF), int(raw))
            for key, raw in env.items()
            if key.startswith(_RETENTION_OF) and key != _RETENTION_OF + "BY_TYPE"
        )
        if by_type:
            values["retention_days_by_type"] = tuple(by_type)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


_RETENTION_OF = "XPUTRACE_RETENTION_DAYS_"


def _bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"XPUTRACE_{name.upper()}: {raw!r} is not a boolean (true or false)")
