"""One process seen through /proc, pinned to that process even when its pid is reused.

``ProcessHandle`` opens ``/proc/<pid>`` as a directory and checks the start time (field 22 of
``stat``) against the identity it was asked for; every later read goes through that directory
descriptor, which keeps naming the same task: once it has exited, reads fail (``ProcessGone``)
instead of reaching a newer process that got the same pid.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Creds", "ProcessGone", "ProcessHandle", "Stat", "parse_stat"]

#: How much of a /proc file we read at most (maps of a large process are a few hundred KiB).
PROC_READ_LIMIT = 4 << 20


class ProcessGone(Exception):
    """The process exited, or its pid now names another process."""


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat a job needs."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    utime: int
    stime: int
    start_ticks: int


@dataclass(frozen=True)
class Creds:
    """Who the process is to the file system (the fs uid/gid and its groups)."""

    uid: int
    gid: int
    groups: frozenset[int]


def parse_stat(data: bytes) -> Stat:
    """Parse /proc/<pid>/stat; the comm may hold spaces and parentheses."""
    head, _, rest = data.rpartition(b")")
    pid_text, _, comm = head.partition(b" (")
    f = rest.split()
    # f[0] is field 3 (state): field n is f[n - 3].
    return Stat(
        pid=int(pid_text),
        comm=comm.decode(errors="replace"),
        state=f[0].decode(),
        ppid=int(f[1]),
        pgid=int(f[2]),
        utime=int(f[11]),
        stime=int(f[12]),
        start_ticks=int(f[19]),
    )


class ProcessHandle:
    """/proc/<pid> of one process, identified by (pid, start_ticks)."""

    def __init__(
        self, pid: int, start_ticks: int | None = None, proc_root: Path = Path("/proc")
    ) -> None:
        try:
            self.fd = os.open(proc_root / str(pid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise ProcessGone(f"pid {pid}: {e.strerror}") from e
        try:
            self.stat = parse_stat(self.read("stat"))
        except (ProcessGone, ValueError, IndexError) as e:
            os.close(self.fd)
            raise ProcessGone(f"pid {pid}: unreadable stat") from e
        if start_ticks is not None and self.stat.start_ticks != start_ticks:
            os.close(self.fd)
            raise ProcessGone(f"pid {pid} started at {self.stat.start_ticks}, not {start_ticks}")
        self.pid = pid

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ProcessHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, name: str, limit: int = PROC_READ_LIMIT) -> bytes:
        """Up to limit bytes of /proc/<pid>/<name>."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise ProcessGone(f"{name}: {e.strerror}") from e
        try:
            chunks: list[bytes] = []
            left = limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError as e:
            raise ProcessGone(f"{name}: {e.strerror}") from e
        finally:
            os.close(fd)

    def read_into(self, name: str, buf: bytearray) -> int:
        """Fill buf from /proc/<pid>/<name> (no copy kept elsewhere); the bytes used."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise ProcessGone(f"{name}: {e.strerror}") from e
        try:
            view = memoryview(buf)
            used = 0
            while used < len(buf):
                n = os.readv(fd, [view[used:]])
                if n == 0:
                    break
                used += n
            return used
        except OSError as e:
            raise ProcessGone(f"{name}: {e.strerror}") from e
        finally:
            os.close(fd)

    def readlink(self, name: str) -> str | None:
        try:
            return os.readlink(name, dir_fd=self.fd)
        except OSError:
            return None

    def cmdline(self) -> list[str]:
        data = self.read("cmdline", 1 << 20)
        return (
            [a.decode(errors="surrogateescape") for a in data.rstrip(b"\0").split(b"\0")]
            if data
            else []
        )

    def mapped_files(self, hint: re.Pattern[bytes] | None = None) -> list[str]:
        """Paths of the files the process maps, in first-mapped order, each once; [] when
        hint is given and found nowhere in them (a cheaper test than parsing)."""
        seen: dict[str, None] = {}
        data = self.read("maps")
        if hint is not None and hint.search(data) is None:
            return []
        for line in data.splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith(b"/"):
                seen.setdefault(parts[5].decode(errors="surrogateescape"), None)
        return list(seen)

    def open_files(self, limit: int = 4096) -> list[str]:
        """Targets of /proc/<pid>/fd/* that are paths (not sockets, pipes), at most limit."""
        try:
            fd = os.open("fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            return []
        out: list[str] = []
        try:
            for name in os.listdir(fd)[:limit]:
                try:
                    target = os.readlink(name, dir_fd=fd)
                except OSError:
                    continue
                if target.startswith("/"):
                    out.append(target)
        finally:
            os.close(fd)
        return out

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.read("status").decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            out[key] = value.strip()
        return out

    def creds(self) -> Creds:
        status = self.status()
        uid = int(status["Uid"].split()[3])
        gid = int(status["Gid"].split()[3])
        groups = frozenset(int(g) for g in status.get("Groups", "").split())
        return Creds(uid=uid, gid=gid, groups=groups | {gid})

    def open_root(self) -> int:
        """An O_PATH descriptor of the process's root directory (the caller closes it)."""
        try:
            return os.open("root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as e:
            raise ProcessGone(f"root: {e.strerror}") from e
