"""Which processes a manager answers for: with ``--jobs-root-pid``, one process and its
descendants (a manager in a container, or responsible for one launcher's process tree).

A process is judged once, when it is discovered (its procwatch fork or exec, or a scan): it is
in scope when the root, or a process judged in scope, is among its ancestors. The walk up the
ppid chain stops at the first process already judged, so a process forked by one already known
costs a dictionary look-up (procwatch names the parent with its start time); only an unknown
ancestor costs a read of ``/proc/<pid>/stat``. Judgements are keyed by (pid, start time), so a
reused pid is never mistaken for the process that held it before, and a process stays in scope
when the root exits and it is adopted elsewhere (its later children are in scope too).

Judgements are kept in two bounded LRU maps, in scope and out of scope, so that an exec storm
outside the scope never pushes out the processes inside it. What cannot be judged is out of
scope: a process whose parent has already exited, unseen (it lived less than procwatch's hold of
100 ms, or its exec was missed), has lost the chain to the root.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from manager.jobs.procfs import Stat, parse_stat

__all__ = ["Scope"]

Key = tuple[int, int]  # (pid, start ticks)

#: A chain longer than this is a loop (a pid reused within the walk): out of scope.
MAX_DEPTH = 4096


class Scope:
    """The process ``root_pid`` (as it runs when the scope is made) and its descendants."""

    def __init__(
        self,
        root_pid: int,
        proc_root: Path = Path("/proc"),
        *,
        keep_inside: int = 65_536,
        keep_outside: int = 16_384,
    ) -> None:
        self.root_pid = root_pid
        self.proc_root = proc_root
        self.keep = {True: keep_inside, False: keep_outside}
        self._judged: dict[bool, OrderedDict[Key, None]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }
        self.reads = 0  # /proc/<pid>/stat read while walking: what the cache saves
        root = self._stat(root_pid)
        #: None when the root is not running: then nothing is in scope
        self.root: Key | None = (root_pid, root.start_ticks) if root is not None else None

    def _stat(self, pid: int) -> Stat | None:
        self.reads += 1
        try:
            with open(self.proc_root / str(pid) / "stat", "rb") as f:
                return parse_stat(f.read())
        except (OSError, ValueError, IndexError):
            return None

    def _verdict(self, key: Key) -> bool | None:
        if key == self.root:
            return True
        for inside, keys in self._judged.items():
            if key in keys:
                keys.move_to_end(key)
                return inside
        return None

    def _remember(self, key: Key, inside: bool) -> None:
        keys = self._judged[inside]
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self.keep[inside]:
            keys.popitem(last=False)

    def contains(
        self,
        pid: int,
        start_ticks: int,
        ppid: int,
        parent_start_ticks: int | None = None,
        known: Mapping[int, Stat] | None = None,
    ) -> bool:
        """Whether the process (pid, start_ticks), child of ppid (started at
        parent_start_ticks when known), is in scope. known: stats already read (a scan's),
        used before /proc."""
        key, parent = (pid, start_ticks), (ppid, parent_start_ticks)
        path: list[Key] = []
        while (inside := self._verdict(key)) is None:
            path.append(key)
            ppid, pstart = parent
            if ppid <= 0 or len(path) > MAX_DEPTH:
                inside = False
                break
            if pstart is not None and (inside := self._verdict((ppid, pstart))) is not None:
                break
            st = known.get(ppid) if known is not None else None
            if st is None or (pstart is not None and st.start_ticks != pstart):
                st = self._stat(ppid)
            if st is None or (pstart is not None and st.start_ticks != pstart):
                inside = False  # its parent has exited: the chain to the root is lost
                break
            key, parent = (ppid, st.start_ticks), (st.ppid, None)
        for k in path:
            self._remember(k, inside)
        return inside
