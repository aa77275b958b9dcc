"""Reads confined to a process's root and to what the process itself may read."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from manager.jobs.procfs import Creds
from manager.jobs.rootfs import ConfinedRoot, Refused

ROOT_CREDS = Creds(uid=0, gid=0, groups=frozenset({0}))
USER = Creds(uid=4321, gid=4321, groups=frozenset({4321}))


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A root directory as a container would have, next to a host file it must not reach."""
    (tmp_path / "host-secret").write_text("host only\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box-1\n")
    (root / "work").mkdir()
    (root / "work" / "config.json").write_text('{"a": 1}')
    os.symlink("/etc/hostname", root / "work" / "abs-link")
    os.symlink(str(tmp_path / "host-secret"), root / "work" / "host-link")
    os.symlink("../../../host-secret", root / "work" / "dotdot-link")
    return root


def confined(root: Path, creds: Creds = ROOT_CREDS, host_root: bool = False) -> ConfinedRoot:
    return ConfinedRoot(os.open(root, os.O_PATH | os.O_DIRECTORY), creds, host_root)


@pytest.fixture
def croot(box: Path) -> Iterator[ConfinedRoot]:
    with confined(box) as r:
        yield r


def test_reads_inside_the_root(croot: ConfinedRoot) -> None:
    got = croot.read("/work/config.json", 100)
    assert (got.content, got.size, got.truncated) == (b'{"a": 1}', 8, False)
    assert croot.read(croot.join("/work", "config.json"), 3).content == b'{"a'
    assert croot.read("/work/config.json", 3).truncated


def test_absolute_symlink_resolves_in_the_root(croot: ConfinedRoot) -> None:
    assert croot.read("/work/abs-link", 100).content == b"box-1\n"  # its /etc, not the host's


def test_symlinks_out_of_the_root_do_not_escape(croot: ConfinedRoot) -> None:
    for path in ("/work/host-link", "/work/dotdot-link", "/../host-secret", "../host-secret"):
        with pytest.raises(Refused):
            croot.read(path, 100)


def test_magic_links_are_refused(box: Path) -> None:
    proc = box / "proc"
    proc.mkdir()
    os.symlink("/proc", box / "hostproc")  # inside the root: box/proc, an empty directory
    with confined(Path("/")) as host:  # the host's own root, where /proc is real
        assert host.read("/proc/self/stat", 10).content  # a plain proc file is fine
        with pytest.raises(Refused):
            host.read("/proc/self/root/etc/hostname", 100)  # a magic link on the way


def test_only_regular_files(box: Path, croot: ConfinedRoot) -> None:
    os.mkfifo(box / "work" / "fifo")  # would block a plain open for reading
    os.mknod(box / "work" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for path in ("/work/fifo", "/work/null", "/work"):
        with pytest.raises(Refused, match="not a regular file"):
            croot.read(path, 100)


def test_only_what_the_process_may_read(box: Path) -> None:
    private = box / "work" / "private.yaml"
    private.write_text("k: v\n")
    os.chmod(private, 0o600)  # root's
    mine = box / "work" / "mine.yaml"
    mine.write_text("k: v\n")
    os.chmod(mine, 0o600)
    os.chown(mine, USER.uid, USER.gid)
    with confined(box, USER) as r:
        with pytest.raises(Refused, match="may not read"):
            r.read("/work/private.yaml", 100)
        assert r.read("/work/mine.yaml", 100).content == b"k: v\n"
        assert r.read("/work/config.json", 100).content  # 0644: others may read


def test_directories_above_must_be_searchable() -> None:
    # Under /tmp itself: pytest's own tmp directories are root's 0700, which would hide the
    # difference this test is about.
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="xpu-rootfs-"))
    try:
        os.chmod(base, 0o755)
        for name, mode in (("locked", 0o700), ("open", 0o755)):
            (base / name).mkdir(mode=mode)
            os.chmod(base / name, mode)
            (base / name / "c.json").write_text("{}")
            os.chmod(base / name / "c.json", 0o644)
        with confined(Path("/"), USER, host_root=True) as r:
            assert r.read(str(base / "open" / "c.json"), 100).content == b"{}"
            with pytest.raises(Refused, match="may not read"):
                r.read(str(base / "locked" / "c.json"), 100)
        with confined(Path("/"), ROOT_CREDS, host_root=True) as r:
            assert r.read(str(base / "locked" / "c.json"), 100).content == b"{}"
    finally:
        shutil.rmtree(base)
