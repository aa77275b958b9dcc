"""xputrace: the command line client of the REST API.

    xputrace register EMAIL [--invite TOKEN] | login EMAIL | logout
    xputrace users [list] | invite EMAIL [--role R] | set-role USER ROLE     (admins)
    xputrace audit [--filter F] [--limit N]                                 (admins)
    xputrace machines [ID] [--csv]
    xputrace devices [--machine ID] [--json]
    xputrace stats [--machine ID] [--jobs [--order-by O] [--limit N]]
                   [--trends [--start T] [--end T] [--interval 1m|5m|1h]] [--json]
    xputrace monitors [list [--csv]] | start --pid PID [--library PATH] [--wait] | get ID | stop ID
                      | wait ID [--status RUNNING]
    xputrace events [--filter F] [--order-by O] [--fields F] [--limit N | --csv]
    xputrace jobs [list] [--filter F] [--order-by O] [--machine M] [--limit N | --csv]
                  | show ID [--parameters] [--code] [--history] | stop ID [ID ...]
                  | ranks ID [--json]
                  | metrics ID [--start T] [--end T] [--interval I]
                  | trace ID --type CUDA|ACL|PYTHON|SYSCALL [--window-function F --skip N
                    --count K] [--name N] [--wait [-o FILE]] | trace-stop ID TRACE [--wait]
    xputrace search QUERY [--kind K] [--limit N] [--json]
    xputrace traces generate --filter F --name N [--format perfetto|chrome] [--gzip]
                             [--wait [-o FILE]] | status JOB | download TRACE [-o FILE]

--url (or XPUTRACE_URL) picks the backend, default http://127.0.0.1:8080; for an https://
backend with a certificate of its own, --ca-file (or XPUTRACE_CA_FILE) is the PEM file to
trust (make run's: var/backend/tls/cert.pem). --machine picks
the machine for monitors; with one machine known it is the default. Tokens are kept in
~/.config/xputrace/credentials.json (0600) and refreshed when they expire. Events print as
JSON lines, every page fetched for you (so do audit log entries, newest first).
The first account registered on a backend is its admin; after it, registering takes an
admin's invite (`users invite` prints the token) unless the backend opens registration.
Jobs (AI processes, every machine) print as JSON lines, newest first; `jobs stop` with
several ids stops them at once and prints each one's result; `jobs ranks` prints the
ranks of a distributed job as a table (machine, pid, rank, local rank, device), and how
many of its world size have not appeared; `jobs metrics` prints a job's process metrics,
one JSON line an interval (times RFC 3339, interval e.g. 10s, 1m, 1h). `jobs trace` starts
a monitor on every rank of a job (with --window-function, only calls skip+1 to skip+count of
that Python function are kept) and prints the job trace; with --wait it waits until the
trace is generated (after `jobs trace-stop`, or once every rank's monitor ended: its window
closed, its rank exited) and downloads it.
`devices` prints each machine's accelerators (or --machine's) as a table: kind, index,
name, health, utilisation %, memory used / total MiB, power W, temperature C, and when
sampled; a machine whose manager found no device library says which failed.
`stats` prints the cluster's figures (or --machine's): machines by status, devices by kind
and health, jobs by status, type and framework, mean utilisation, temperature and power,
memory used / total; --jobs the jobs that held the most on the accelerators (device time:
seconds a process of the job held memory on a device, summed over its devices; memory now
and at its peak, MiB); --trends those figures per interval over a range.
--csv prints a list as CSV (the backend's export: every row, a header row first) and
fails when the export ended with its error record.
USER is an e-mail or a user id; roles are viewer, operator, admin. `traces generate --wait`
draws the job's progress on stderr, then downloads the trace (to FILE, default the name the
backend gives it).
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import re
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path
from typing import IO, Any

from backend.roles import ROLES

__all__ = ["export_csv", "main"]

CREDENTIALS = Path.home() / ".config" / "xputrace" / "credentials.json"


class ApiError(Exception):
    pass


class Client:
    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.creds: dict[str, str] = {}
        if CREDENTIALS.exists():
            self.creds = json.loads(CREDENTIALS.read_text()).get(self.url, {})

    def _save(self) -> None:
        CREDENTIALS.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.loads(CREDENTIALS.read_text()) if CREDENTIALS.exists() else {}
        data[self.url] = self.creds
        fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)

    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        retry: bool = True,
    ) -> Any:
        """The open HTTP response (a 2xx); ApiError with the seed's message otherwise."""
        url = f"{self.url}/api/v1{path}"
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        req = urllib.request.Request(
            url, method=method, data=json.dumps(body).encode() if body is not None else None
        )
        req.add_header("Content-Type", "application/json")
        if auth and self.creds.get("access_token"):
            req.add_header("Authorization", f"Bearer {self.creds['access_token']}")
        try:
            return urllib.request.urlopen(req, timeout=30, context=self.tls)
        except urllib.error.HTTPError as e:
            refreshable = e.code == 401 and auth and retry and self.creds.get("refresh_token")
            if refreshable and self._refresh():
                return self._open(method, path, body, params, auth, retry=False)
            try:
                msg = json.loads(e.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = e.reason
            raise ApiError(f"{method} {path}: {e.code} {msg}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach {self.url}: {e.reason}") from None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> Any:
        with self._open(method, path, body, params, auth) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def download(self, path: str, out: Path | None) -> Path:
        """Streams a file to out (default: the name the backend gives it, in the current
        folder); written to out.part first, renamed when complete."""
        with self._open("GET", path) as r:
            out = out or Path(_attachment_name(r.headers) or path.rsplit("/", 1)[-1])
            part = out.with_name(out.name + ".part")
            try:
                with open(part, "wb") as f:
                    shutil.copyfileobj(r, f, 1 << 20)
                os.replace(part, out)
            finally:
                part.unlink(missing_ok=True)
        return out

    def _refresh(self) -> bool:
        try:
            tok = self.call(
                "POST",
                "/auth:refreshToken",
                {"refresh_token": self.creds["refresh_token"]},
                auth=False,
            )
        except ApiError:
            return False
        # the refresh token is kept unless the backend rotates it (refresh_token_rotation)
        self.creds.update(
            access_token=tok["access_token"],
            refresh_token=tok.get("refresh_token", self.creds["refresh_token"]),
        )
        self._save()
        return True

    def login(self, email: str, password: str) -> None:
        tok = self.call("POST", "/auth:login", {"email": email, "password": password}, auth=False)
        self.creds = {"access_token": tok["access_token"], "refresh_token": tok["refresh_token"]}
        self._save()

    def machine(self, given: str | None) -> str:
        if given:
            return given
        machines = self.call("GET", "/machines")["machines"]
        if len(machines) != 1:
            raise ApiError(f"{len(machines)} machines known: choose one with --machine")
        return str(machines[0]["id"])


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _wait(c: Client, machine: str, monitor: str, status: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        m: dict[str, Any] = c.call("GET", f"/machines/{machine}/monitors/{monitor}")
        if m["status"] == status:
            return m
        if m["status"] in ("STOPPED", "ERROR", "FAILED_TO_START") or time.monotonic() > deadline:
            raise ApiError(f"monitor {monitor} is {m['status']}: {m.get('error_message') or ''}")
        time.sleep(0.2)


def _attachment_name(headers: Message) -> str | None:
    """The Content-Disposition filename, reduced to a plain name in the current folder."""
    name = headers.get_filename()
    if not name:
        return None
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", os.path.basename(name)).lstrip(".")
    return name or None


def _bar(job: dict[str, Any], out: IO[str], width: int = 30) -> None:
    """[##########--------------------]  33%  1,234 / 3,702 events"""
    frac = min(max(float(job.get("progress") or 0.0), 0.0), 1.0)
    fill = int(frac * width)
    total = job.get("events_total")
    count = f"{job.get('events') or 0:,}" + (f" / {total:,}" if total is not None else "")
    out.write(f"\r[{'#' * fill}{'-' * (width - fill)}] {frac:4.0%}  {count} events")
    out.flush()


def _wait_trace(c: Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = c.call("GET", f"/traces/jobs/{job_id}")
        _bar(job, sys.stderr)
        if job["status"] != "PROCESSING":
            sys.stderr.write("\n")
            if job["status"] == "FAILED":
                raise ApiError(f"trace job {job_id} failed: {job.get('error_message')}")
            return job
        if time.monotonic() > deadline:
            sys.stderr.write("\n")
            raise ApiError(
                f"trace job {job_id} still PROCESSING after {timeout:g}s "
                f"(xputrace traces status {job_id})"
            )
        time.sleep(0.5)


def _traces(c: Client, args: argparse.Namespace) -> None:
    if args.action == "generate":
        body = {
            "filter": args.filter,
            "trace_name": args.name,
            "format": args.format,
            "gzip": args.gzip,
        }
        job_id = c.call("POST", "/traces:generate", body)["trace_job_id"]
        if not args.wait:
            print(job_id)
            return
        job = _wait_trace(c, job_id, args.timeout)
        out = c.download(job["download_url"].removeprefix("/api/v1"), args.output)
        print(f"{out} ({job['events']:,} events, {job['file_size']:,} bytes)")
    elif args.action == "status":
        _print(c.call("GET", f"/traces/jobs/{args.job}"))
    elif args.action == "download":
        print(c.download(f"/traces/{args.trace}", args.output))


def _pages(
    c: Client, path: str, key: str, params: dict[str, Any], limit: int | None = None
) -> None:
    """Every item of a paged list, as JSON lines."""
    token, n = None, 0
    while True:
        page = c.call("GET", path, params={**params, "page_size": 1000, "page_token": token})
        for item in page[key]:
            if limit and n >= limit:
                return
            print(json.dumps(item))
            n += 1
        token = page.get("next_page_token")
        if not token:
            return


ERROR_MARK = b"#ERROR,"  # backend.csv_export: the record that ends a failed export


def export_csv(body: IO[bytes], out: IO[bytes]) -> None:
    """Copies a CSV export to out; ApiError with the backend's message when it ends with
    the error record (not copied)."""
    for line in body:
        if line.startswith(ERROR_MARK):
            fields = next(csv.reader([line.decode(errors="replace")]))
            raise ApiError(f"the export failed: {' '.join(fields[1:])}")
        out.write(line)
    out.flush()


def _list(c: Client, path: str, key: str, params: dict[str, Any], args: argparse.Namespace) -> None:
    """A list as JSON lines, or as CSV with --csv."""
    if getattr(args, "csv", False):
        with c._open("GET", path, params={**params, "format": "csv"}) as r:
            export_csv(r, sys.stdout.buffer)
    else:
        _pages(c, path, key, params, getattr(args, "limit", None))


def _jobs(c: Client, args: argparse.Namespace) -> None:
    if args.action == "list":
        path = f"/machines/{args.machine}/jobs" if args.machine else "/jobs"
        _list(c, path, "jobs", {"filter": args.filter, "order_by": args.order_by}, args)
    elif args.action == "show":
        job = c.call("GET", f"/jobs/{args.id}")
        for part, wanted in (
            ("parameters", args.parameters),
            ("code", args.code),
            ("status-history", args.history),
        ):
            if wanted:
                job[part] = c.call("GET", f"/jobs/{args.id}/{part}")["items"]
        _print(job)
    elif args.action == "metrics":
        params = {"startTime": args.start, "endTime": args.end, "interval": args.interval}
        body = c.call(
            "GET",
            f"/jobs/{args.id}/process-metrics",
            params={k: v for k, v in params.items() if v},
        )
        for point in body["metrics"]:
            print(json.dumps(point))
    elif args.action == "stop":
        if len(args.ids) == 1:
            _print(c.call("POST", f"/jobs/{args.ids[0]}:stop"))
        else:
            result = c.call("POST", "/jobs:batchStop", {"jobIds": args.ids})
            _print(result)
            if result["failed"]:
                raise ApiError(f"{len(result['failed'])} of {len(args.ids)} not stopped")
    elif args.action in ("trace", "trace-stop"):
        _job_trace(c, args)
    elif args.action == "ranks":
        body = c.call("GET", f"/jobs/{args.id}/ranks")
        if args.json:
            _print(body)
        else:
            print(ranks_table(body))


def _job_trace(c: Client, args: argparse.Namespace) -> None:
    """jobs trace / trace-stop: the job trace as JSON; with --wait, once DONE, its file."""
    if args.action == "trace":
        body: dict[str, Any] = {"monitorType": args.type}
        if args.name:
            body["name"] = args.name
        if args.window_function:
            body["window"] = {
                "function": args.window_function,
                "skip": args.skip,
                "count": args.count,
            }
        t = c.call("POST", f"/jobs/{args.id}:trace", body)
    else:
        t = c.call("POST", f"/jobs/{args.id}/traces/{args.trace}:stop")
    _print(t)
    if not args.wait:
        return
    path, deadline, state = f"/jobs/{args.id}/traces/{t['jobTraceId']}", time.monotonic(), ""
    while t["state"] not in ("DONE", "FAILED"):
        if t["state"] != state:
            state = t["state"]
            print(f"{t['jobTraceId']}: {state} {t['stateReason']}".rstrip(), file=sys.stderr)
        if time.monotonic() - deadline > args.timeout:
            raise ApiError(f"job trace {t['jobTraceId']} still {state} after {args.timeout:g}s")
        time.sleep(0.5)
        t = c.call("GET", path)
    if t["state"] == "FAILED":
        raise ApiError(f"job trace {t['jobTraceId']} failed: {t['stateReason']}")
    job = c.call("GET", f"/traces/jobs/{t['traceJobId']}")
    out = c.download(job["download_url"].removeprefix("/api/v1"), getattr(args, "output", None))
    print(f"{out} ({job['events']:,} events, {job['file_size']:,} bytes)")


RANK_COLUMNS = (
    ("RANK", "rank"),
    ("LOCAL", "localRank"),
    ("HOST", "hostname"),
    ("PID", "pid"),
    ("DEVICE", "device"),
    ("STATUS", "status"),
    ("MACHINE", "nodeId"),
    ("JOB", "jobId"),
)


def ranks_table(body: dict[str, Any]) -> str:
    """GET /jobs/{id}/ranks as text: a summary line, then one aligned row per rank."""
    world, seen, missing = body.get("worldSize"), body["ranksSeen"], body.get("missing")
    head = f"job {body['jobId']}: " + (
        f"world size {world}, {seen} rank(s) seen, {missing} missing"
        if world is not None
        else f"world size unknown, {seen} rank(s) seen"
    )
    rows = [[name for name, _ in RANK_COLUMNS]]
    for r in body["ranks"]:
        rows.append(["-" if r.get(k) is None else str(r[k]) for _, k in RANK_COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(RANK_COLUMNS))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join([head, *lines])


def devices_table(body: dict[str, Any]) -> str:
    """GET /machines/{id}/devices as text: one aligned row per device, then the libraries
    that failed."""

    def num(v: Any, div: int = 1) -> str:
        return "-" if v is None else f"{v / div:g}" if div > 1 else f"{v:g}"

    rows = [("MACHINE", "DEVICE", "NAME", "HEALTH", "UTIL%", "MEM MiB", "POWER W", "TEMP C",
             "SAMPLED")]  # fmt: skip
    for d in body["devices"]:
        used, total = d["memory_used_bytes"], d["memory_total_bytes"]
        mem = f"{num(used, 1 << 20)}/{num(total, 1 << 20)}"
        rows.append(
            (
                body["machine_id"][:12],
                f"{d['kind']}{d['index']}",
                d["name"] or "-",
                d["health"],
                num(d["utilization_pct"]),
                mem,
                num(d["power_w"]),
                num(d["temperature_c"]),
                d["sampled_at"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if body["errors"] is None:
        lines.append(f"{body['machine_id']}: its manager has sent no device sample")
    for e in body["errors"] or []:
        lines.append(f"{body['machine_id']}: {e['library']}: {e['message']}")
    return "\n".join(lines)


def _devices(c: Client, args: argparse.Namespace) -> None:
    ids = (
        [args.machine]
        if args.machine
        else [m["id"] for m in c.call("GET", "/machines")["machines"]]
    )
    for mid in ids:
        body = c.call("GET", f"/machines/{mid}/devices")
        if args.json:
            print(json.dumps(body))
        else:
            print(devices_table(body))


def _num(v: Any, div: int = 1) -> str:
    return "-" if v is None else f"{v / div:.6g}"


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _counts(by: dict[str, int]) -> str:
    return "  ".join(f"{k} {v}" for k, v in by.items())


def stats_table(body: dict[str, Any]) -> str:
    """GET /stats/cluster or /stats/machines/{id} as text: a line per figure."""
    if "machines" in body:
        head = f"machines  {body['machines']['total']}  {_counts(body['machines']['by_status'])}"
    else:
        head = f"machine  {body['machine_id']}  {body['hostname'] or '-'}  {body['status']}"
    dev, jobs = body["devices"], body["jobs"]
    mem = f"{_num(body['memory_used_bytes'], 1 << 20)}/{_num(body['memory_total_bytes'], 1 << 20)}"
    return "\n".join(
        [
            head,
            f"devices  {dev['total']}  {_counts(dev['by_kind'])}  {_counts(dev['by_health'])}",
            f"jobs  {jobs['total']}  {_counts(jobs['by_status'])}",
            f"job types  {_counts(jobs['by_type'])}",
            f"frameworks  {_counts(jobs['by_framework'])}",
            f"utilisation %  {_num(body['utilization_pct_mean'])}  temperature C  "
            f"{_num(body['temperature_c_mean'])}  power W  {_num(body['power_w_mean'])}  "
            f"memory MiB  {mem}",
        ]
    )


def top_jobs_table(body: dict[str, Any]) -> str:
    """GET /stats/jobs as text: one row per job, the most first."""
    rows = [["JOB", "NAME", "MACHINE", "STATUS", "DEVICE S", "MEM MiB", "PEAK MiB", "DEVICES"]]
    for j in body["jobs"]:
        rows.append(
            [
                j["job_id"],
                _cut(j["job_name"] or "-", 30),
                j["machine_id"][:12],
                j["status"],
                _num(j["device_seconds"]),
                _num(j["memory_bytes"], 1 << 20),
                _num(j["peak_memory_bytes"], 1 << 20),
                ",".join(f"{d['kind']}{d['index']}" for d in j["devices"]) or "-",
            ]
        )
    return _aligned(rows)


def trends_table(body: dict[str, Any]) -> str:
    """GET /stats/trends as text: one row per interval."""
    rows = [["TIME", "DEVICES", "UTIL%", "TEMP C", "MEM MiB", "JOBS"]]
    for p in body["points"]:
        rows.append(
            [
                p["time"],
                str(p["devices"]),
                _num(p["utilization_pct_mean"]),
                _num(p["temperature_c_mean"]),
                _num(p["memory_used_bytes"], 1 << 20),
                str(p["jobs_running"]),
            ]
        )
    return _aligned(rows)


def _stats(c: Client, args: argparse.Namespace) -> None:
    if args.trends:
        params = {"startTime": args.start, "endTime": args.end, "interval": args.interval}
        if args.machine:
            params["machine_id"] = args.machine
        body = c.call("GET", "/stats/trends", params={k: v for k, v in params.items() if v})
        print(json.dumps(body) if args.json else trends_table(body))
    elif args.jobs:
        params = {"order_by": args.order_by, "limit": args.limit, "machine_id": args.machine}
        body = c.call("GET", "/stats/jobs", params={k: v for k, v in params.items() if v})
        print(json.dumps(body) if args.json else top_jobs_table(body))
    else:
        path = f"/stats/machines/{args.machine}" if args.machine else "/stats/cluster"
        body = c.call("GET", path)
        print(json.dumps(body) if args.json else stats_table(body))


SEARCH_COLUMNS = ("KIND", "TITLE", "MATCHED", "ID")
_SNIPPET_WIDTH = 60


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def search_table(body: dict[str, Any]) -> str:
    """GET /search as text: one aligned row per hit, best first (kind, title, the field it
    matched in with the snippet, id)."""
    rows = [list(SEARCH_COLUMNS)]
    for h in body["results"]:
        where = f"{h['matched_field']}: {_cut(h['snippet'], _SNIPPET_WIDTH)}"
        rows.append([h["kind"], _cut(h["title"], 40), where, h["id"]])
    if len(rows) == 1:
        return "no match"
    widths = [max(len(row[i]) for row in rows) for i in range(len(SEARCH_COLUMNS))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _search(c: Client, args: argparse.Namespace) -> None:
    kinds = ",".join(k for given in args.kind or [] for k in given.split(","))
    params = {"q": args.query, "page_size": args.limit, **({"kinds": kinds} if kinds else {})}
    body = c.call("GET", "/search", params=params)
    if args.json:
        _print(body)
    else:
        print(search_table(body))


def _user_id(c: Client, user: str) -> str:
    if "@" not in user:
        return user
    found = c.call("GET", "/users", params={"filter": f"email = {json.dumps(user.lower())}"})
    if not found["users"]:
        raise ApiError(f"no user has the e-mail {user}")
    return str(found["users"][0]["user_id"])


def _users(c: Client, args: argparse.Namespace) -> None:
    if args.action == "list":
        _pages(c, "/users", "users", {})
    elif args.action == "invite":
        _print(c.call("POST", "/users:invite", {"email": args.email, "role": args.role}))
    elif args.action == "set-role":
        _print(c.call("PATCH", f"/users/{_user_id(c, args.user)}", {"role": args.role}))


def run(args: argparse.Namespace) -> int:
    c = Client(args.url, args.ca_file)
    if args.cmd == "register":
        pw = getpass.getpass("password: ")
        body = {"email": args.email, "password": pw, "display_name": args.name}
        if args.invite:
            body["invite_token"] = args.invite
        _print(c.call("POST", "/auth:register", body, auth=False))
        c.login(args.email, pw)
    elif args.cmd == "login":
        c.login(args.email, getpass.getpass("password: "))
        print("logged in")
    elif args.cmd == "logout":
        c.call("POST", "/auth:logout")
        c.creds = {}
        c._save()
    elif args.cmd == "machines":
        if args.id:
            _print(c.call("GET", f"/machines/{args.id}"))
        elif args.csv:
            _list(c, "/machines", "machines", {}, args)
        else:
            _print(c.call("GET", "/machines"))
    elif args.cmd == "monitors":
        base = f"/machines/{c.machine(args.machine)}/monitors"
        if args.action == "list" and args.csv:
            _list(c, base, "monitors", {}, args)
        elif args.action == "list":
            _print(c.call("GET", base))
        elif args.action == "start":
            target = {"pid": args.pid, "library_path": args.library, "comm": args.comm}
            m = c.call(
                "POST",
                base,
                {
                    "monitor_type": args.type,
                    "display_name": args.name,
                    "target": {k: v for k, v in target.items() if v},
                },
            )
            if args.wait:
                m = _wait(c, c.machine(args.machine), m["id"], "RUNNING", args.timeout)
            _print(m)
        elif args.action == "get":
            _print(c.call("GET", f"{base}/{args.id}"))
        elif args.action == "stop":
            c.call("DELETE", f"{base}/{args.id}")
            print(f"monitor {args.id} stopped")
        elif args.action == "wait":
            _print(_wait(c, c.machine(args.machine), args.id, args.status, args.timeout))
    elif args.cmd == "events":
        params = {"filter": args.filter, "order_by": args.order_by, "fields": args.fields}
        _list(c, "/events", "events", params, args)
    elif args.cmd == "devices":
        _devices(c, args)
    elif args.cmd == "stats":
        _stats(c, args)
    elif args.cmd == "users":
        _users(c, args)
    elif args.cmd == "jobs":
        _jobs(c, args)
    elif args.cmd == "audit":
        _pages(c, "/auditLogs", "audit_logs", {"filter": args.filter}, args.limit)
    elif args.cmd == "traces":
        _traces(c, args)
    elif args.cmd == "search":
        _search(c, args)
    return 0


def _csv_flag(p: argparse.ArgumentParser, limit: bool = False) -> None:
    """--csv on a list command; with limit, also its --limit (not with --csv: the export is
    every row)."""
    group = p.add_mutually_exclusive_group() if limit else p
    if limit:
        group.add_argument("--limit", type=int)
    group.add_argument("--csv", action="store_true", help="every row as CSV (a header first)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xputrace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=os.environ.get("XPUTRACE_URL", "http://127.0.0.1:8080"))
    p.add_argument(
        "--ca-file",
        default=os.environ.get("XPUTRACE_CA_FILE"),
        help="PEM certificate(s) to trust for an https:// --url",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("email")
    r.add_argument("--name", default="")
    r.add_argument("--invite", help="the invite token an admin gave you")
    sub.add_parser("login").add_argument("email")
    sub.add_parser("logout")
    mach = sub.add_parser("machines")
    mach.add_argument("id", nargs="?")
    _csv_flag(mach)
    dv = sub.add_parser("devices", help="accelerators: inventory, health, latest values")
    dv.add_argument("--machine", help="only this machine (default: every machine)")
    dv.add_argument("--json", action="store_true", help="the API's answer, one line a machine")
    sa = sub.add_parser("stats", help="the cluster's (or a machine's) figures, top jobs, trends")
    sa.add_argument("--machine", help="only this machine")
    what = sa.add_mutually_exclusive_group()
    what.add_argument("--jobs", action="store_true", help="the jobs that held the most")
    what.add_argument("--trends", action="store_true", help="the figures per interval")
    sa.add_argument("--order-by", choices=["device_time", "memory", "peak_memory"])
    sa.add_argument("--limit", type=int)
    sa.add_argument("--start", help="--trends: RFC 3339 (default: an hour before --end)")
    sa.add_argument("--end", help="--trends: RFC 3339 (default: now)")
    sa.add_argument("--interval", choices=["1m", "5m", "1h"])
    sa.add_argument("--json", action="store_true", help="the API's answer")
    m = sub.add_parser("monitors")
    m.add_argument("--machine")
    m.set_defaults(csv=False)  # bare `monitors`: list
    ms = m.add_subparsers(dest="action")
    _csv_flag(ms.add_parser("list"))
    st = ms.add_parser("start")
    st.add_argument("--type", default="CUDA")
    st.add_argument("--pid", type=int)
    st.add_argument("--library")
    st.add_argument("--comm")
    st.add_argument("--name", default="")
    st.add_argument("--wait", action="store_true")
    st.add_argument("--timeout", type=float, default=60)
    for name in ("get", "stop"):
        ms.add_parser(name).add_argument("id")
    w = ms.add_parser("wait")
    w.add_argument("id")
    w.add_argument("--status", default="RUNNING")
    w.add_argument("--timeout", type=float, default=60)
    e = sub.add_parser("events")
    e.add_argument("--filter", default="")
    e.add_argument("--order-by")
    e.add_argument("--fields")
    _csv_flag(e, limit=True)
    j = sub.add_parser("jobs", help="AI jobs on every machine: list, show, stop, ranks, trace")
    j.set_defaults(filter="", order_by=None, machine=None, limit=None, csv=False)  # bare: list
    js = j.add_subparsers(dest="action")
    jl = js.add_parser("list")
    jl.add_argument(
        "--filter", default="", help="AIP-160, e.g. status = 'running' AND framework = 'torch'"
    )
    jl.add_argument("--order-by")
    jl.add_argument("--machine", help="only this machine's jobs")
    _csv_flag(jl, limit=True)
    show = js.add_parser("show")
    show.add_argument("id")
    show.add_argument("--parameters", action="store_true")
    show.add_argument("--code", action="store_true")
    show.add_argument("--history", action="store_true", help="its status history")
    js.add_parser(
        "stop", help="SIGTERM, then SIGKILL after a grace period (operators)"
    ).add_argument("ids", nargs="+", metavar="ID")
    tr = js.add_parser("trace", help="a monitor on every rank of the job, one trace (operators)")
    tr.add_argument("id")
    tr.add_argument("--type", required=True, choices=("CUDA", "ACL", "PYTHON", "SYSCALL"))
    tr.add_argument("--window-function", help="trace only some calls of this Python function")
    tr.add_argument("--skip", type=int, default=0, help="with --window-function: calls skipped")
    tr.add_argument("--count", type=int, default=1, help="with --window-function: calls kept")
    tr.add_argument("--name", help="the trace's name")
    tr.add_argument("--wait", action="store_true", help="wait for the trace, then download it")
    tr.add_argument("-o", "--output", type=Path, help="with --wait: where to save the trace")
    tr.add_argument("--timeout", type=float, default=86_400)
    ts = js.add_parser("trace-stop", help="stop a job trace's monitors together (operators)")
    ts.add_argument("id")
    ts.add_argument("trace")
    ts.add_argument("--wait", action="store_true", help="wait for the trace, then download it")
    ts.add_argument("-o", "--output", type=Path, help="with --wait: where to save the trace")
    ts.add_argument("--timeout", type=float, default=3600)
    ranks = js.add_parser("ranks", help="a distributed job's ranks: machine, pid, rank, device")
    ranks.add_argument("id")
    ranks.add_argument("--json", action="store_true", help="the API's body, as JSON")
    jm = js.add_parser("metrics", help="CPU %%, memory, threads, I/O, open files per interval")
    jm.add_argument("id")
    jm.add_argument("--start", help="RFC 3339 (default: the job's start)")
    jm.add_argument("--end", help="RFC 3339 (default: the job's end, or now)")
    jm.add_argument("--interval", help="e.g. 10s, 1m, 5m, 1h (default: fits the range)")
    u = sub.add_parser("users", help="list users, invite, set roles (admins)")
    us = u.add_subparsers(dest="action")
    us.add_parser("list")
    inv = us.add_parser("invite")
    inv.add_argument("email")
    inv.add_argument("--role", choices=ROLES, default="viewer")
    sr = us.add_parser("set-role")
    sr.add_argument("user", help="e-mail or user id")
    sr.add_argument("role", choices=ROLES)
    a = sub.add_parser("audit", help="the audit log of control actions (admins)")
    a.add_argument("--filter", default="", help="AIP-160, e.g. action = 'STOP_MONITOR'")
    a.add_argument("--limit", type=int)
    se = sub.add_parser("search", help="machines, jobs, monitors and your traces, best first")
    se.add_argument(
        "query", help='words, "a phrase", OR; lr=0.1 and paths work; -- before a flag: -- --lr'
    )
    se.add_argument(
        "--kind",
        action="append",
        help="machine, job, monitor or trace (repeat, or comma-separated); default: all",
    )
    se.add_argument("--limit", type=int, default=20, help="hits shown, at most 100 (20)")
    se.add_argument("--json", action="store_true", help="the API's answer as JSON")
    t = sub.add_parser("traces").add_subparsers(dest="action", required=True)
    g = t.add_parser("generate", help="generate a trace of the events matching a filter")
    g.add_argument("--filter", required=True, help="AIP-160 over the events fields ('' = all)")
    g.add_argument("--name", required=True, help="trace name (the download's file name)")
    g.add_argument("--format", choices=("perfetto", "chrome"), default="perfetto")
    g.add_argument("--gzip", action="store_true")
    g.add_argument("--wait", action="store_true", help="show progress, then download the trace")
    g.add_argument("-o", "--output", type=Path, help="with --wait: where to save the trace")
    g.add_argument("--timeout", type=float, default=3600)
    t.add_parser("status").add_argument("job")
    d = t.add_parser("download")
    d.add_argument("trace")
    d.add_argument("-o", "--output", type=Path)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd in ("monitors", "users", "jobs") and not args.action:
        args.action = "list"
    try:
        return run(args)
    except ApiError as e:
        print(f"xputrace: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
