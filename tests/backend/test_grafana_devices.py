"""The devices dashboard (deploy/grafana/dashboards/xputrace-devices.json): every panel and
variable query, rendered as Grafana renders it, against a real InfluxDB (Debian's influxd
1.6.7) holding known device samples (4 GPUs on one machine, 2 NPUs on another, three sample
times) and job process samples written through the backend's own line builders and writer,
gives exactly the values sampled, at their times, reduced per bucket as the panel says."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from backend import device_samples, process_metrics
from backend.influx import InfluxConfig, InfluxWriter
from backend.routes import JOB
from backend.settings import Settings
from tests.backend import grafana_queries as gq
from tests.backend.influx_fixtures import InfluxServer
from xpucore.device_wire import check_device_metrics
from xpucore.job_wire import JobKey, MetricSample

DEVICES = "xputrace-devices.json"
MiB = 1 << 20
GPU_NODE, NPU_NODE = "gpu-node-a", "npu-node-b"
JOB1, JOB2 = "0b5c3f7e-1d2a-4c6b-9e8f-000000000001", "0b5c3f7e-1d2a-4c6b-9e8f-000000000002"
JOBS = {GPU_NODE: {4101: JOB1}, NPU_NODE: {5201: JOB2, 5202: JOB2}}
OFFSETS_MS = (1000, 3500, 12000)  # after a time on a 10 s boundary: buckets of 1, 5 and 10 s
HEALTH = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}  # xpu_health's values


def gpu(d: int, k: int) -> dict[str, Any]:
    """GPU d at sample k: values that change per device and sample; GPU 3 has no PCIe."""
    return {
        "kind": "gpu",
        "index": d,
        "uuid": f"GPU-0000000{d}-aaaa-bbbb-cccc-dddddddddddd",
        "name": "stand-in H100",
        "health": "warning" if (d, k) == (2, 2) else "ok",
        "utilization_pct": 10.0 * d + (5, 20, 50)[k],
        "memory_utilization_pct": d + (1.0, 2.0, 6.0)[k],
        "memory_used_bytes": (1024 * (d + 1) + 512 * k) * MiB,
        "memory_total_bytes": 81920 * MiB,
        "power_w": 60.5 + d + (0, 30, 12.25)[k],
        "temperature_c": 40.0 + d + (0, 3, 7)[k],
        "sm_clock_mhz": 1410 - 15 * k + d,
        "pcie_tx_bytes_per_s": None if d == 3 else (1000 * (d + 1) + 256 * k) * 1024,
        "pcie_rx_bytes_per_s": None if d == 3 else (2000 * (d + 1) + 128 * k) * 1024,
        "xid_errors": k if d == 1 else 0,
        "retired_pages": k if d == 2 else 0,
        "processes": [
            {"pid": 4101, "memory_bytes": (2048 + 100 * k) * MiB},
            {"pid": 4102, "memory_bytes": 512 * MiB},  # no job's
        ]
        if d == 0
        else [{"pid": 4101, "memory_bytes": 256 * MiB}]
        if (d, k) == (1, 0)
        else [],
    }


def npu(d: int, k: int) -> dict[str, Any]:
    """NPU d at sample k; NPU 1 is critical at sample 0 (recovered in the same 5 s bucket)."""
    return {
        "kind": "npu",
        "index": d,
        "name": "stand-in Ascend 910B",
        "health": "critical" if (d, k) == (1, 0) else "ok",
        "utilization_pct": 30.0 + 20 * d + (0, 10, 25)[k],
        "power_w": 70.5 + 2 * d + (0, 14.5, 3)[k],
        "temperature_c": 50.0 + d + (0, 2, 5)[k],
        "memory_used_bytes": (512 + 64 * k) * MiB,
        "memory_total_bytes": 16384 * MiB,
        "hbm_used_bytes": (4096 * (d + 1) + 1024 * k) * MiB,
        "hbm_total_bytes": 65536 * MiB,
        "processes": [{"pid": 5201, "memory_bytes": (1000 + k) * MiB}]
        if d == 0
        else [{"pid": 5202, "memory_bytes": 300 * MiB}]
        if k == 2
        else [],
    }


def job_sample(pid: int, k: int, t_ms: int) -> MetricSample:
    return MetricSample(
        key=JobKey(pid, 1000),
        time_ms=t_ms,
        state="R",
        cpu_percent=None if k == 0 else (150.0, 75.5, 99.75, 100.25)[(k - 1) + 2 * (pid > 5000)],
        rss_bytes=(1 << 30) + pid * 4096 + k * (1 << 20),
        threads=4,
        read_bytes=None,
        write_bytes=None,
        io_source=None,
        open_files=None,
        accel_memory_bytes=None,
    )


@dataclass(frozen=True)
class Record:
    """One sampled thing as the test knows it: source (gpu, npu, process: a process on a
    device, job: a job's process), Unix ms, its tags, its wire values."""

    source: str
    t_ms: int
    tags: dict[str, str]
    values: dict[str, Any]


@dataclass
class Loaded:
    server: InfluxServer
    db: str
    records: list[Record]
    start_ms: int
    end_ms: int

    def query(self, q: str, interval_s: int, selection: Mapping[str, str]) -> list[Any]:
        return self.server.query(
            gq.render(
                q,
                start_ms=self.start_ms,
                end_ms=self.end_ms,
                interval_s=interval_s,
                selection=selection,
            ),
            self.db,
        )


@pytest.fixture
async def loaded(influx_server: InfluxServer, influx_db: str) -> Loaded:
    """The samples written as the backend writes them (device_samples.points,
    process_metrics.lines, InfluxWriter)."""
    t0 = (int(time.time()) // 10 * 10 - 60) * 1000
    lines: list[str] = []
    records: list[Record] = []
    for k, off in enumerate(OFFSETS_MS):
        t = t0 + off
        for machine, devices in (
            (GPU_NODE, [gpu(d, k) for d in range(4)]),
            (NPU_NODE, [npu(d, k) for d in range(2)]),
        ):
            msg = {"sampled_at": t, "devices": devices, "errors": []}
            sample = check_device_metrics(msg)
            jobs = JOBS[machine]
            lines += [p.line() for p in device_samples.points(machine, sample, jobs)]
            for d in sample["devices"]:
                tags = {"machine": machine, "kind": d["kind"], "device": str(d["index"])}
                records.append(Record(d["kind"], t, {**tags, "uuid": d["uuid"] or ""}, d))
                for p in d["processes"]:
                    job = jobs.get(p["pid"], "")
                    ptags = {**tags, "job": job, "pid": str(p["pid"])}
                    records.append(Record("process", t, ptags, p))
        for machine, pid in ((GPU_NODE, 4101), (NPU_NODE, 5201)):
            s = job_sample(pid, k, t)
            job = JOBS[machine][pid]
            lines += process_metrics.lines(machine, [(job, s)])
            tags = {"machine": machine, "job_id": job, "pid": str(pid)}
            records.append(Record("job", t, tags, vars(s)))
    writer = InfluxWriter(InfluxConfig(influx_server.url, database=influx_db))
    await writer.start()
    writer.submit(lines)
    await writer.flushed()
    await writer.close()
    assert writer.stats.rejected_lines == writer.stats.overflowed_lines == 0
    return Loaded(influx_server, influx_db, records, t0 - 10_000, int(time.time() * 1000) + 10_000)


# --- what each panel shows, from the records --------------------------------------------

Value = Callable[[dict[str, Any]], Any]


def wire(name: str, div: int = 1) -> Value:
    return lambda v: None if v[name] is None else v[name] / div


@dataclass(frozen=True)
class Panel:
    source: str
    columns: dict[str, tuple[Value, str]]  # column: (its value from a record, reduction)
    by: tuple[str, ...]  # GROUP BY tags
    table: bool = False  # one row per series (its last value at its time), else buckets
    only: Callable[[Record], bool] = lambda r: True


DEVICE_TAGS = ("machine", "device")
PROCESS_TAGS = ("machine", "kind", "device", "job", "pid")
JOB_TAGS = ("machine", "job_id", "pid")
PANELS = {
    "GPU utilisation %": Panel(
        "gpu", {"utilization": (wire("utilization_pct"), "mean")}, DEVICE_TAGS
    ),
    "GPU memory-copy utilisation %": Panel(
        "gpu", {"memory_copy": (wire("memory_utilization_pct"), "mean")}, DEVICE_TAGS
    ),
    "GPU framebuffer used / total": Panel(
        "gpu",
        {
            "used": (wire("memory_used_bytes", MiB), "max"),
            "total": (wire("memory_total_bytes", MiB), "max"),
        },
        DEVICE_TAGS,
    ),
    "GPU power": Panel("gpu", {"power": (wire("power_w"), "mean")}, DEVICE_TAGS),
    "GPU temperature": Panel("gpu", {"temperature": (wire("temperature_c"), "mean")}, DEVICE_TAGS),
    "GPU SM clock": Panel("gpu", {"sm_clock": (wire("sm_clock_mhz"), "mean")}, DEVICE_TAGS),
    "GPU PCIe throughput": Panel(
        "gpu",
        {
            "tx": (wire("pcie_tx_bytes_per_s", 1024), "max"),
            "rx": (wire("pcie_rx_bytes_per_s", 1024), "max"),
        },
        DEVICE_TAGS,
    ),
    "GPU XID errors and retired pages": Panel(
        "gpu",
        {
            "xid_errors": (wire("xid_errors"), "max"),
            "retired_pages": (wire("retired_pages"), "max"),
        },
        DEVICE_TAGS,
    ),
    "NPU AI Core utilisation %": Panel(
        "npu", {"utilization": (wire("utilization_pct"), "mean")}, DEVICE_TAGS
    ),
    "NPU HBM used / total": Panel(
        "npu",
        {
            "used": (wire("hbm_used_bytes", MiB), "max"),
            "total": (wire("hbm_total_bytes", MiB), "max"),
        },
        DEVICE_TAGS,
    ),
    "NPU power": Panel("npu", {"power": (wire("power_w"), "mean")}, DEVICE_TAGS),
    "NPU temperature": Panel("npu", {"temperature": (wire("temperature_c"), "mean")}, DEVICE_TAGS),
    "NPU health": Panel(
        "npu", {"healthy": (lambda v: float(v["health"] == "ok"), "min")}, DEVICE_TAGS
    ),
    "Device health": Panel(
        "device",
        {"health": (lambda v: float(HEALTH[v["health"]]), "last")},
        ("machine", "kind", "device", "uuid"),
        table=True,
    ),
    "Device memory held by job processes": Panel(
        "process", {"used": (wire("memory_bytes", MiB), "max")}, PROCESS_TAGS
    ),
    "Jobs holding memory on devices": Panel(
        "process",
        {"memory_used": (wire("memory_bytes", MiB), "last")},
        PROCESS_TAGS,
        table=True,
        only=lambda r: r.tags["job"] != "",
    ),
    "Job process CPU %": Panel("job", {"cpu": (wire("cpu_percent"), "mean")}, JOB_TAGS),
    "Job process RSS": Panel("job", {"rss": (wire("rss_bytes"), "max")}, JOB_TAGS),
}
REDUCE: dict[str, Callable[[list[Any]], Any]] = {
    "mean": lambda xs: sum(xs) / len(xs),
    "max": max,
    "min": min,
    "last": lambda xs: xs[-1],
}


def expected(ld: Loaded, panel: Panel, k: int, sel: Mapping[str, str]) -> gq.Got:
    """{(bucket or last time in s, GROUP BY tag values sorted by name, column): value}."""
    sources = ("gpu", "npu") if panel.source == "device" else (panel.source,)
    values: dict[tuple[Any, ...], list[tuple[int, Any]]] = defaultdict(list)
    for r in sorted(ld.records, key=lambda r: r.t_ms):
        if r.source not in sources or not panel.only(r):
            continue
        if not all(re.fullmatch(sel[t], r.tags[t]) for t in sel if t in r.tags):
            continue
        group = tuple(r.tags[t] for t in sorted(panel.by))
        for col, (value, _) in panel.columns.items():
            v = value(r.values)
            if v is not None:
                bucket = None if panel.table else r.t_ms // 1000 // k * k
                values[(bucket, group, col)].append((r.t_ms // 1000, v))
    out: gq.Got = {}
    for (bucket, group, col), got in values.items():
        how = panel.columns[col][1]
        t = got[-1][0] if bucket is None else bucket
        out[(t, *group, col)] = REDUCE[how]([v for _, v in got])
    return out


EVERYTHING = {"machine": gq.ALL, "kind": gq.ALL, "device": gq.ALL, "job_id": gq.ALL}
TWO_GPUS = {
    "machine": gq.select(GPU_NODE),
    "kind": gq.select("gpu"),
    "device": gq.select("1", "3"),
    "job_id": gq.ALL,
}
NPU_JOB = {
    "machine": gq.select(NPU_NODE, "elsewhere"),
    "kind": gq.ALL,
    "device": gq.select("0"),
    "job_id": gq.select(JOB2),
}


@pytest.mark.parametrize(
    ("interval_s", "selection"),
    [(1, EVERYTHING), (5, EVERYTHING), (10, EVERYTHING), (1, TWO_GPUS), (10, NPU_JOB)],
    ids=["all-1s", "all-5s", "all-10s", "two-gpus", "one-npu-one-job"],
)
async def test_panel_queries(loaded: Loaded, interval_s: int, selection: Mapping[str, str]) -> None:
    """Every panel's query gives exactly the sampled values, per bucket and series."""
    d = gq.dashboards()[DEVICES]
    titles = [p["title"] for p in gq.panels(d) if p["type"] != "row"]
    assert sorted(titles) == sorted(PANELS)  # a new panel needs its reference here
    for p in gq.panels(d):
        for t in p.get("targets", []):
            got = gq.rows(loaded.query(t["query"], interval_s, selection))
            want = expected(loaded, PANELS[p["title"]], interval_s, selection)
            assert got == want, p["title"]
            if selection is EVERYTHING:
                assert want, p["title"]  # the test sees something in every panel


async def test_everything_is_seen(loaded: Loaded) -> None:
    """The reference is not empty where it matters: 4 GPUs, 2 NPUs, 3 times, both jobs on
    devices, and a bucket that averages two samples."""
    d = gq.dashboards()[DEVICES]
    (util,) = [p for p in gq.panels(d) if p["title"] == "GPU utilisation %"]
    got = gq.rows(loaded.query(util["targets"][0]["query"], 10, EVERYTHING))
    assert {dev for _, dev, _, _ in got} == {"0", "1", "2", "3"}
    t0 = loaded.start_ms // 1000 + 10
    assert got[(t0, "2", GPU_NODE, "utilization")] == (25 + 40) / 2
    assert got[(t0 + 10, "2", GPU_NODE, "utilization")] == 70
    (jobs,) = [p for p in gq.panels(d) if p["title"] == "Jobs holding memory on devices"]
    series = loaded.query(jobs["targets"][0]["query"], 1, EVERYTHING)
    held = {(s["tags"]["machine"], s["tags"]["device"], s["tags"]["job"]) for s in series}
    assert held == {(GPU_NODE, "0", JOB1), (GPU_NODE, "1", JOB1), (NPU_NODE, "0", JOB2),
                    (NPU_NODE, "1", JOB2)}  # fmt: skip
    # the table's links read fields the query gives
    fields = {c for s in series for c in [*s["tags"], *s["columns"]]}
    for link in gq.links(jobs):
        assert set(re.findall(r"\$\{__data\.fields\.(\w+)\}", link["url"])) <= fields


def test_job_link_and_api_default() -> None:
    d = gq.dashboards()[DEVICES]
    api = gq.variables(d)["xputrace_url"]
    assert api["type"] == "textbox" and api["query"] == f"http://127.0.0.1:{Settings().port}"
    (jobs,) = [p for p in gq.panels(d) if p["title"] == "Jobs holding memory on devices"]
    urls = {link["url"] for link in gq.links(jobs)}
    assert "${xputrace_url}" + JOB.replace("{job_id}", "${__value.raw}") in urls
    assert any(u.startswith("/d/xputrace-overview/") and "var-pid=" in u for u in urls)


async def test_variable_queries(loaded: Loaded) -> None:
    """The variables list the machines, kinds, devices and jobs written, narrowed by the
    variables before them."""
    variables = gq.variables(gq.dashboards()[DEVICES])
    assert set(variables) == {"machine", "kind", "device", "job_id", "xputrace_url"}
    cases = [
        ("machine", {}, {GPU_NODE, NPU_NODE}),
        ("kind", {"machine": gq.ALL}, {"gpu", "npu"}),
        ("kind", {"machine": gq.select(NPU_NODE)}, {"npu"}),
        ("device", {"machine": gq.ALL, "kind": gq.ALL}, {"0", "1", "2", "3"}),
        ("device", {"machine": gq.ALL, "kind": gq.select("npu")}, {"0", "1"}),
        ("device", {"machine": gq.select(GPU_NODE), "kind": gq.ALL}, {"0", "1", "2", "3"}),
        ("job_id", {"machine": gq.ALL}, {JOB1, JOB2}),
        ("job_id", {"machine": gq.select(GPU_NODE)}, {JOB1}),
    ]
    for name, sel, want in cases:
        series = loaded.query(variables[name]["query"], 1, sel)
        assert {v for s in series for _, v in s["values"]} == want, (name, sel)
