"""python -m backend as a real process, with a real PostgreSQL and InfluxDB, fed through its
real ingest: aggregates reach InfluxDB on time (by the clock, with no event after them), a
SIGTERM or SIGINT writes every pending interval before the process exits 0 with no
traceback, a second signal during the shutdown changes nothing, the shutdown's wait for
InfluxDB is bounded, and the process refuses to start on a database it cannot create."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.settings import Settings
from tests.backend.backend_proc import BackendProcess, IngestClient, settings_env
from tests.backend.influx_fixtures import InfluxServer, running_server
from tests.pg_fixtures import backend_settings, free_tcp_endpoint

S = 10**9
INTERVAL_S, LATENESS_S = 1.0, 1.0
BURST = 55


def settings_for(
    dsn: str,
    tmp_path: Path,
    influx: InfluxServer,
    db: str,
    lateness_s: float = LATENESS_S,
    **kw: Any,
) -> Settings:
    port = int(free_tcp_endpoint().rsplit(":", 1)[1])
    return backend_settings(
        dsn,
        tmp_path,
        port=port,
        influx_url=influx.url,
        influx_database=db,
        aggregate_interval_s=INTERVAL_S,
        aggregate_lateness_s=lateness_s,
        **kw,
    )


def calls_of(influx: InfluxServer, db: str, monitor_id: str) -> int:
    """The calls InfluxDB holds for a monitor, summed over its intervals."""
    if db not in {r[0] for s in influx.query("SHOW DATABASES") for r in s.get("values", [])}:
        return 0
    series = influx.query(f"SELECT sum(calls) FROM xpu_calls WHERE monitor_id = '{monitor_id}'", db)
    return int(series[0]["values"][0][1]) if series else 0


def assert_clean_exit(backend: BackendProcess, timeout_s: float = 60.0) -> None:
    rc = backend.wait(timeout_s)
    assert rc == 0 and "Traceback" not in backend.text and "Error" not in backend.text, (
        f"exit status {rc}:\n{backend.text}"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_intervals_written_by_the_clock_and_the_rest_at_the_signal(
    sig: signal.Signals, migrated_dsn: str, influx_server: InfluxServer, tmp_path: Path
) -> None:
    """A burst with nothing after it is in InfluxDB within interval + lateness + 1 s of its
    interval's end; a burst right before the signal is written before the process exits 0.
    The database is one the backend has to create."""
    db = f"fresh_{uuid.uuid4().hex[:8]}"
    settings = settings_for(migrated_dsn, tmp_path, influx_server, db)
    backend, client = BackendProcess(settings_env(settings)), IngestClient(settings)
    idle, last = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        backend.start()
        stamps = client.acl_burst(BURST, idle)
        end_ns = (max(stamps) // S + 1) * S  # the end of the burst's last interval
        bound_ns = end_ns + int((INTERVAL_S + LATENESS_S + 1) * S)
        while calls_of(influx_server, db, idle) < BURST and time.time_ns() < bound_ns + 5 * S:
            time.sleep(0.05)  # InfluxDB is another process: poll it, with a deadline
        seen_ns = time.time_ns()
        assert calls_of(influx_server, db, idle) == BURST, backend.text
        assert seen_ns <= bound_ns, f"written {(seen_ns - end_ns) / S:.2f} s after its end"
        client.acl_burst(BURST, last)  # its interval still open: only the shutdown writes it
        backend.send(sig)
        assert_clean_exit(backend)
    finally:
        client.close()
        backend.stop()
    assert calls_of(influx_server, db, last) == BURST, backend.text
    assert calls_of(influx_server, db, idle) == BURST  # once: not written twice


def test_second_signal_during_shutdown_changes_nothing(
    migrated_dsn: str, own_influx: InfluxServer, tmp_path: Path
) -> None:
    """Ctrl-C reaches the whole process group and scripts/run-platform sends SIGTERM too: the
    second signal comes while the shutdown waits for InfluxDB (stopped here, started again
    after). The shutdown carries on: the last burst is written and the exit status is 0."""
    db = own_influx.new_database()
    # a long lateness: the burst is still pending when InfluxDB stops, for the shutdown
    settings = settings_for(migrated_dsn, tmp_path, own_influx, db, lateness_s=600)
    env = {**settings_env(settings), "XPUTRACE_INFLUX_SHUTDOWN_TIMEOUT_S": "60"}
    backend, client = BackendProcess(env), IngestClient(settings)
    monitor = str(uuid.uuid4())
    try:
        backend.start()
        client.acl_burst(BURST, monitor)
        own_influx.stop()
        backend.send(signal.SIGINT)
        backend.wait_log("influx: cannot write")  # the shutdown is waiting on InfluxDB
        backend.send(signal.SIGTERM)
        backend.wait_log("already shutting down")
        own_influx.start()
        assert_clean_exit(backend)
    finally:
        client.close()
        backend.stop()
    assert calls_of(own_influx, db, monitor) == BURST, backend.text


def test_shutdown_waits_for_influxdb_no_longer_than_its_timeout(
    migrated_dsn: str, own_influx: InfluxServer, tmp_path: Path
) -> None:
    db = own_influx.new_database()
    # a long lateness: the burst is still pending when InfluxDB stops, for the shutdown
    settings = settings_for(migrated_dsn, tmp_path, own_influx, db, lateness_s=600)
    env = {**settings_env(settings), "XPUTRACE_INFLUX_SHUTDOWN_TIMEOUT_S": "1"}
    backend, client = BackendProcess(env), IngestClient(settings)
    try:
        backend.start()
        client.acl_burst(BURST, str(uuid.uuid4()))
        own_influx.stop()
        backend.send(signal.SIGTERM)
        backend.wait_log("influx: cannot write")
        t0 = time.monotonic()
        rc = backend.wait(60)
        waited = time.monotonic() - t0
    finally:
        client.close()
        backend.stop()
    assert rc == 0 and "Traceback" not in backend.text, backend.text
    assert "aggregate lines not written at shutdown" in backend.text
    assert waited < 1.0 + 4.0, f"exited {waited:.1f} s after it could not write"


def test_refuses_to_start_on_a_database_it_cannot_create(migrated_dsn: str, tmp_path: Path) -> None:
    """InfluxDB with authentication, the backend's user no admin: the database it names
    cannot be created, and the backend says so and how to create it, and exits 1."""
    with running_server(auth=True) as influx:
        influx.query("CREATE USER writer WITH PASSWORD 'writer-pw'", method="POST")
        settings = settings_for(
            migrated_dsn,
            tmp_path,
            influx,
            "absent_db",
            influx_username="writer",
            influx_password="writer-pw",
        )
        backend = BackendProcess(settings_env(settings))
        try:
            backend.start(wait_running=False)
            rc = backend.wait(60)
        finally:
            backend.stop()
    log = backend.text
    assert rc == 1, log
    assert '"absent_db"' in log and "CREATE DATABASE" in log and "requires admin" in log, log
    assert "Traceback" not in log and "Running on" not in log, log
