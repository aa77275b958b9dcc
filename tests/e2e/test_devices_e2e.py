"""Devices end to end (issue #15 acceptance), as root: a real manager samples the NVML
stand-in (4 GPUs) and the DCMI stand-in (8 NPUs) every second at generation 1, then 2, the
NVML stand-in naming a real CUDA job's pid as GPU 0's process. The API (/devices,
/device-processes, /device-metrics and its CSV), the metrics summary and a trace of the job's
calls show exactly the stand-ins' values at the times they were sampled: the trace's device
counters hold every sample of its span, and the aggregates are those of those samples. The
backend keeps the samples in PostgreSQL, then in a real influxd; there the devices dashboard's
panels (tests.backend.grafana_queries) show the same samples, reduced per bucket as each
panel says, and the job joined to GPU 0's process."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.handlers.devices import CSV_COLUMNS
from backend.typedefs import INFLUX
from tests.agent.procs import JsonLineProc
from tests.backend import grafana_queries as gq
from tests.backend import test_grafana_devices as dash
from tests.backend.csv_reading import as_items, csv_body
from tests.backend.influx_fixtures import InfluxServer
from tests.e2e.test_traces_e2e import generate
from tests.manager import device_standins as standins
from tests.platform import Platform, eventually, open_platform
from tests.trace_tools import trace_processor as tp
from tests.trace_tools.validate import validate_perfetto

pytestmark = [
    pytest.mark.bpf,
    pytest.mark.skipif(os.geteuid() != 0, reason="the manager's job detection needs root"),
]

ROOT = Path(__file__).resolve().parents[2]
CUDA_CTYPES = ROOT / "tests" / "workloads" / "cuda_ctypes.py"
MIB = standins.MIB
#: trace counter name suffix -> the sample value it draws
COUNTERS = {"utilisation %": "utilization_pct", "memory used": "memory_used_bytes",
            "power W": "power_w"}  # fmt: skip
#: the devices dashboard's panels checked against the stand-ins, and their bucket sizes (s)
DEVICE_PANELS = ("GPU utilisation %", "GPU framebuffer used / total", "GPU power",
                 "NPU AI Core utilisation %", "NPU HBM used / total")  # fmt: skip
JOBS_PANEL = "Jobs holding memory on devices"
BUCKETS_S = (1, 10)
#: slack for a loaded machine between writing a state file and the sample that reads it
SLACK_MS = 1500

Samples = dict[tuple[str, int], list[tuple[int, int]]]  # device -> [(ms, generation)]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def ms_of(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def device_of(kind: str, i: int, g: int, pid0: int | None = None) -> dict[str, Any]:
    return standins.gpu(i, g, pid0) if kind == "gpu" else standins.npu(i, g)


async def devices_become(p: Platform, want: list[dict[str, Any]]) -> dict[str, Any]:
    """/devices once it shows exactly want (every value, inventory and health)."""

    async def check() -> Any:
        body = await p.get(f"/api/v1/machines/{p.machine_id}/devices")
        got = [{k: v for k, v in d.items() if k != "sampled_at"} for d in body["devices"]]
        shown = [{k: w[k] for k in got[0]} for w in want] if got else None
        return body if got == shown else None

    return await eventually(check, "the stand-ins' values in /devices", 20.0)  # type: ignore[no-any-return]


async def sampled_after(p: Platform, ms: int) -> None:
    """Until /devices holds a sample taken after ms."""

    async def check() -> Any:
        body = await p.get(f"/api/v1/machines/{p.machine_id}/devices")
        return all(ms_of(d["sampled_at"]) > ms for d in body["devices"])

    await eventually(check, f"a sample after {ms}", 20.0)


def trace_samples(data: bytes, host: str) -> Samples:
    """Each device's samples in the trace's counters: (ms, the generation its values are
    of), every value checked against the stand-ins' at that generation."""
    s = validate_perfetto(data)
    series: dict[tuple[str, int], dict[str, list[tuple[int, float]]]] = {}
    for uuid, points in s.counters.items():
        track = s.tracks[uuid]
        if not track.name.startswith(f"{host} ") or track.parent is None:
            continue
        assert s.tracks[track.parent].name == f"{host} devices"
        _, dev, suffix = track.name.split(" ", 2)
        kind, index = dev[:3], int(dev[3:])
        series.setdefault((kind, index), {})[COUNTERS[suffix]] = points
    assert sorted(series) == [("gpu", i) for i in range(4)] + [("npu", i) for i in range(8)]
    out: Samples = {}
    for (kind, i), by_value in series.items():
        assert sorted(by_value) == sorted(COUNTERS.values())
        memory = by_value["memory_used_bytes"]
        times = [t for t, _ in memory]
        assert all([t for t, _ in pts] == times for pts in by_value.values())
        assert all(t % 1_000_000 == 0 for t in times)  # sampled_at is in ms
        gens = [int(v) // MIB - 1024 * (i + 1) for _, v in memory]
        for v, pts in by_value.items():
            want = [device_of(kind, i, g)[v] for g in gens]
            assert [x for _, x in pts] == want, (kind, i, v)
        out[(kind, i)] = [(t // 1_000_000, g) for t, g in zip(times, gens, strict=True)]
    return out


def expected_minutes(samples: Samples, start: int, end: int) -> list[dict[str, Any]]:
    """The 1m rows of /device-metrics over [start, end) from these samples."""
    rows = []
    for (kind, i), taken in sorted(samples.items()):
        minutes: dict[int, list[int]] = {}
        for t, g in taken:
            if start <= t < end:
                minutes.setdefault(t // 60_000 * 60_000, []).append(g)
        for minute, gens in sorted(minutes.items()):
            devs = [device_of(kind, i, g) for g in gens]
            rows.append({
                "kind": kind, "index": i, "time": iso(minute),
                "utilization_pct": sum(d["utilization_pct"] for d in devs) / len(devs),
                "power_w": sum(d["power_w"] for d in devs) / len(devs),
                "memory_used_bytes": max(d["memory_used_bytes"] for d in devs),
            })  # fmt: skip
    return rows


def dashboard_records(samples: Samples, machine: str, pid: int, job: str) -> list[dash.Record]:
    """The samples as the dashboard test's records: each device's values and its processes,
    the job named on GPU 0's process from generation 2 (the stand-in's pid0)."""
    out = []
    for (kind, i), taken in samples.items():
        for t, g in taken:
            d = device_of(kind, i, g, pid if g == 2 else None)
            tags = {"machine": machine, "kind": kind, "device": str(i)}
            out.append(dash.Record(kind, t, {**tags, "uuid": d["uuid"] or ""}, d))
            for proc in d["processes"]:
                joined = job if (kind, i, g, proc["pid"]) == ("gpu", 0, 2, pid) else ""
                ptags = {**tags, "job": joined, "pid": str(proc["pid"])}
                out.append(dash.Record("process", t, ptags, proc))
    return out


def panel(title: str) -> tuple[dash.Panel, str]:
    """A devices dashboard panel's reference (tests.backend.test_grafana_devices) and query."""
    (p,) = [p for p in gq.panels(gq.dashboards()[dash.DEVICES]) if p["title"] == title]
    (target,) = p["targets"]
    return dash.PANELS[title], target["query"]


def within(ld: dash.Loaded, end_ms: int) -> dash.Loaded:
    """ld over [its start, end_ms], with the records of that range."""
    taken = [r for r in ld.records if ld.start_ms <= r.t_ms <= end_ms]
    return dash.Loaded(ld.server, ld.db, taken, ld.start_ms, end_ms)


def grafana_shows(ld: dash.Loaded, machine: str, t_joined: int, pid: int, job: str) -> None:
    """The dashboard's panels over ld's range give exactly its records, per bucket; the
    jobs table the job on GPU 0's process (256 MiB) at its last sample joined, t_joined
    when the range ends there."""
    ld = within(ld, ld.end_ms)
    for title in DEVICE_PANELS:
        ref, query = panel(title)
        for k in BUCKETS_S:
            got = gq.rows(ld.query(query, k, dash.EVERYTHING))
            want = dash.expected(ld, ref, k, dash.EVERYTHING)
            assert want and got == pytest.approx(want, rel=1e-12, abs=0), (title, k)
    ref, query = panel(JOBS_PANEL)
    held = gq.rows(ld.query(query, 1, dash.EVERYTHING))
    ((t, *tags, col),) = held  # one row: the job on GPU 0, at its last sample joined
    assert (tags, col, held[(t, *tags, col)]) == (["0", job, "gpu", machine, str(pid)],
                                                    "memory_used", 256.0)  # fmt: skip
    assert t_joined // 1000 <= t <= ld.end_ms // 1000
    upto = within(ld, t_joined)
    want = dash.expected(upto, ref, 1, dash.EVERYTHING)
    assert want == {(t_joined // 1000, "0", job, "gpu", machine, str(pid), col): 256.0}
    assert gq.rows(upto.query(query, 1, dash.EVERYTHING)) == want


@pytest.mark.parametrize("store", ["postgresql", "influxdb"])
async def test_devices_end_to_end(
    request: pytest.FixtureRequest,
    store: str,
    aiohttp_client: Any,
    migrated_dsn: str,
    tmp_path: Path,
    build_dir: Path,
    cudart12: Path,
    trace_processor: Path,
) -> None:
    nvml_dir, dcmi = standins.libraries(build_dir)
    nvml_state, dcmi_state = tmp_path / "nvml.state", tmp_path / "dcmi.state"
    nvml_state.write_text("1\n")
    dcmi_state.write_text("1\n")
    influx: tuple[InfluxServer, str] | None = None
    if store == "influxdb":
        influx = request.getfixturevalue("influx_server"), request.getfixturevalue("influx_db")
    backend = {} if influx is None else {"influx_url": influx[0].url,
                                         "influx_database": influx[1]}  # fmt: skip
    async with open_platform(
        aiohttp_client,
        migrated_dsn,
        tmp_path,
        build_dir / "xputrace-agent",
        manager_args=("--device-interval", "1", "--dcmi-library", str(dcmi)),
        manager_env=standins.probe_env(nvml_dir, nvml_state, dcmi_state),
        **backend,
    ) as p:
        m = p.machine_id
        first = await devices_become(p, standins.expected(1))
        assert first["errors"] == []
        await sampled_after(p, ms_of(first["devices"][0]["sampled_at"]) + 1500)  # 3 at gen 1
        work = JsonLineProc([sys.executable, str(CUDA_CTYPES), str(cudart12), "3"])
        try:
            pid = work.read_json("ready")["pid"]

            async def listed() -> Any:
                jobs = (await p.get("/api/v1/jobs", filter=f"pid = {pid}"))["jobs"]
                return jobs[0] if jobs else None

            jid = (await eventually(listed, f"job {pid} listed", 20.0))["jobId"]
            changed = time.time_ns() // 1_000_000
            nvml_state.write_text(f"2 {pid}\n")
            dcmi_state.write_text("2\n")
            second = await devices_become(p, standins.expected(2, pid))
            assert all(changed <= ms_of(d["sampled_at"]) <= changed + 1000 + SLACK_MS
                       for d in second["devices"])  # fmt: skip

            async def joined() -> Any:
                body = await p.get(f"/api/v1/machines/{m}/device-processes", kind="gpu",
                                   device="0")  # fmt: skip
                rows = [r for r in body["processes"] if r["pid"] == pid]
                return rows[0] if rows and rows[0]["job_id"] else None

            proc = await eventually(joined, "the job's process on GPU 0", 20.0)
            assert (proc["job_id"], proc["memory_bytes"]) == (jid, 256 * MIB)
            body = {"monitor_type": "CUDA", "target": {"pid": pid}}
            r = await p.client.post(f"/api/v1/machines/{m}/monitors", headers=p.auth, json=body)
            assert r.status == 201, await r.text()
            mon = (await r.json())["id"]

            async def running() -> Any:
                got = await p.monitor(mon)
                assert got["status"] != "FAILED_TO_START", got
                return got["status"] == "RUNNING"

            await eventually(running, "monitor RUNNING")
            work.send_line("go")
            work.read_json("done")
            r = await p.client.delete(f"/api/v1/machines/{m}/monitors/{mon}", headers=p.auth)
            assert r.status == 204
            work.send_line("exit")
        finally:
            work.kill()

        async def stored() -> Any:
            return await p.all_events(f"monitor_id = '{mon}'")

        await eventually(stored, "the monitor's events stored")
        await sampled_after(p, time.time_ns() // 1_000_000)  # samples after the calls too
        if influx is not None:
            await p.client.app[INFLUX].flushed()  # every sample /devices shows is in influxd
        _, data = await generate(p, f"monitor_id = '{mon}'", "perfetto")
        host = (await p.machine())["hostname"]
        samples = trace_samples(data, host)

        # the samples: generation 1, then 2 from the first sample after the change
        for dev, taken in samples.items():
            gens = [g for _, g in taken]
            assert gens == sorted(gens) and set(gens) == {1, 2}, dev
            switch = next(t for t, g in taken if g == 2)
            assert changed <= switch <= changed + 1000 + SLACK_MS, dev
            assert ms_of(first["devices"][0]["sampled_at"]) in [t for t, _ in taken]
            assert all(b - a >= 500 for (a, _), (b, _) in itertools.pairwise(taken)), dev
        sampled = {t for t, _ in samples[("gpu", 0)]}
        assert ms_of(second["devices"][0]["sampled_at"]) in sampled
        trace = tmp_path / "devices.pftrace"
        trace.write_bytes(data)
        (rows,) = tp.query(
            trace,
            f"select count(*) from counter c join counter_track t on c.track_id = t.id"
            f" where t.name like '{host} %'",
            folder=trace_processor,
        )
        assert rows[0][0] == 3 * sum(len(v) for v in samples.values())
        assert len(samples[("gpu", 0)]) >= 5

        # /device-metrics (1m) over the samples the trace holds: their means and maxima
        start, end = min(sampled), max(sampled) + 1
        want = expected_minutes(samples, start, end)
        for path, extra in ((f"/api/v1/machines/{m}/device-metrics", {}),
                            ("/api/v1/device-metrics", {"machine_id": m})):  # fmt: skip
            params = {"startTime": iso(start), "endTime": iso(end), "interval": "1m", **extra}
            body = await p.get(path, **params)
            assert body["source"] == store
            got = body["metrics"]
            assert [{k: r[k] for k in ("kind", "index", "time")} for r in got] == [
                {k: w[k] for k in ("kind", "index", "time")} for w in want
            ]
            for r, w in zip(got, want, strict=True):
                for v in ("utilization_pct", "power_w", "memory_used_bytes"):
                    assert r[v] == pytest.approx(w[v], rel=1e-12, abs=0), (r, v)
            _, header, records = await csv_body(p.client, path, p.auth, **params)
            assert header == list(CSV_COLUMNS)
            assert as_items(header, records, got) == got

        # the metrics summary over the same samples
        window = f"timestamp >= '{iso(start)}' AND timestamp < '{iso(end)}'"
        body = await p.get("/api/v1/metrics/summary", filter=f"machine_id = '{m}' AND {window}",
                           metrics="gpu_utilization,npu_memory_usage")  # fmt: skip
        got_m = body["summary"]["metrics"]
        last = standins.expected(2)
        assert got_m["gpu_utilization"]["current"] == pytest.approx(
            sum(d["utilization_pct"] for d in last[:4]) / 4, rel=1e-12
        )
        assert got_m["npu_memory_usage"]["current"] == sum(d["memory_used_bytes"] for d in last[4:])

        def mean(kind: str, i: int, v: str, at: Callable[[int], bool]) -> float:
            vals = [device_of(kind, i, g)[v] for t, g in samples[(kind, i)] if at(t)]
            return sum(vals) / len(vals)

        def inside(t: int) -> bool:
            return start <= t < end

        avg = next(k for k in got_m["gpu_utilization"] if k.startswith("avg_"))
        assert got_m["gpu_utilization"][avg] == pytest.approx(
            sum(mean("gpu", i, "utilization_pct", inside) for i in range(4)) / 4, rel=1e-12
        )
        assert got_m["npu_memory_usage"][avg] == pytest.approx(
            sum(mean("npu", i, "memory_used_bytes", inside) for i in range(8)), rel=1e-12
        )

        # the devices dashboard over the same samples, the job joined to GPU 0's process
        if influx is not None:
            t_joined = ms_of(proc["sampled_at"])
            assert (t_joined, 2) in samples[("gpu", 0)]
            loaded = dash.Loaded(*influx, dashboard_records(samples, m, pid, jid), start, end - 1)
            grafana_shows(loaded, m, t_joined, pid, jid)
