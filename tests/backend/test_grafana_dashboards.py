"""The Grafana dashboards (deploy/grafana): Grafana JSON that uses the provisioned data source,
and every panel and variable query, run against a real InfluxDB (Debian's influxd 1.6.7)
holding the known capture, gives the numbers the per-event reference computes."""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from backend.aggregates import Aggregator
from backend.influx import InfluxConfig, InfluxWriter
from backend.settings import Settings
from tests.backend import grafana_queries as gq
from tests.backend.aggregate_data import Capture, S, make_capture
from tests.backend.influx_fixtures import InfluxServer
from xpucore import abi

OVERVIEW = "xputrace-overview.json"
INTERVAL_S = 1  # the backend's aggregate interval (its default)
DATASOURCE = {"type": "influxdb", "uid": "xputrace-influxdb"}
EVERYTHING = {
    "machine": gq.ALL,
    "monitor_type": gq.ALL,
    "pid": gq.ALL,
    "device": gq.ALL,
    "function": gq.ALL,
}
ONE_PROCESS = {
    "machine": gq.select("machine-a"),
    "monitor_type": gq.ALL,
    "pid": gq.select("4101"),
    "device": gq.ALL,
    "function": gq.select("cudaMalloc", "cudaMemcpy"),
}
TWO_DEVICES = {
    "machine": gq.ALL,
    "monitor_type": gq.ALL,
    "pid": gq.ALL,
    "device": gq.select("0", "2"),
    "function": gq.ALL,
}
Got = gq.Got


# --- the files ----------------------------------------------------------------------------


def test_provisioning_files() -> None:
    ds = gq.DATASOURCE_YAML.read_text()
    assert re.search(r"^\s+type: influxdb$", ds, re.M)
    assert re.search(rf"^\s+uid: {DATASOURCE['uid']}\b", ds, re.M)
    assert re.search(r"^\s+dbName: \$\{XPUTRACE_INFLUX_DATABASE\}$", ds, re.M)
    provider = gq.PROVIDER_YAML.read_text()
    assert re.search(r"^\s+type: file$", provider, re.M)
    assert re.search(r"^\s+path: \$\{XPUTRACE_GRAFANA_DASHBOARDS\}$", provider, re.M)
    # every variable has a default, and the backend's own are the backend's defaults
    defaults = gq.env_defaults()
    used = gq.env_references(gq.DATASOURCE_YAML) | gq.env_references(gq.PROVIDER_YAML)
    assert used == set(defaults)
    settings = Settings()
    for name in used - {"XPUTRACE_GRAFANA_DASHBOARDS", "XPUTRACE_INFLUX_URL"}:
        assert defaults[name] == getattr(settings, name.removeprefix("XPUTRACE_").lower())
    assert defaults["XPUTRACE_INFLUX_DATABASE"] == "xputrace"


def test_dashboards_are_grafana_json() -> None:
    dashes = gq.dashboards()
    assert {"xputrace-overview.json", "xputrace-devices.json"} <= set(dashes)
    uids = [d["uid"] for d in dashes.values()]
    assert len(set(uids)) == len(uids)
    for d in dashes.values():
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"]) and d["title"]
        ids = [p["id"] for p in gq.panels(d)]
        assert len(ids) == len(set(ids))
        names = {n for n, v in gq.variables(d).items() if v["type"] == "query"}
        for v in gq.variables(d).values():
            if v["type"] == "textbox":  # a value typed in, used by links only
                assert v["current"]["value"] == v["query"]
                continue
            assert v["type"] == "query" and v["datasource"] == DATASOURCE
            assert v["query"].startswith("SHOW TAG VALUES ")
            assert v["includeAll"] and v["multi"] and v["allValue"] == gq.ALL
        for p in gq.panels(d):
            if p["type"] == "row":
                continue
            assert p["datasource"] == DATASOURCE and p["targets"]
            for t in p["targets"]:
                q = t["query"]
                assert t["rawQuery"] is True and t["datasource"] == DATASOURCE
                assert q.startswith("SELECT ") and "$timeFilter" in q
                if t["resultFormat"] == "table":  # one row per series: its last value
                    assert p["type"] == "table" and "$__interval" not in q
                else:
                    assert t["resultFormat"] == "time_series"
                    assert "GROUP BY time($__interval)" in q
                used = set(re.findall(r"\$(\w+)", q)) - {
                    "timeFilter",
                    "__interval",
                    "__interval_ms",
                }
                assert used <= names, p["title"]
                for name in used:
                    assert re.search(rf'"{name}" =~ /\^\${name}\$/', q), (p["title"], name)
            for link in gq.links(p):
                check_link(link["url"], set(gq.variables(d)), dashes)


def check_link(url: str, names: set[str], dashes: Mapping[str, Any]) -> None:
    """A data link uses this dashboard's variables or Grafana's, and points at a dashboard
    that exists with the variables it sets."""
    grafana = {"__value.raw", "__url_time_range"}
    for ref in re.findall(r"\$\{([\w.]+)\}", url):
        assert ref in names | grafana or ref.startswith("__data.fields."), (url, ref)
    if m := re.match(r"/d/([\w-]+)/", url):
        (target,) = [d for d in dashes.values() if d["uid"] == m.group(1)]
        assert set(re.findall(r"[?&]var-(\w+)=", url)) <= set(gq.variables(target)), url


# --- the queries against the capture ------------------------------------------------------


@dataclass
class Loaded:
    server: InfluxServer
    db: str
    cap: Capture
    start_ms: int  # the dashboard's time range
    end_ms: int
    monitor_type: dict[str, str]  # monitor id -> type
    writer_health: dict[str, int]  # the unhealthy writer's counters

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
    """The capture aggregated and written as the backend does, plus the health reports of a
    writer that lost lines both ways (2 refused by InfluxDB, 2 beyond its buffer), one report
    per change."""
    cap = make_capture((time.time_ns() // S - 30) * S)
    config = InfluxConfig(influx_server.url, database=influx_db)
    writer = InfluxWriter(config)
    await writer.start()
    agg = Aggregator(lambda pts: writer.submit([p.line() for p in pts]), interval_ns=INTERVAL_S * S)
    for b in cap.decoded:
        agg.add([b])
    agg.flush()
    await writer.flushed()
    await writer.close()
    assert writer.stats.rejected_lines == writer.stats.overflowed_lines == 0
    sick = InfluxWriter(config, max_buffer_lines=3, batch_lines=1, instance="sick-backend")
    await sick.start()
    sick.submit(["not line protocol"])
    await sick.flushed()
    sick.submit([f"writer_probe v={i}i" for i in range(5)])
    await sick.flushed()
    sick.submit(["not line protocol either"])
    await sick.flushed()
    await sick.close()
    health = {"overflowed": sick.stats.overflowed_lines, "rejected": sick.stats.rejected_lines}
    assert health == {"overflowed": 2, "rejected": 2}
    types = {v: k for k, v in abi.MONITOR_TYPES.items()}
    return Loaded(
        influx_server,
        influx_db,
        cap,
        cap.t0 // 10**6 - 10_000,
        time.time_ns() // 10**6 + 10_000,
        {b.monitor_id: types[b.monitor_type] for b in cap.decoded},
        health,
    )


def counts(got: Got, interval_s: int) -> Got:
    """Per-second rates back to counts per bucket; the zeros of fill(0) left out."""
    out = {}
    for key, rate in got.items():
        n = rate * interval_s
        assert abs(n - round(n)) < 1e-6, (key, rate)
        if round(n):
            out[key] = round(n)
    return out


def selected(sel: Mapping[str, str], **tags: object) -> bool:
    return all(re.fullmatch(sel[k], str(v)) for k, v in tags.items())


def reference_calls(ld: Loaded, sel: Mapping[str, str]) -> list[tuple[int, str, Any]]:
    """(interval, function, aggregate) of the reference's selected call aggregates."""
    return [
        (iv, func, a)
        for (iv, machine, mon, pid, dev, func), a in ld.cap.calls.items()
        if selected(
            sel,
            machine=machine,
            monitor_type=ld.monitor_type[mon],
            pid=pid,
            device=dev,
            function=func,
        )
    ]


def check_call_rate(field: str) -> Callable[[Loaded, list[Any], int, Mapping[str, str]], None]:
    def check(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
        want: Got = defaultdict(int)
        for iv, func, a in reference_calls(ld, sel):
            want[(iv // k * k, func, field)] += a[field]
        assert counts(gq.rows(series), k) == {key: n for key, n in want.items() if n}

    return check


def check_latency(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
    durations: dict[tuple[int, str], list[int]] = defaultdict(list)
    for iv, func, a in reference_calls(ld, sel):
        durations[(iv // k * k, func)] += a["durations"]
    got: Got = defaultdict(dict)
    for (b, func, col), v in gq.rows(series).items():
        got[(b, func)][col] = v
    assert got.keys() == durations.keys()
    for key, ds in durations.items():
        g, ds = got[key], sorted(ds)
        assert g["max"] == ds[-1], key
        assert g["p50"] <= g["p95"] <= g["p99"] <= g["max"], key
        for q in (50, 95, 99):
            # the merged percentile is at most the largest per-series one
            true = ds[max(1, math.ceil(q / 100 * len(ds) - 1e-9)) - 1]
            assert true <= g[f"p{q}"], (key, q)


def check_bytes(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
    want: Got = defaultdict(int)
    for iv, _, a in reference_calls(ld, sel):
        want[(iv // k * k, "copied")] += a["bytes_copied"]
        want[(iv // k * k, "allocated")] += a["bytes_allocated"]
    got = counts(gq.rows(series), k)
    assert got == {key: n for key, n in want.items() if n}
    assert {c for _, c in got} == {"copied", "allocated"}


def check_memory(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
    history: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    for (iv, m, mon, p, dev), (held, _) in sorted(ld.cap.memory.items()):
        if selected(sel, machine=m, monitor_type=ld.monitor_type[mon], pid=p, device=dev):
            history[(str(dev), m, str(p))].append((iv, held))
    got = gq.rows(series)  # tags sorted by name: device, machine, pid
    assert {(d, m, p) for _, d, m, p, _ in got} == history.keys()
    first_bucket = ld.start_ms // 1000 // k * k
    last_bucket = ld.end_ms // 1000 // k * k
    for (dev, machine, pid), changes in history.items():
        for b in range(first_bucket, last_bucket + 1, k):
            # held at the end of the bucket; fill(previous) carries it on
            before = [held for iv, held in changes if iv < b + k]
            want = before[-1] if before else None
            assert got.get((b, dev, machine, pid, "held")) == want, (dev, machine, pid, b)


def check_drops(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
    want: Got = defaultdict(int)
    for (iv, machine, mon), values in ld.cap.drops.items():
        if selected(sel, machine=machine, monitor_type=ld.monitor_type[mon]):
            for col, n in zip(("kernel", "inflight", "send"), values, strict=True):
                want[(iv // k * k, col)] += n
    got = counts(gq.rows(series), k)
    assert got == {key: n for key, n in want.items() if n}
    assert sum(n for (_, col), n in got.items() if col == "kernel") > 0


def check_writer(ld: Loaded, series: list[Any], k: int, sel: Mapping[str, str]) -> None:
    last: dict[tuple[str, str], tuple[int, Any]] = {}
    for (b, instance, col), v in gq.rows(series).items():
        if (instance, col) not in last or b > last[(instance, col)][0]:
            last[(instance, col)] = (b, v)
    assert {i for i, _ in last} == {"sick-backend"}
    assert {c: last[("sick-backend", c)][1] for c in ld.writer_health} == ld.writer_health


PANEL_CHECKS = {
    "Calls per second, per function": check_call_rate("calls"),
    "Latency p50 / p95 / p99 / max, per function": check_latency,
    "Errors per second, per function": check_call_rate("errors"),
    "Bytes copied and allocated per second": check_bytes,
    "Device memory held, per process and device": check_memory,
    "Events dropped per second": check_drops,
    "Ingest writer health (lines lost)": check_writer,
}


@pytest.mark.parametrize(
    ("interval_s", "selection"),
    [
        (INTERVAL_S, EVERYTHING),
        (3, EVERYTHING),
        (INTERVAL_S, ONE_PROCESS),
        (INTERVAL_S, TWO_DEVICES),
    ],
    ids=["all", "all-3s-buckets", "one-process", "two-devices"],
)
async def test_panel_queries(loaded: Loaded, interval_s: int, selection: Mapping[str, str]) -> None:
    """Every panel's query, rendered as Grafana would, against the capture: per bucket, the
    reference's counts, maxima, percentile bounds, memory held and drops."""
    d = gq.dashboards()[OVERVIEW]
    titles = [p["title"] for p in gq.panels(d) if p["type"] != "row"]
    assert sorted(titles) == sorted(PANEL_CHECKS)  # a new panel needs a check here
    for p in gq.panels(d):
        for t in p.get("targets", []):
            series = loaded.query(t["query"], interval_s, selection)
            PANEL_CHECKS[p["title"]](loaded, series, interval_s, selection)


async def test_variable_queries(loaded: Loaded) -> None:
    """The template variables list what the capture has, narrowed by the variables before."""
    calls = loaded.cap.calls
    cases = [
        ("machine", {}, {m for _, m, *_ in calls}),
        ("monitor_type", {"machine": gq.ALL}, {"CUDA"}),
        ("monitor_type", {"machine": gq.select("machine-b")}, {"CUDA"}),
        ("pid", {"machine": gq.ALL, "monitor_type": gq.ALL}, {str(k[3]) for k in calls}),
        ("pid", {"machine": gq.select("machine-a"), "monitor_type": gq.ALL}, {"4101", "4102"}),
        ("device", {"machine": gq.ALL, "monitor_type": gq.ALL, "pid": gq.ALL}, {"0", "1", "2"}),
        (
            "device",
            {"machine": gq.ALL, "monitor_type": gq.ALL, "pid": gq.select("4102")},
            {str(k[4]) for k in calls if k[3] == 4102},
        ),
        (
            "function",
            {"machine": gq.ALL, "monitor_type": gq.ALL, "pid": gq.ALL, "device": gq.ALL},
            {f for *_, f in calls},
        ),
        (
            "function",
            {"machine": gq.ALL, "monitor_type": gq.ALL, "pid": gq.select("5201"), "device": gq.ALL},
            {k[5] for k in calls if k[3] == 5201},
        ),
    ]
    assert {"machine-a", "machine-b"} == cases[0][2] and len(cases[-1][2]) == 6
    variables = gq.variables(gq.dashboards()[OVERVIEW])
    assert set(variables) == {"machine", "monitor_type", "pid", "device", "function"}
    for name, sel, want in cases:
        series = loaded.query(variables[name]["query"], INTERVAL_S, sel)
        assert {v for s in series for _, v in s["values"]} == want, (name, sel)
