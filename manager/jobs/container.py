"""Whether a process runs in a container, and its name.

A process is in a container when its cgroup path names a container runtime's id (Docker,
containerd/CRI, CRI-O, Podman: a 64-hex id) or when its mount namespace is not the
manager's. The name is the container's /etc/hostname (Docker and Kubernetes write the
container id or the pod name there), read through its root, else the short id.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from manager.jobs.procfs import ProcessGone, ProcessHandle
from manager.jobs.rootfs import ConfinedRoot, Refused

__all__ = ["container_of", "own_mount_namespace", "parse_cgroup"]

_ID = re.compile(
    r"(?:^|[/-])(?:(docker|cri-containerd|crio|libpod|containerd)[-:/])?"
    r"([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RUNTIMES = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}


def parse_cgroup(text: str) -> dict[str, str | None]:
    """From /proc/<pid>/cgroup: the container id, runtime and cgroup path, the pod uid."""
    out: dict[str, str | None] = {"id": None, "runtime": None, "cgroup": None, "podUid": None}
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        m = _ID.search(path)
        if m:
            out.update(id=m.group(2), runtime=_RUNTIMES.get(m.group(1) or ""), cgroup=path)
            break
    pod = _POD.search(text)
    if pod:
        out["podUid"] = pod.group(1).replace("_", "-")
        out["runtime"] = out["runtime"] or "kubernetes"
    return out


def container_of(
    proc: ProcessHandle, root: ConfinedRoot, own_mnt_ns: str | None
) -> dict[str, Any] | None:
    """The container the process runs in, or None for the host's own processes."""
    try:
        cgroup = proc.read("cgroup", 64 << 10).decode(errors="replace")
    except ProcessGone:
        cgroup = ""
    mnt_ns = proc.readlink("ns/mnt")
    found = parse_cgroup(cgroup)
    cid = found["id"]
    if cid is None and (mnt_ns is None or mnt_ns == own_mnt_ns):
        return None
    name = None
    if mnt_ns != own_mnt_ns:  # its own /etc/hostname, not the host's
        with contextlib.suppress(Refused):
            name = root.read("/etc/hostname", 256).content.decode(errors="replace").strip()
    return {**found, "name": name or (cid[:12] if cid else None), "mountNamespace": mnt_ns}


def own_mount_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/mnt")
    except OSError:
        return None
