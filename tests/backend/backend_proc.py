"""python -m backend as a child process, and a client that sends it event batches over its
real ingest (CURVE DEALER, as an agent does): for tests of what the process does at start,
on its clock and at SIGINT or SIGTERM. Every wait is for a line the backend logs, an
acknowledgement or the process's exit, with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO

import numpy as np
import psycopg
import zmq

from backend.app import server_keys
from backend.settings import Settings
from xpucore import abi

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
ACL_IDS = {name: fid for fid, name in abi.function_names("ACL").items()}


def settings_env(settings: Settings) -> dict[str, str]:
    """The XPUTRACE_* variables that give python -m backend these settings."""
    return {
        **os.environ,
        **{f"XPUTRACE_{k.upper()}": str(v) for k, v in asdict(settings).items() if v is not None},
    }


class BackendProcess:
    """python -m backend, its stderr (the log) kept line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[bytes] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def text(self) -> str:
        with self._changed:
            return b"".join(self.log).decode(errors="replace")

    def start(self, wait_running: bool = True) -> None:
        self.log = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()
        if wait_running:
            self.wait_log("Running on")
            assert self.proc.poll() is None, self.text

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            with self._changed:
                self.log.append(line)
                self._changed.notify_all()
        with self._changed:
            self.log.append(b"")  # end of output: wake the waiters
            self._changed.notify_all()

    def wait_log(self, needle: str, timeout_s: float = DEADLINE_S) -> None:
        """Until the log has a line with needle in it (fails when the process exits first)."""
        assert self.proc is not None
        want = needle.encode()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: any(want in line for line in self.log) or (self.log[-1:] == [b""]),
                timeout_s,
            )
            assert ok and any(want in line for line in self.log), (
                f"no {needle!r} in the backend's log:\n{self.text}"
            )

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = DEADLINE_S) -> int:
        """The exit status (the log read to its end)."""
        assert self.proc is not None and self._reader is not None
        rc = self.proc.wait(timeout_s)
        self._reader.join(timeout_s)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return rc

    def kill(self) -> None:
        self.send(signal.SIGKILL)
        self.wait()

    def stop(self) -> None:
        """Terminates it if still running, killed after a deadline (for finally blocks)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait()


class IngestClient:
    """Sends batches to a backend's ingest as an enrolled agent and waits for the acks."""

    def __init__(self, settings: Settings, name: str = "test-agent") -> None:
        public, _ = server_keys(settings)
        client_public, client_secret = zmq.curve_keypair()
        settings.enrolled_dir.mkdir(parents=True, exist_ok=True)
        (settings.enrolled_dir / f"{name}.key").write_text(
            f'metadata\ncurve\n    public-key = "{client_public.decode()}"\n'
        )
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.curve_serverkey = public
        self.sock.curve_publickey, self.sock.curve_secretkey = client_public, client_secret
        self.sock.linger = 0
        self.sock.connect(settings.ingest_endpoint)
        self.seq = 0
        self.dsn, self.key = settings.database_dsn, client_public.decode()
        self.admitted: set[tuple[str, str]] = set()

    def admit(self, monitor_id: str, machine_id: str) -> None:
        """Makes the ingest believe this key for machine_id's RUNNING monitor monitor_id, as
        the machine's hello and the monitor's start would (backend.admission)."""
        if (monitor_id, machine_id) in self.admitted:
            return
        assert self.dsn is not None
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO machines (id, public_key) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (machine_id, self.key),
            )
            conn.execute(
                "INSERT INTO monitors (id, machine_id, monitor_type, status) "
                "VALUES (%s, %s, 'ACL', 'RUNNING')",
                (monitor_id, machine_id),
            )
        self.admitted.add((monitor_id, machine_id))

    def send(self, raw: bytes, timeout_s: float = DEADLINE_S) -> None:
        """Sends one batch; returns once the ingest acknowledged it (stored)."""
        self.sock.send(raw)
        if not self.sock.poll(int(timeout_s * 1000)):
            raise AssertionError("the ingest did not acknowledge the batch in time")
        abi.decode_ack(self.sock.recv())

    def acl_burst(self, n: int, monitor_id: str, machine_id: str = "npu-host") -> list[int]:
        """n ACL calls stamped now (0.1 ms apart), sent as one batch as the agent sends them
        (monotonic times and its offset to the wall clock); their wall-clock times."""
        self.admit(monitor_id, machine_id)
        ev = abi.empty_events(n, "ACL")
        names = ["aclrtMemcpy", "aclrtMalloc", "aclrtFree", "aclrtSynchronizeStream"]
        ev["func"] = [ACL_IDS[names[i % len(names)]] for i in range(n)]
        ev["bytes"] = 4096
        ev["duration_ns"] = 1000 + np.arange(n)
        ev["pid"] = ev["tid"] = 4100
        mono = time.monotonic_ns()
        m2r = time.time_ns() - mono
        ev["ts_ns"] = mono + np.arange(n) * 100_000
        raw = abi.encode_batch(
            ev,
            monitor_id=monitor_id,
            machine_id=machine_id,
            seq=self.seq,
            mono_to_real_ns=m2r,
            monitor_type="ACL",
            agent_pid=os.getpid(),
        )
        self.seq += 1
        self.send(raw)
        return [int(t) + m2r for t in ev["ts_ns"]]

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()
