"""Backend settings: one frozen dataclass, built once from flags and XPUTRACE_* variables.

No other module reads os.environ; everything that needs a setting gets this passed in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    # HTTP
    host: str = "127.0.0.1"
    port: int = 8080
    # PostgreSQL: a DSN for a real cluster; None runs the embedded server in data_dir
    database_dsn: str | None = field(default=None, repr=False)
    data_dir: Path = Path("var/backend")
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
    # Machines missing heartbeats for this long become INACTIVE
    heartbeat_timeout_s: float = 15.0
    # Trace jobs: how many run at once, and how many events rows are read per chunk
    trace_workers: int = 2
    trace_chunk_rows: int = 50_000
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
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if "int" in kind:
                values[name] = int(raw)
            elif "float" in kind:
                values[name] = float(raw)
            elif "Path" in kind:
                values[name] = Path(raw)
            else:
                values[name] = raw
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
