"""Reading a process's files as the process would see them, without lending it root's reach.

The manager runs as root; the paths it reads come from the target (its arguments, its cwd, its
symlinks). Each read defends against the target steering root at files it could not read:

- **Confined to the target's root.** Paths resolve with openat2(RESOLVE_IN_ROOT) from an
  O_PATH descriptor of ``/proc/<pid>/root``: absolute symlinks and ``..`` stay inside that root
  as they would under chroot, so ``config.yaml -> /etc/shadow`` in a container names the
  container's /etc/shadow, never the host's. RESOLVE_NO_MAGICLINKS refuses ``/proc/*/root``
  and ``/proc/*/fd/*`` links on the way, the classic escape from such a root.
- **Only regular files, never opened otherwise.** The path is first opened O_PATH (no open
  side effects: a FIFO cannot block us, a tape device is not rewound); only a regular file is
  reopened for reading, through our own ``/proc/self/fd/N``, non-blocking.
- **Only what the target could read itself.** The file's mode must grant read to the target's
  fs uid, one of its groups, or others (a root target may read anything); when the target's
  root is the host's, every directory above the file must grant it search too. POSIX ACLs are
  not consulted: a file an ACL alone opens to the target is refused, never the reverse.
- **Bounded.** At most ``limit`` bytes are read; the caller learns whether it was cut.
"""

from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass

from manager.jobs.procfs import Creds

__all__ = ["ConfinedRoot", "FileRead", "Refused"]

_SYS_OPENAT2 = 437  # the same on every architecture (new syscalls share one table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    """The file is not there, not a regular file, or not readable by the target."""


@dataclass(frozen=True)
class FileRead:
    path: str  # as the target names it, inside its root
    content: bytes
    size: int  # the file's size
    truncated: bool


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags=flags, mode=0, resolve=resolve)
    fd = int(
        _libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _may(st: os.stat_result, creds: Creds, want: int) -> bool:
    """Whether mode bits grant creds the access want (4 read, 1 search), like the kernel."""
    if creds.uid == 0:
        return True
    if st.st_uid == creds.uid:
        return bool((st.st_mode >> 6) & want == want)
    if st.st_gid in creds.groups:
        return bool((st.st_mode >> 3) & want == want)
    return bool(st.st_mode & want == want)


class ConfinedRoot:
    """A process's root directory, for reads on behalf of (and as if by) that process.

    root_fd: an O_PATH descriptor of the root (``ProcessHandle.open_root``), owned by this
    object. host_root: whether that root is the manager's own, so host paths of the opened
    files name their real ancestors.
    """

    def __init__(self, root_fd: int, creds: Creds, host_root: bool) -> None:
        self.root_fd = root_fd
        self.creds = creds
        self.host_root = host_root

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __enter__(self) -> ConfinedRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def join(cwd: str | None, path: str) -> str:
        """path as the target means it: relative paths are from its cwd."""
        if path.startswith("/") or not cwd:
            return path
        return cwd.rstrip("/") + "/" + path

    def _open_path(self, path: str) -> tuple[int, os.stat_result]:
        try:
            fd = _openat2(
                self.root_fd,
                path,
                os.O_PATH | os.O_CLOEXEC,
                _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS,
            )
        except OSError as e:
            raise Refused(f"{path}: {e.strerror}") from e
        return fd, os.fstat(fd)

    def _ancestors_searchable(self, fd: int) -> bool:
        if not self.host_root or self.creds.uid == 0:
            return True
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        parent = os.path.dirname(real)
        while True:
            try:
                if not _may(os.stat(parent), self.creds, 1):
                    return False
            except OSError:
                return False
            if parent == "/":
                return True
            parent = os.path.dirname(parent)

    def stat(self, path: str) -> os.stat_result:
        fd, st = self._open_path(path)
        os.close(fd)
        return st

    def read(self, path: str, limit: int) -> FileRead:
        """Up to limit bytes of the regular file path (inside the root)."""
        fd, st = self._open_path(path)
        try:
            if not stat.S_ISREG(st.st_mode):
                raise Refused(f"{path}: not a regular file")
            if not _may(st, self.creds, 4) or not self._ancestors_searchable(fd):
                raise Refused(f"{path}: the process itself may not read it")
            try:
                rfd = os.open(
                    f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
                )
            except OSError as e:
                raise Refused(f"{path}: {e.strerror}") from e
        finally:
            os.close(fd)
        try:
            chunks: list[bytes] = []
            left = limit + 1
            while left > 0:
                chunk = os.read(rfd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as e:
            raise Refused(f"{path}: {e.strerror}") from e
        finally:
            os.close(rfd)
        data = b"".join(chunks)
        return FileRead(
            path=path, content=data[:limit], size=st.st_size, truncated=len(data) > limit
        )

    def listdir(self, path: str) -> list[str]:
        """Names in the directory path, when the target may read it; [] otherwise."""
        try:
            fd, st = self._open_path(path)
        except Refused:
            return []
        try:
            if not stat.S_ISDIR(st.st_mode) or not _may(st, self.creds, 5):
                return []
            try:
                dfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return []
        finally:
            os.close(fd)
        try:
            return os.listdir(dfd)
        finally:
            os.close(dfd)
