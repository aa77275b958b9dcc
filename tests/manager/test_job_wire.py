"""The jobs' messages on the control channel (xpucore.job_wire, protocol.STOP_JOB): what is
refused names its field, what is too large is cut to fit, secret-looking variables never pass."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from xpucore import job_wire, protocol
from xpucore.job_wire import MAX_JOB_BYTES, WireError
from xpucore.protocol import CommandError, StopJob

MACHINE = "m1"


def job(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodeId": MACHINE,
        "pid": 10,
        "startTicks": 99,
        "startTime": 1,
        "status": "running",
        "jobName": "train.py",
        "commandLine": "python train.py",
        "coreDumped": False,
        "parameters": {"envVars": {"RANK": "0", "My_Api_Key": "k"}, "configFiles": []},
        "code": {"scriptContent": "import torch\n"},
        "unknownField": 1,
    }
    base.update(over)
    return base


def test_a_job_is_checked_and_secret_names_dropped() -> None:
    got = job_wire.check_job(job(), MACHINE)
    assert got["parameters"]["envVars"] == {"RANK": "0"}
    assert "unknownField" not in got and got["pid"] == 10


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"pid": 0}, "job.pid"),
        ({"pid": True}, "job.pid"),
        ({"startTicks": None}, "job.startTicks"),
        ({"nodeId": "m2"}, "job.nodeId"),
        ({"jobName": 5}, "job.jobName"),
        ({"status": "zombie"}, "job.status"),
        ({"runtimes": ["x"] * 33}, "job.runtimes"),
        ({"code": []}, "job.code"),
        ({"code": {"a": "\0"}}, "job.code.a"),
        ({"parameters": {"envVars": {"A": 1}}}, "job.parameters.envVars"),
        ({"exitCode": 256}, "job.exitCode"),
        ({"coreDumped": "no"}, "job.coreDumped"),
    ],
)
def test_a_bad_job_names_its_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(WireError, match=f"^{field.replace('.', '[.]')}: "):
        job_wire.check_job(job(**over), MACHINE)


def test_ends_and_snapshots_name_their_field() -> None:
    end = protocol.job_changed(MACHINE, 10, 99, "exited", 3, None, False, 5, "why", _now())
    assert job_wire.check_end(end).exit_code == 3
    for key, value in (("status", "running"), ("pid", -1), ("signal", 65), ("reason", 7)):
        with pytest.raises(WireError, match=f"^{key}: "):
            job_wire.check_end({**end, key: value})
    snap = protocol.job_snapshot(MACHINE, [(10, 99)], _now())
    assert job_wire.check_snapshot(snap) == [job_wire.JobKey(10, 99)]
    with pytest.raises(WireError, match=r"^jobs\[1\]\.start_ticks: "):
        job_wire.check_snapshot({"jobs": [{"pid": 1, "start_ticks": 2}, {"pid": 1}]})


def test_a_large_description_is_cut_to_fit() -> None:
    big = job(
        code={"scriptContent": "x" * (2 * MAX_JOB_BYTES), "shScriptContent": "y" * 1000},
        parameters={"configFiles": [{"configFilePath": "c.yaml", "configFileContent": "z" * 1000}]},
        commandLine="p " * 40_000,
    )
    cut = job_wire.fit_job(big)
    assert len(json.dumps(cut).encode()) <= MAX_JOB_BYTES
    assert cut["code"]["scriptTruncated"] is True and cut["code"]["shScriptContent"] == "y" * 1000
    assert len(cut["commandLine"]) == 32 << 10
    job_wire.check_job(cut, MACHINE)  # what is sent passes the backend's check
    small = job()
    assert job_wire.fit_job(small) == small


def test_stop_job_is_parsed_and_checked() -> None:
    frame = protocol.encode({**protocol.stop_job(10, 99, 2.5, ["alice"]), "request_id": "r"})
    assert protocol.parse_command(frame, ()) == StopJob("r", 10, 99, 2.5, ("alice",))
    for over, field in (
        ({"pid": 0}, "pid"),
        ({"start_ticks": "1"}, "start_ticks"),
        ({"grace_s": 301}, "grace_s"),
        ({"allowed_users": ["Bad Name"]}, "allowed_users[0]"),
        ({"signal": 9}, "signal"),
    ):
        msg = {**protocol.stop_job(10, 99, 1.0, None), "request_id": "r", **over}
        with pytest.raises(CommandError) as e:
            protocol.parse_command(protocol.encode(msg), ())
        assert e.value.message.startswith(f"{field}: "), e.value.message
        assert e.value.request_id == "r"


def _now() -> datetime:
    return datetime.now(UTC)


def metric(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "pid": 10,
        "start_ticks": 99,
        "time": 1_767_000_000_000,
        "state": "R",
        "cpu_percent": 97.5,
        "rss_bytes": 200 << 20,
        "threads": 4,
        "read_bytes": 4096,
        "write_bytes": 0,
        "io_source": "io",
        "open_files": 12,
        "accel_memory_bytes": None,
    }
    base.update(over)
    return base


def test_metrics_are_checked() -> None:
    msg = protocol.job_metrics(MACHINE, 10.0, [metric(), metric(pid=11, state="T")], _now())
    first, second = job_wire.check_metrics(protocol.decode(protocol.encode(msg)))
    assert (first.key, first.cpu_percent, first.rss_bytes, first.suspended) == (
        job_wire.JobKey(10, 99),
        97.5,
        200 << 20,
        False,
    )
    assert second.suspended and second.key.pid == 11
    traced = job_wire.check_metrics({**msg, "samples": [metric(state="t", cpu_percent=None)]})
    assert not traced[0].suspended and traced[0].cpu_percent is None  # a debugger's stop


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"pid": 0}, "samples[0].pid"),
        ({"start_ticks": None}, "samples[0].start_ticks"),
        ({"time": -1}, "samples[0].time"),
        ({"time": 1.5}, "samples[0].time"),
        ({"state": "Q"}, "samples[0].state"),
        ({"state": "RS"}, "samples[0].state"),
        ({"cpu_percent": -0.1}, "samples[0].cpu_percent"),
        ({"cpu_percent": float("nan")}, "samples[0].cpu_percent"),
        ({"cpu_percent": True}, "samples[0].cpu_percent"),
        ({"cpu_percent": "5"}, "samples[0].cpu_percent"),
        ({"rss_bytes": None}, "samples[0].rss_bytes"),
        ({"rss_bytes": 2**63}, "samples[0].rss_bytes"),
        ({"threads": -1}, "samples[0].threads"),
        ({"read_bytes": "1"}, "samples[0].read_bytes"),
        ({"write_bytes": -5}, "samples[0].write_bytes"),
        ({"io_source": "net"}, "samples[0].io_source"),
        ({"open_files": 2**31}, "samples[0].open_files"),
        ({"accel_memory_bytes": -1}, "samples[0].accel_memory_bytes"),
    ],
)
def test_a_bad_metric_sample_names_its_field(over: dict[str, Any], field: str) -> None:
    msg = protocol.job_metrics(MACHINE, 10.0, [metric(**over)], _now())
    with pytest.raises(WireError, match=f"^{re.escape(field)}: "):
        job_wire.check_metrics(msg)


def test_a_bad_metrics_message_names_its_field() -> None:
    msg = protocol.job_metrics(MACHINE, 10.0, [metric()], _now())
    for over, field in (
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": "10"}, "interval_s"),
        ({"samples": {}}, "samples"),
        ({"samples": [metric()] * (job_wire.MAX_METRIC_SAMPLES + 1)}, "samples"),
        ({"samples": [metric(), metric()]}, "samples"),  # one job twice
        ({"samples": [metric(), 5]}, "samples[1]"),
    ):
        with pytest.raises(WireError, match=f"^{re.escape(field)}: "):
            job_wire.check_metrics({**msg, **over})
