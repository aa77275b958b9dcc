"""The InfluxDB side of a fresh install and of refused writes, on a real influxd (1.6.7):
the backend creates its v1 database at start (and again when it disappears), says plainly
when it can neither create nor find it, and logs each cause of a refused write once, at
error level, with InfluxDB's own message, counting exactly the lines InfluxDB dropped."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backend.app import create_app
from backend.influx import InfluxConfig, InfluxSetupError, InfluxWriter
from tests.backend.influx_fixtures import InfluxServer, running_server
from tests.pg_fixtures import backend_settings


def databases(server: InfluxServer) -> set[str]:
    return {r[0] for s in server.query("SHOW DATABASES") for r in s.get("values", [])}


async def test_the_backend_creates_its_database_at_start(
    influx_server: InfluxServer, migrated_dsn: str, tmp_path: Path, aiohttp_client: Any
) -> None:
    db = f"fresh_{uuid.uuid4().hex[:8]}"
    settings = backend_settings(
        migrated_dsn, tmp_path, influx_url=influx_server.url, influx_database=db
    )
    assert db not in databases(influx_server)
    await aiohttp_client(create_app(settings))
    try:
        assert db in databases(influx_server)
    finally:
        influx_server.query(f'DROP DATABASE "{db}"', method="POST")


async def test_a_database_dropped_meanwhile_is_created_again(
    influx_server: InfluxServer, influx_db: str
) -> None:
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db), min_backoff_s=0.01)
    await writer.start()
    try:
        writer.submit(["m f=1i 1"])
        await writer.flushed()
        influx_server.query(f'DROP DATABASE "{influx_db}"', method="POST")
        writer.submit(["m f=2i 2", "m f=3i 3"])
        await asyncio.wait_for(writer.flushed(), 30)
    finally:
        await writer.close()
    assert influx_server.query("SELECT f FROM m", influx_db)[0]["values"] == [[2, 2], [3, 3]]
    assert writer.stats.rejected_lines == 0 and writer.stats.written_lines == 3


async def test_refusals_are_logged_once_per_cause_and_counted_exactly(
    influx_server: InfluxServer, influx_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db), batch_lines=3)
    await writer.start()
    caplog.set_level(logging.ERROR, logger="backend.influx")
    try:
        writer.submit(["m f=1i 1"])
        await writer.flushed()
        # three requests: two with lines of the wrong field type, one with a line unparsable
        writer.submit(
            [
                "m f=1.5 2",
                "m f=2i 3",
                "m f=2.5 4",
                "m f=3i 5",
                "m f=3.5 6",
                "m f=4i 7",
                "m f=5i 8",
                "m f= 9",
                "m f=6i 10",
            ]
        )
        await writer.flushed()
    finally:
        await writer.close()
    stored = [v[1] for v in influx_server.query("SELECT f FROM m", influx_db)[0]["values"]]
    assert stored == [1, 2, 3, 4, 5, 6]
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.name for r in refusals] == ["backend.influx"] * 2, caplog.text
    conflict, unparsable = (r.getMessage() for r in refusals)
    assert (
        'input field "f" on measurement "m" is type float, already exists as type integer'
        in conflict
        and '{"error"' not in conflict
    )  # InfluxDB's message, not its JSON
    assert "unable to parse 'm f= 9': missing field value" in unparsable
    assert writer.stats.rejected_lines == 4  # those InfluxDB dropped, not the whole requests
    reports = influx_server.query("SELECT rejected_lines FROM xputrace_writer", influx_db)
    assert reports[0]["values"][-1][1] == 4
    assert writer.stats.written_lines == 1 + 5 + len(reports[0]["values"])


async def test_a_database_it_may_not_create_is_a_setup_error() -> None:
    """A user without admin rights: a database granted to it is used; one that does not
    exist is an InfluxSetupError naming it and the command that creates it."""
    with running_server(auth=True) as influx:
        influx.query("CREATE USER writer WITH PASSWORD 'writer-pw'", method="POST")
        influx.query('CREATE DATABASE "granted"', method="POST")
        influx.query('GRANT WRITE ON "granted" TO writer', method="POST")
        for db, ok in (("granted", True), ("absent", False)):
            writer = InfluxWriter(
                InfluxConfig(influx.url, database=db, username="writer", password="writer-pw")
            )
            await writer.start()
            try:
                if ok:
                    assert await writer.ensure_database()
                else:
                    with pytest.raises(InfluxSetupError) as e:
                        await writer.ensure_database()
                    assert (
                        '"absent"' in str(e.value)
                        and "requires admin privilege" in str(e.value)
                        and 'q=CREATE DATABASE "absent"' in str(e.value)
                    )
            finally:
                await writer.close()


async def test_a_refused_report_line_is_not_reported_again_forever(
    influx_server: InfluxServer, influx_db: str
) -> None:
    """The writer's own report (xputrace_writer) refused in turn, here because its field
    already holds strings: counted once, not reported again and again."""
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db))
    await writer.start()
    try:
        now = time.time_ns()  # field types hold per shard: the report's, of now
        writer.submit([f'xputrace_writer,instance=x rejected_lines="text" {now}', "m f=1i 2"])
        await writer.flushed()
        writer.submit(["m f=1.5 3"])  # refused: a report follows, and is refused
        await asyncio.wait_for(writer.flushed(), 30)
    finally:
        await writer.close()
    assert writer.stats.rejected_lines == 2  # the line, then its report
