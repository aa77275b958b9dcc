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
