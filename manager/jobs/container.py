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

__all__ = ["container_of", "own_mount_namespace"]

_ID = re.compile(r"(?:^|[/-])(?:(docker|cri-containerd|crio|libpod|containerd)[-:/])?"
                 r"([0-9a-f]{64})(?:\.scope)?(?:/|$)")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RUNTIMES = {"docker": "docker", "cri-containerd": "containerd", "containerd": "containerd",
             "crio": "cri-o", "libpod": "podman"}


def container_of(proc: ProcessHandle, root: ConfinedRoot,
                 own_mnt_ns: str | None) -> dict[str, Any] | None:
    """The container the process runs in, or None for the host's own processes."""
    try:
        cgroup = proc.read("cgroup", 64 << 10).decode(errors="replace")
    except ProcessGone:
        cgroup = ""
    mnt_ns = proc.readlink("ns/mnt")
    cid = runtime = None
    cgroup_path = None
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        m = _ID.search(path)
        if m:
            cid, runtime, cgroup_path = m.group(2), _RUNTIMES.get(m.group(1) or ""), path
            break
    if cid is None and (mnt_ns is None or mnt_ns == own_mnt_ns):
        return None
    pod = _POD.search(cgroup)
    if pod and runtime is None:
        runtime = "kubernetes"
    name = None
    with contextlib.suppress(Refused):
        name = root.read("/etc/hostname", 256).content.decode(errors="replace").strip() or None
    if name is None or (mnt_ns == own_mnt_ns):
        name = cid[:12] if cid else None
    return {"id": cid, "name": name, "runtime": runtime, "cgroup": cgroup_path,
            "podUid": pod.group(1).replace("_", "-") if pod else None,
            "mountNamespace": mnt_ns}


def own_mount_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/mnt")
    except OSError:
        return None
