"""The Grafana dashboards under deploy/grafana as data: their panels, template variables and
InfluxQL, rendered the way Grafana renders it for a given time range, bucket size and
variable selection."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCE_YAML = GRAFANA / "provisioning" / "datasources" / "xputrace.yaml"
PROVIDER_YAML = GRAFANA / "provisioning" / "dashboards" / "xputrace.yaml"
ENV_FILE = GRAFANA / "grafana.env"

S = 10**9  # InfluxDB answers in ns (epoch=ns)
ALL = ".*"  # the variables' allValue: what "All" renders to
Got = dict[tuple[Any, ...], Any]
_VAR = re.compile(r"\$(\w+)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def dashboards() -> dict[str, dict[str, Any]]:
    """{file name: dashboard} of every dashboard JSON."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dash: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def links(panel: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The data links of a panel's fields (defaults and overrides)."""
    config = panel.get("fieldConfig", {})
    out = list(config.get("defaults", {}).get("links", []))
    for o in config.get("overrides", []):
        for prop in o["properties"]:
            if prop["id"] == "links":
                out += prop["value"]
    return out


def variables(dash: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def select(*values: str) -> str:
    """A selection as Grafana formats it for a regex: one escaped value, or (a|b)."""
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def render(
    query: str, *, start_ms: int, end_ms: int, interval_s: int, selection: Mapping[str, str]
) -> str:
    """The query as Grafana sends it; an unknown $variable is an error."""
    builtins = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": f"{interval_s}s",
        "__interval_ms": str(interval_s * 1000),
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in builtins:
            return builtins[name]
        return selection[name]  # KeyError: a variable the dashboard does not define

    return _VAR.sub(sub, query)


def env_defaults() -> dict[str, str]:
    """NAME=value lines of grafana.env."""
    out = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def env_references(path: Path) -> set[str]:
    """The ${NAME} variables a provisioning file uses (comments left out)."""
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    return set(re.findall(r"\$\{(\w+)\}", text))


def rows(series: list[Any]) -> Got:
    """{(bucket start in s, tag values sorted by tag name..., column): value} of the non-null
    values of a query's series."""
    out: Got = {}
    for s in series:
        tags = tuple(v for _, v in sorted(s.get("tags", {}).items()))
        for t, *values in s["values"]:
            for col, v in zip(s["columns"][1:], values, strict=True):
                if v is not None:
                    out[(t // S, *tags, col)] = v
    return out
