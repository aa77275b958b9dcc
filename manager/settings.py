"""Manager settings: one frozen dataclass, built once from flags and XPUTRACE_MANAGER_* variables.

Each flag ``--some-flag`` can also be given as ``XPUTRACE_MANAGER_SOME_FLAG``; a flag wins.
No other module reads os.environ; everything that needs a setting gets this passed in.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from manager import keys

__all__ = ["DEFAULT_AGENT_PATH", "Settings", "endpoint_host"]

DEFAULT_AGENT_PATH = Path(__file__).resolve().parents[1] / "build" / "xputrace-agent"
ENV_PREFIX = "XPUTRACE_MANAGER_"


def endpoint_host(endpoint: str) -> str | None:
    """The host of a tcp:// endpoint (brackets stripped from IPv6), None for ipc://."""
    if not endpoint.startswith("tcp://"):
        return None
    return urlsplit(endpoint).hostname


@dataclass(frozen=True)
class Settings:
    # Control channel: the backend's ROUTER, its public key, and this manager's key pair
    backend: str
    server_public_key: bytes
    public_key: bytes
    secret_key: bytes = field(repr=False)
    # Agents: the binary, and where their data may go
    agent_path: Path = DEFAULT_AGENT_PATH
    data_server_public_key: bytes | None = None  # the ingest socket's key; None: server's
    data_curve: bool = True  # agents send with CURVE (this manager's key pair)
    data_hosts: tuple[str, ...] = ()  # allowed tcp:// hosts for data; (): the backend's host
    allow_ipc_data: bool = False  # ipc:// data endpoints (always allowed if backend is ipc://)
    capture_dir: Path | None = None  # if set, a START without endpoint writes a capture here
    # AI jobs (manager.jobs): discovered by xputrace-procwatch, reported to the backend
    procwatch_path: Path | None = None  # None: xputrace-procwatch next to agent_path
    jobs: bool = True  # on when the procwatch binary exists (a log line says when not)
    jobs_root_pid: int | None = None  # only this process and its descendants are jobs
    job_metrics_interval_s: float = 10.0  # each running job sampled this often; 0: never
    # Accelerators (manager.devices): DEVICE_METRICS every device_interval_s (0: off)
    device_interval_s: float = 10.0
    device_timeout_s: float = 5.0  # a sample taking longer: the probe is killed, restarted
    dcmi_library: Path | None = None  # None: the Ascend driver's usual paths
    # Private state: agent records (for reaping after a restart), agent key files, the lock
    runtime_dir: Path = Path("/run/xputrace-manager")
    # Timing and limits
    heartbeat_interval_s: float = 5.0
    agent_ready_timeout_s: float = 15.0
    agent_stop_timeout_s: float = 20.0  # above the agent's 10 s linger for queued batches
    agent_kill_timeout_s: float = 5.0
    reply_timeout_s: float = 10.0
    auth_retry_s: float = 10.0  # dial again this long after the backend refused a handshake
    max_monitors: int = 64
    # Agents get SIGTERM when the manager dies (util-linux setpriv --pdeathsig)
    pdeathsig: bool = True
    setpriv_path: Path = Path("/usr/bin/setpriv")
    # Identity
    app_id: str = "xputrace"
    machine_id_file: Path | None = None  # None: /var/lib/dbus/machine-id, /etc/machine-id
    hostname: str | None = None  # None: the kernel's (a container's or a test's own name)
    log_level: str = "INFO"
    # A test aid, never for production: the wall clock this manager measures against the
    # backend's (manager.control) runs this far ahead, so a test can check that a skewed
    # clock is measured. Agents' timestamps are not skewed.
    test_clock_skew_ns: int = 0

    def __post_init__(self) -> None:
        if not self.backend.startswith(("tcp://", "ipc://")):
            raise ValueError(f"backend endpoint '{self.backend}' must be tcp:// or ipc://")
        if self.heartbeat_interval_s <= 0 or self.agent_ready_timeout_s <= 0:
            raise ValueError("intervals and timeouts must be positive")
        if self.device_interval_s < 0 or self.device_timeout_s <= 0:
            raise ValueError("the device interval must be >= 0 and its timeout positive")
        if self.jobs_root_pid is not None and self.jobs_root_pid <= 0:
            raise ValueError(f"jobs root pid {self.jobs_root_pid} must be positive")
        if self.hostname is not None and not self.hostname.strip():
            raise ValueError("hostname must not be empty")
        if not 0 <= self.job_metrics_interval_s <= 86_400:
            raise ValueError("job metrics interval must be in [0, 86400] seconds (0: off)")

    @property
    def procwatch(self) -> Path:
        return self.procwatch_path or self.agent_path.with_name("xputrace-procwatch")

    @property
    def data_key(self) -> bytes:
        return self.data_server_public_key or self.server_public_key

    def data_endpoint_allowed(self, endpoint: str) -> bool:
        """tcp:// to an allowed host (by default the backend's), ipc:// where allowed."""
        if endpoint.startswith("ipc://"):
            return self.allow_ipc_data or self.backend.startswith("ipc://")
        try:
            host = endpoint_host(endpoint)
            port = urlsplit(endpoint).port
        except ValueError:
            return False
        if not host or port is None:
            return False
        allowed = self.data_hosts or tuple(h for h in (endpoint_host(self.backend),) if h)
        return host in allowed

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="python -m manager",
            description="xputrace manager: dials the backend, runs agents on its commands. "
            f"Every flag can also be set as {ENV_PREFIX}<FLAG>.",
            epilog="python -m manager keys generate DIR: write a CURVE key pair",
        )
        a = p.add_argument
        a("--backend", help="the backend's control ROUTER, tcp://host:port or ipc://path")
        a("--server-key", type=Path, help="the backend's public key (certificate or Z85 line)")
        a(
            "--key",
            type=Path,
            default=Path("/etc/xputrace/manager.key_secret"),
            help="this manager's key pair (NAME.key_secret from `keys generate`)",
        )
        a(
            "--data-server-key",
            type=Path,
            help="the ingest socket's public key (default: --server-key)",
        )
        a("--no-data-curve", action="store_true", help="agents send data without CURVE")
        a("--agent-path", type=Path, default=DEFAULT_AGENT_PATH)
        a("--procwatch-path", type=Path, help="xputrace-procwatch (default: next to the agent)")
        a("--no-jobs", action="store_true", help="do not discover and report AI jobs")
        a(
            "--jobs-root-pid",
            type=int,
            help="report as AI jobs only this process and its descendants (a manager in a "
            "container, or for one launcher's process tree); monitors may still target any "
            "process",
        )
        a(
            "--job-metrics-interval",
            type=float,
            default=10.0,
            dest="job_metrics_interval_s",
            help="seconds between samples of each AI job's CPU, memory, I/O (0: off)",
        )
        a(
            "--data-host",
            action="append",
            default=None,
            dest="data_hosts",
            help="a host agents may send data to (repeat; default: the backend's host)",
        )
        a("--allow-ipc-data", action="store_true")
        a("--capture-dir", type=Path, help="a START without a data endpoint writes here")
        a("--runtime-dir", type=Path, default=Path("/run/xputrace-manager"))
        a("--heartbeat-interval", type=float, default=5.0, dest="heartbeat_interval_s")
        a("--agent-ready-timeout", type=float, default=15.0, dest="agent_ready_timeout_s")
        a("--agent-stop-timeout", type=float, default=20.0, dest="agent_stop_timeout_s")
        a("--max-monitors", type=int, default=64)
        a(
            "--device-interval",
            type=float,
            default=10.0,
            dest="device_interval_s",
            help="seconds between samples of the GPUs and NPUs (0: none)",
        )
        a("--device-timeout", type=float, default=5.0, dest="device_timeout_s")
        a("--dcmi-library", type=Path, help="libdcmi.so (default: the Ascend driver's paths)")
        a("--no-pdeathsig", action="store_true", help="do not wrap agents in setpriv --pdeathsig")
        a("--machine-id-file", type=Path)
        a(
            "--hostname",
            help="the name this machine is shown under (default: the kernel's hostname)",
        )
        a("--log-level", default="INFO")
        a("--test-clock-skew-ns", type=int, default=0, help=argparse.SUPPRESS)  # a test aid
        return p

    @classmethod
    def from_args(cls, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
        """Flags first, then XPUTRACE_MANAGER_* variables, then the defaults."""
        env = os.environ if env is None else env
        p = cls.parser()
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[0].lstrip("-")
            name = ENV_PREFIX + flag.upper().replace("-", "_")
            if name not in env:
                continue
            raw = env[name]
            if isinstance(action, argparse._StoreTrueAction):
                action.default = raw.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(action, argparse._AppendAction):
                action.default = [h for h in raw.split(",") if h]
            else:
                action.default = action.type(raw) if callable(action.type) else raw
        ns = p.parse_args(list(argv))
        if not ns.backend:
            p.error(f"--backend (or {ENV_PREFIX}BACKEND) is required")
        if not ns.server_key:
            p.error(f"--server-key (or {ENV_PREFIX}SERVER_KEY) is required")
        try:
            server = keys.load_public(ns.server_key)
            data_server = keys.load_public(ns.data_server_key) if ns.data_server_key else None
            public, secret = keys.load_secret(ns.key)
            return cls(
                backend=ns.backend,
                server_public_key=server,
                public_key=public,
                secret_key=secret,
                agent_path=ns.agent_path,
                procwatch_path=ns.procwatch_path,
                jobs=not ns.no_jobs,
                jobs_root_pid=ns.jobs_root_pid,
                job_metrics_interval_s=ns.job_metrics_interval_s,
                data_server_public_key=data_server,
                data_curve=not ns.no_data_curve,
                data_hosts=tuple(ns.data_hosts or ()),
                allow_ipc_data=ns.allow_ipc_data,
                capture_dir=ns.capture_dir,
                runtime_dir=ns.runtime_dir,
                heartbeat_interval_s=ns.heartbeat_interval_s,
                agent_ready_timeout_s=ns.agent_ready_timeout_s,
                agent_stop_timeout_s=ns.agent_stop_timeout_s,
                max_monitors=ns.max_monitors,
                device_interval_s=ns.device_interval_s,
                device_timeout_s=ns.device_timeout_s,
                dcmi_library=ns.dcmi_library,
                pdeathsig=not ns.no_pdeathsig,
                machine_id_file=ns.machine_id_file,
                hostname=ns.hostname,
                log_level=ns.log_level.upper(),
                test_clock_skew_ns=ns.test_clock_skew_ns,
            )
        except (OSError, ValueError) as e:
            p.error(str(e))
