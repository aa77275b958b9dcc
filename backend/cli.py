"""xputrace: the command line client of the REST API.

    xputrace register EMAIL | login EMAIL | logout
    xputrace machines [ID]
    xputrace monitors [list] | start --pid PID [--library PATH] [--wait] | get ID | stop ID
                      | wait ID [--status RUNNING]
    xputrace events [--filter F] [--order-by O] [--fields F] [--limit N]

--url (or XPUTRACE_URL) picks the backend, default http://127.0.0.1:8080. --machine picks
the machine for monitors; with one machine known it is the default. Tokens are kept in
~/.config/xputrace/credentials.json (0600) and refreshed when they expire. Events print as
JSON lines, every page fetched for you.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["main"]

CREDENTIALS = Path.home() / ".config" / "xputrace" / "credentials.json"


class ApiError(Exception):
    pass


class Client:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
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

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
             auth: bool = True, retry: bool = True) -> Any:
        url = f"{self.url}/api/v1{path}"
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        req = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Content-Type", "application/json")
        if auth and self.creds.get("access_token"):
            req.add_header("Authorization", f"Bearer {self.creds['access_token']}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            refreshable = e.code == 401 and auth and retry and self.creds.get("refresh_token")
            if refreshable and self._refresh():
                return self.call(method, path, body, params, auth, retry=False)
            try:
                msg = json.loads(e.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = e.reason
            raise ApiError(f"{method} {path}: {e.code} {msg}") from None
        except urllib.error.URLError as e:
            raise ApiError(f"cannot reach {self.url}: {e.reason}") from None

    def _refresh(self) -> bool:
        try:
            tok = self.call("POST", "/auth:refreshToken",
                            {"refresh_token": self.creds["refresh_token"]}, auth=False)
        except ApiError:
            return False
        self.creds.update(access_token=tok["access_token"], refresh_token=tok["refresh_token"])
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


def run(args: argparse.Namespace) -> int:
    c = Client(args.url)
    if args.cmd == "register":
        pw = getpass.getpass("password: ")
        _print(c.call("POST", "/auth:register", {"email": args.email, "password": pw,
                                                 "display_name": args.name}, auth=False))
        c.login(args.email, pw)
    elif args.cmd == "login":
        c.login(args.email, getpass.getpass("password: "))
        print("logged in")
    elif args.cmd == "logout":
        c.call("POST", "/auth:logout")
        c.creds = {}
        c._save()
    elif args.cmd == "machines":
        _print(c.call("GET", f"/machines/{args.id}") if args.id else c.call("GET", "/machines"))
    elif args.cmd == "monitors":
        base = f"/machines/{c.machine(args.machine)}/monitors"
        if args.action == "list":
            _print(c.call("GET", base))
        elif args.action == "start":
            target = {"pid": args.pid, "library_path": args.library, "comm": args.comm}
            m = c.call("POST", base, {"monitor_type": args.type, "display_name": args.name,
                                      "target": {k: v for k, v in target.items() if v}})
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
        token, n = None, 0
        while True:
            page = c.call("GET", "/events", params={
                "filter": args.filter, "order_by": args.order_by, "fields": args.fields,
                "page_size": 1000, "page_token": token})
            for e in page["events"]:
                if args.limit and n >= args.limit:
                    return 0
                print(json.dumps(e))
                n += 1
            token = page.get("next_page_token")
            if not token:
                return 0
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xputrace", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("XPUTRACE_URL", "http://127.0.0.1:8080"))
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register")
    r.add_argument("email")
    r.add_argument("--name", default="")
    sub.add_parser("login").add_argument("email")
    sub.add_parser("logout")
    sub.add_parser("machines").add_argument("id", nargs="?")
    m = sub.add_parser("monitors")
    m.add_argument("--machine")
    ms = m.add_subparsers(dest="action")
    ms.add_parser("list")
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
    e.add_argument("--limit", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "monitors" and not args.action:
        args.action = "list"
    try:
        return run(args)
    except ApiError as e:
        print(f"xputrace: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
