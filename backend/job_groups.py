"""Which distributed job a process is a rank of: its launcher's identity, read from the
environment variables its manager reports (manager.jobs.environ's allow-list), and what a
distributed job's status is, from its ranks'. Pure: no database, no I/O.

Launcher identities, first match wins:

- ``slurm``: ``SLURM_JOB_ID`` (with ``SLURM_STEP_ID``, and ``SLURM_CLUSTER_NAME`` when set):
  every task of a step, on every node. Rank: ``RANK`` (a torchrun worker inside the step),
  else ``SLURM_PROCID``; world: ``WORLD_SIZE``, else ``SLURM_NTASKS``.
- ``torchelastic``: ``TORCHELASTIC_RUN_ID`` (torchrun's ``--rdzv-id``). torchrun's default id
  is ``none`` on every node of every job: then the rendezvous address decides, as below.
- ``ray``: ``RAY_JOB_ID``.
- ``kubernetes``: an Indexed Job's pod: ``JOB_COMPLETION_INDEX`` with ``HOSTNAME`` being
  ``<job>-<index>`` (or the pod name ``<job>-<index>-<suffix>``); rank: the index.
- ``master``: ``MASTER_ADDR`` + ``MASTER_PORT`` + ``WORLD_SIZE`` (torch.distributed's env://,
  Kubeflow, DeepSpeed, hand-started ranks). A loopback address (``localhost``, ``127.*``,
  ``::1``) names a rendezvous on the rank's own machine: the identity then includes the
  machine, so single-machine jobs on two machines never merge.

A process with a world of one (``WORLD_SIZE=1``, or one Slurm task) is a job of its own.
Identities that name one launch (Slurm, a real torchelastic id, Ray) join whatever their age;
the others (a rendezvous address, reused by tomorrow's run) join a job only while it has a
live rank or ended less than ``REJOIN_S`` ago (an elastic restart), else start a new one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "LIVE",
    "REJOIN_S",
    "GroupState",
    "Launcher",
    "Member",
    "device_of",
    "group_state",
    "launcher_of",
    "rank_fields",
]

REJOIN_S = 300
#: Statuses of a rank that still runs (or may), most telling first.
LIVE = ("running", "suspended", "unknown")
_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|::1|0\.0\.0\.0|ip6-localhost)$", re.I)
_MAX_ID = 200


@dataclass(frozen=True)
class Launcher:
    kind: str  # slurm | torchelastic | ray | kubernetes | master
    id: str  # what users know it by
    key: str  # what its ranks share (kind, id, and the machine for a loopback rendezvous)
    once: bool  # the id names one launch: a rank joins its job whatever the job's age
    rank: int | None
    local_rank: int | None
    world_size: int | None


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        v = env.get(name, "").strip()
        if v.isdigit() and len(v) <= 9:
            return int(v)
    return None


def _k8s_job(env: Mapping[str, str]) -> str | None:
    index, host = env.get("JOB_COMPLETION_INDEX", ""), env.get("HOSTNAME", "")
    if not index.isdigit() or not host:
        return None
    m = re.fullmatch(rf"(.+)-{re.escape(index)}(-[a-z0-9]{{5}})?", host)
    return m.group(1) if m else None


def rank_fields(env: Mapping[str, str]) -> tuple[int | None, int | None, int | None]:
    """(rank, local rank, world size) as torch.distributed's variables give them."""
    return _int(env, "RANK"), _int(env, "LOCAL_RANK"), _int(env, "WORLD_SIZE")


def launcher_of(env: Mapping[str, str], machine_id: str) -> Launcher | None:
    """The launcher identity of a process with these environment variables, on machine_id;
    None when it is no rank of a job of several processes."""
    rank, local, world = rank_fields(env)
    kind = ident = ""
    once = True
    if env.get("SLURM_JOB_ID", "").strip():
        kind, ident = "slurm", env["SLURM_JOB_ID"].strip()
        if env.get("SLURM_STEP_ID", "").strip():
            ident += "." + env["SLURM_STEP_ID"].strip()
        cluster = env.get("SLURM_CLUSTER_NAME", "").strip()
        ident = f"{cluster}/{ident}" if cluster else ident
        rank = rank if rank is not None else _int(env, "SLURM_PROCID")
        local = local if local is not None else _int(env, "SLURM_LOCALID")
        world = world if world is not None else _int(env, "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS")
    elif env.get("TORCHELASTIC_RUN_ID", "").strip() not in ("", "none"):
        kind, ident = "torchelastic", env["TORCHELASTIC_RUN_ID"].strip()
    elif env.get("RAY_JOB_ID", "").strip():
        kind, ident = "ray", env["RAY_JOB_ID"].strip()
    elif (job := _k8s_job(env)) is not None:
        kind, ident = "kubernetes", job
        rank = rank if rank is not None else _int(env, "JOB_COMPLETION_INDEX")
    elif env.get("MASTER_ADDR", "").strip() and env.get("MASTER_PORT", "").strip() and world:
        addr, port = env["MASTER_ADDR"].strip(), env["MASTER_PORT"].strip()
        kind, ident, once = "master", f"{addr}:{port}", False
        if env.get("TORCHELASTIC_RUN_ID", "").strip() == "none":
            kind = "torchelastic"
    else:
        return None
    if world is not None and world <= 1:
        return None
    ident = ident[:_MAX_ID]
    key = f"{kind}:{ident}"
    if kind in ("master", "torchelastic") and not once:
        key += f":{world}"
        if _LOOPBACK.match(ident.rsplit(":", 1)[0].strip("[]")):
            key += f"@{machine_id}"
    return Launcher(kind, ident, key, once, rank, local, world)


def device_of(env: Mapping[str, str], local_rank: int | None) -> str | None:
    """The accelerator a rank uses: its only visible device, or the one its local rank
    picks among several (torch.cuda.set_device(local_rank), the usual practice); without a
    visible-devices variable, its local rank's index. None when nothing says."""
    for name in ("CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES", "ASCEND_VISIBLE_DEVICES"):
        if name in env:
            seen = [d.strip() for d in env[name].split(",") if d.strip()]
            if len(seen) == 1:
                return seen[0][:64]
            if local_rank is not None and local_rank < len(seen):
                return seen[local_rank][:64]
            return None
    return None if local_rank is None else str(local_rank)


@dataclass(frozen=True)
class Member:
    """A rank process as a distributed job's status needs it."""

    rank: int | None
    host: str
    status: str
    exit_code: int | None
    signal: int | None


@dataclass(frozen=True)
class GroupState:
    status: str
    reason: str
    exit_code: int | None
    signal: int | None
    ended: bool


def _who(m: Member) -> str:
    return f"rank {m.rank} ({m.host})" if m.rank is not None else f"a process on {m.host}"


def group_state(members: Sequence[Member]) -> GroupState:
    """A distributed job's status from its ranks': the most telling live status while one
    runs; once all have ended, the worst end (killed, lost, a non-zero exit, stopped, then
    exited 0), the reason naming the rank that decided it."""
    for status in LIVE:
        live = [m for m in members if m.status == status]
        if live:
            return GroupState(
                status, f"{len(live)} of {len(members)} rank processes {status}", None, None, False
            )
    for status in ("killed", "lost", "exited", "stopped"):
        hit = [
            m
            for m in members
            if m.status == status and (status != "exited" or m.exit_code not in (0, None))
        ]
        if hit:
            m = hit[0]
            detail = (
                f"killed by signal {m.signal}"
                if status == "killed"
                else f"exited with code {m.exit_code}"
                if status == "exited"
                else status
            )
            return GroupState(status, f"{_who(m)} {detail}", m.exit_code, m.signal, True)
    return GroupState("exited", f"all {len(members)} rank processes exited with 0", 0, None, True)
