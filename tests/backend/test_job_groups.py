"""Launcher identities read from a rank's environment, devices, and a distributed job's status
from its ranks' (backend.job_groups, pure)."""

from __future__ import annotations

from backend.job_groups import Member, device_of, group_state, launcher_of

M1, M2 = "a" * 32, "b" * 32


def test_master_rendezvous_groups_across_machines_loopback_does_not() -> None:
    env = {"MASTER_ADDR": "node1", "MASTER_PORT": "29500", "WORLD_SIZE": "4", "RANK": "2"}
    a, b = launcher_of(env, M1), launcher_of({**env, "RANK": "3"}, M2)
    assert a is not None and b is not None and a.key == b.key
    assert (a.kind, a.id, a.rank, a.world_size, a.once) == ("master", "node1:29500", 2, 4, False)
    for addr in ("127.0.0.1", "localhost", "::1"):
        loop = {**env, "MASTER_ADDR": addr}
        x, y = launcher_of(loop, M1), launcher_of(loop, M2)
        assert x is not None and y is not None and x.key != y.key, addr
    # another world size on the same address is another job
    other = launcher_of({**env, "WORLD_SIZE": "8"}, M1)
    assert other is not None and other.key != a.key


def test_slurm_torchelastic_ray_kubernetes() -> None:
    s = launcher_of({"SLURM_JOB_ID": "77", "SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, M1)
    assert s is not None and (s.kind, s.id, s.rank, s.world_size, s.once) == (
        "slurm",
        "77",
        5,
        8,
        True,
    )
    # a torchrun worker inside a Slurm step: the step is the job, RANK its rank
    w = launcher_of(
        {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "RANK": "9"}, M2
    )
    assert w is not None and (w.id, w.rank) == ("77.0", 9)
    t = launcher_of({"TORCHELASTIC_RUN_ID": "abc", "RANK": "0", "WORLD_SIZE": "2"}, M1)
    assert t is not None and (t.kind, t.key, t.once) == ("torchelastic", "torchelastic:abc", True)
    # torchrun's default id is "none" everywhere: the rendezvous address decides
    n = {"TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "2"}
    tn = launcher_of(n, M1)
    assert tn is not None and tn.kind == "torchelastic" and not tn.once and "h:1" in tn.key
    r = launcher_of({"RAY_JOB_ID": "02000000"}, M1)
    assert r is not None and (r.kind, r.id, r.rank) == ("ray", "02000000", None)
    k = launcher_of({"JOB_COMPLETION_INDEX": "3", "HOSTNAME": "bert-3-x7k2q"}, M1)
    assert k is not None and (k.kind, k.id, k.rank) == ("kubernetes", "bert", 3)
    assert launcher_of({"JOB_COMPLETION_INDEX": "3", "HOSTNAME": "web-7"}, M1) is None


def test_a_world_of_one_or_no_launcher_is_no_distributed_job() -> None:
    assert launcher_of({}, M1) is None
    assert launcher_of({"MASTER_ADDR": "h", "MASTER_PORT": "1", "WORLD_SIZE": "1"}, M1) is None
    assert launcher_of({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "1"}, M1) is None
    assert launcher_of({"MASTER_ADDR": "h", "MASTER_PORT": "1"}, M1) is None  # no world
    assert launcher_of({"RANK": "x", "WORLD_SIZE": "-2", "MASTER_ADDR": "h"}, M1) is None


def test_device_from_visible_devices_and_local_rank() -> None:
    assert device_of({"CUDA_VISIBLE_DEVICES": "3"}, 1) == "3"
    assert device_of({"CUDA_VISIBLE_DEVICES": "4,5,6"}, 1) == "5"
    assert device_of({"CUDA_VISIBLE_DEVICES": "4,5"}, 7) is None
    assert device_of({"ASCEND_RT_VISIBLE_DEVICES": "0,1"}, 0) == "0"
    assert device_of({}, 2) == "2"
    assert device_of({}, None) is None


def _m(rank: int, status: str, code: int | None = None, sig: int | None = None) -> Member:
    return Member(rank, f"h{rank}", status, code, sig)


def test_group_status_live_first_then_the_worst_end() -> None:
    s = group_state([_m(0, "exited", 0), _m(1, "running")])
    assert (s.status, s.ended, s.reason) == ("running", False, "1 of 2 rank processes running")
    assert group_state([_m(0, "unknown"), _m(1, "exited", 0)]).status == "unknown"
    s = group_state([_m(0, "exited", 0), _m(1, "killed", sig=9), _m(2, "exited", 1)])
    assert (s.status, s.signal, s.reason) == ("killed", 9, "rank 1 (h1) killed by signal 9")
    s = group_state([_m(0, "exited", 0), _m(1, "exited", 3)])
    assert (s.status, s.exit_code, s.reason) == ("exited", 3, "rank 1 (h1) exited with code 3")
    assert group_state([_m(0, "stopped"), _m(1, "exited", 0)]).status == "stopped"
    s = group_state([_m(0, "exited", 0), _m(1, "exited", 0)])
    assert (s.status, s.exit_code, s.ended) == ("exited", 0, True)
