"""The metrics summary's ``cpu_utilization`` (GET /api/v1/metrics/summary), from the process
samples of AI jobs (backend.process_metrics: InfluxDB's ``xpu_process`` when it is configured,
else PostgreSQL's ``job_metrics``).

``cpu_utilization`` is the CPU used by the AI jobs' processes, in % of one core (100 = one
core busy), summed over the jobs matched. It is not the whole machine's CPU: only the
processes that managers know as AI jobs are sampled, each on its own (a child process counts
only if it is a job itself). Each sample is the CPU time the process used since its previous
sample (the first sample of a job has none and is left out).

- ``current``: the sum over the matched jobs of each job's latest sample in the range;
- ``avg_<range>``: the sum over the matched jobs of each job's mean over its samples in the
  range.

Both are rounded to 0.01 (samples are sent so), and null when no matched job has a sample in
the range. A job that ended during the range still counts with its latest sample, as a device
that stopped reporting does in the accelerator metrics (backend.device_summary).

Jobs are matched by the filter's ``machine_id`` (the machine the process runs on), ``job_id``
(a process job: itself; a distributed job: its ranks, on every machine) and ``pid`` (the
processes with that pid, on every machine unless ``machine_id`` says one). ``monitor_id`` and
``function`` do not apply (they restrict the call metrics), and ``device`` restricts the
accelerator metrics only: asked together with ``cpu_utilization`` it is a 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiohttp

from backend.influx import InfluxConfig, query, quote_literal
from backend.process_metrics import MEASUREMENT

__all__ = ["CPU_METRIC", "JobCpu", "cpu_summary", "influx_per_job"]

CPU_METRIC = "cpu_utilization"
#: (job id, mean cpu_percent over the range, its latest sample's cpu_percent)
JobCpu = tuple[str, float, float]


def cpu_summary(rows: Iterable[JobCpu], avg_key: str) -> dict[str, Any]:
    """{"current", avg_key} from each matched job's mean and latest sample."""
    got = sorted(rows)  # one order for both stores: the same float sums
    if not got:
        return {"current": None, avg_key: None}
    return {
        "current": round(sum(last for _, _, last in got), 2),
        avg_key: round(sum(mean for _, mean, _ in got), 2),
    }


async def influx_per_job(
    session: aiohttp.ClientSession,
    config: InfluxConfig,
    start_ns: int,
    end_ns: int,
    machine_id: str | None,
    pid: int | None,
    job_ids: list[str] | None,
) -> list[JobCpu]:
    """Each job's mean and latest cpu_percent in [start_ns, end_ns) from xpu_process;
    job_ids None: any job (InfluxError when InfluxDB fails)."""
    if job_ids is not None and not job_ids:
        return []
    where = [f"time >= {start_ns}", f"time < {end_ns}"]
    if machine_id is not None:
        where.append(f"machine = {quote_literal(machine_id)}")
    if pid is not None:
        where.append(f"pid = {quote_literal(str(pid))}")
    if job_ids is not None:
        where.append("(" + " OR ".join(f"job_id = {quote_literal(j)}" for j in job_ids) + ")")
    q = (
        f"SELECT mean(cpu_percent), last(cpu_percent) FROM {MEASUREMENT} "
        f"WHERE {' AND '.join(where)} GROUP BY job_id"
    )
    out: list[JobCpu] = []
    for series in await query(session, config, q):
        for _, mean, last in series.get("values", ()):
            if mean is not None and last is not None:
                out.append((series["tags"]["job_id"], float(mean), float(last)))
    return out
