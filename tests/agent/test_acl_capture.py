"""The ACL probe against the Ascend stand-ins (tests/workloads/ascend, built from the real
CANN headers): every hooked AscendCL, aclop, aclmdl, aclnn and HCCL call of acl_calls, with
its thread, arguments (as xpucore.abi decodes them), return value, device and duration, in
both library layouts (runtime in libacl_rt.so, as current CANN; all of AscendCL in
libascendcl.so, as older CANN), each symbol hooked in the library that defines it."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.agent.procs import Capture, run_agent_expect_failure, trace_workload
from tests.workloads import acl_expect
from tests.workloads.acl_expect import Call, Out
from xpucore import abi
from xpucore.probes import acl

pytestmark = pytest.mark.bpf

SYNC_US, HCCL_US = 10_000, 5_000  # long enough that no plain call takes as long
# CANN parameter name -> decoded argument name (xpucore.probes.acl.ARGS), then per symbol.
PARAM = {
    "configPath": "config_path", "size": "bytes", "policy": "policy", "dst": "dst",
    "destMax": "dest_max", "src": "src", "count": "bytes", "kind": "kind", "devPtr": "ptr",
    "hostPtr": "ptr", "maxCount": "max_count", "value": "value", "dpitch": "dpitch",
    "spitch": "spitch", "width": "width", "height": "height", "funcHandle": "func",
    "numBlocks": "num_blocks", "argsData": "args", "argsSize": "args_size",
    "argsHandle": "args_handle", "opType": "op_type", "numInputs": "num_inputs",
    "numOutputs": "num_outputs", "attr": "attr", "handle": "handle",
    "engineType": "engine_type", "compileFlag": "compile_flag", "opPath": "op_path",
    "modelPath": "model_path", "modelId": "model_id", "input": "input", "output": "output",
    "event": "event", "stream": "stream", "timeout": "timeout", "workspace": "workspace",
    "workspaceSize": "workspace_size", "executor": "executor", "nRanks": "n_ranks",
    "rank": "rank", "sendBuf": "send_buf", "recvBuf": "recv_buf", "dataType": "data_type",
    "op": "reduce_op", "buf": "buf", "root": "root", "sendCount": "send_count",
    "recvCount": "recv_count", "sendType": "send_type", "recvType": "recv_type",
    "destRank": "peer", "srcRank": "peer", "itemNum": "item_num", "comm": "comm",
}  # fmt: skip
PER_SYMBOL = {
    "aclrtMemset": {"devPtr": "dst"}, "aclrtMemsetAsync": {"devPtr": "dst"},
    "HcclAllReduce": {"count": "count"}, "HcclBroadcast": {"count": "count"},
    "HcclSend": {"count": "count", "sendBuf": "buf"},
    "HcclRecv": {"count": "count", "recvBuf": "buf"},
    "HcclAllGather": {"sendCount": "count"}, "HcclReduceScatter": {"recvCount": "count"},
}  # fmt: skip
# Kept as the pointers the call was given, not read: the arrays behind them, and reserve.
NOT_READ = {"reserve", "items", "sendCounts", "sdispls", "recvCounts", "rdispls"}
# The stand-in's aclnn executors: 0xe70000000000 + (op << 32) + (n << 8), op Add 1, Matmul 2.
EXECUTOR_OP = {"aclnnAdd": 1, "aclnnMatmul": 2}
SYNCS = {"aclrtSynchronizeStream", "aclrtSynchronizeStreamWithTimeout",
         "aclrtSynchronizeDevice", "aclrtSynchronizeEvent"}  # fmt: skip


def hooked(calls: list[Call]) -> list[Call]:
    """The calls the probe records: not the aclnn GetWorkspaceSize companions."""
    return [c for c in calls if not c.symbol.endswith("GetWorkspaceSize")]


def records(cap: Capture) -> list[dict[str, Any]]:
    return [r for b in cap.batches for r in abi.event_records(b)]


def run_acl(build_dir: Path, tmp_path: Path, exe: str, threads: int, iters: int,
            *agent_args: str) -> tuple[dict[str, Any], dict[str, Any], Capture]:  # fmt: skip
    env = {"XPU_FAKE_ACL_SYNC_US": str(SYNC_US), "XPU_FAKE_HCCL_US": str(HCCL_US)}
    argv = [str(build_dir / "tests/workloads/ascend" / exe), "--threads", str(threads),
            "--iters", str(iters)]  # fmt: skip
    return trace_workload(build_dir, argv, tmp_path, *agent_args, monitor_type="ACL",
                          env={**os.environ, **env})  # fmt: skip


def check_call(rec: dict[str, Any], c: Call, outs: dict[tuple[int, str], dict[str, Any]],
               device: int | None) -> list[str]:  # fmt: skip
    """Mismatches of one event against its expected call."""
    where, bad = f"thread {c.thread} round {c.round} {c.symbol}", []
    if rec["func"] != c.symbol:
        return [f"{where}: got {rec['func']}"]
    if rec["ret"] != c.ret:
        bad.append(f"{where}: ret {rec['ret']} != {c.ret}")
    args = rec["args"]
    for param, want in c.args.items():
        if param in NOT_READ or param == "deviceId":
            continue
        name = PER_SYMBOL.get(c.symbol, {}).get(param) or PARAM[param]
        if isinstance(want, Out):
            if want.param == "executor":
                ok = args[name] >> 32 == 0xE700 + EXECUTOR_OP[c.symbol] and args[name] & 0xFF == 0
                bad += [] if ok else [f"{where}: executor {args[name]:#x} is not the op's"]
                continue
            want = outs[(c.round, want.symbol)]["ptr"]
            assert want, f"{where}: the allocation it frees returned nothing"
        if want is None:
            want = "" if name in acl.TEXT else 0
        if name in acl.TEXT:
            want = want[:39]
        if args[name] != want:
            bad.append(f"{where}: {param} ({name}) = {args[name]!r}, expected {want!r}")
    # aclrtSetDevice: the device asked for; any other call: the thread's, once known
    if c.symbol == "aclrtSetDevice":
        assert args["device"] == c.args["deviceId"]
        return bad
    assumed = bool(rec["flags"] & abi.EV_DEVICE_ASSUMED)
    if (assumed, args["device"]) != (device is None, device or 0):
        bad.append(f"{where}: device {args['device']} flags {rec['flags']}, expected {device}")
    return bad


def check_capture(ready: dict[str, Any], done: dict[str, Any], cap: Capture, threads: int,
                  iters: int) -> None:  # fmt: skip
    expected = hooked(acl_expect.expected_acl_calls(threads, iters))
    recs = records(cap)
    flags = [int(f) for b in cap.batches for f in b.events["flags"]]
    for r, f in zip(recs, flags, strict=True):
        r["flags"] = f
    assert Counter(r["func"] for r in recs) == Counter(
        {s: n for s, n in done["calls"].items() if not s.endswith("GetWorkspaceSize")}
    )
    assert cap.stats["inflight_drops"] == cap.stats["kernel_drops"] == 0
    mismatches: list[str] = []
    for t, tid in enumerate(ready["tids"]):
        mine = sorted((r for r in recs if r["tid"] == tid), key=lambda r: r["ts_ns"])
        exp = [c for c in expected if c.thread == t]
        assert len(mine) == len(exp), (t, Counter(r["func"] for r in mine))
        outs: dict[tuple[int, str], dict[str, Any]] = {}
        device: int | None = None
        for rec, c in zip(mine, exp, strict=True):
            outs.setdefault((c.round, c.symbol), rec["args"])
            mismatches += check_call(rec, c, outs, device)
            if c.symbol == "aclrtSetDevice" and c.ret == 0:
                device = c.args["deviceId"]
            if c.symbol in SYNCS:
                assert rec["duration_ns"] >= SYNC_US * 1000, (c, rec["duration_ns"])
            elif c.symbol.startswith("Hccl") and c.symbol != "HcclCommInitRootInfo":
                assert rec["duration_ns"] >= HCCL_US * 1000, (c, rec["duration_ns"])
            else:
                assert rec["duration_ns"] < HCCL_US * 1000, (c, rec["duration_ns"])
    assert not mismatches, "\n".join(mismatches[:40])


@pytest.mark.parametrize(("exe", "layout"), [("acl_calls", "rt"), ("acl_calls_compat", "compat")])
def test_every_acl_call_exactly(build_dir: Path, tmp_path: Path, exe: str, layout: str) -> None:
    threads, iters = 3, 2
    ready, done, cap = run_acl(build_dir, tmp_path, exe, threads, iters)
    check_capture(ready, done, cap, threads, iters)
    # each symbol hooked where it is defined: the runtime in libacl_rt.so when there is one
    libs = {Path(p).name for p in cap.libraries}
    assert libs == {lib for lib in acl_expect.LIBRARIES if layout == "rt" or lib != "libacl_rt.so"}
    # the aclnn launches found by their GetWorkspaceSize companions: Add and Matmul
    assert {r["args"]["op_type"] for r in records(cap) if r["func"].startswith("aclnn")} == {
        "Add",
        "Matmul",
    }


def test_acl_perf_links_see_the_same(build_dir: Path, tmp_path: Path) -> None:
    ready, done, cap = run_acl(build_dir, tmp_path, "acl_calls", 2, 1, "--attach-mode", "perf")
    check_capture(ready, done, cap, 2, 1)


def test_no_cann_library_is_target_not_found(build_dir: Path) -> None:
    rc, err = run_agent_expect_failure(
        build_dir,
        "--monitor-id",
        "t",
        "--monitor-type",
        "ACL",
        "--target-pid",
        str(os.getpid()),
        "--output",
        "/dev/null",
    )
    assert rc == 3, err  # TARGET_NOT_FOUND
    assert "no CANN (AscendCL, aclnn or HCCL) library mapped" in err


def test_library_mode_traces_one_cann_library(build_dir: Path, tmp_path: Path) -> None:
    """--target-library on one CANN file (libhccl.so) of the process: its calls, and nothing
    from the other libraries the workload also calls."""
    lib = build_dir / "tests/workloads/ascend/rt/libhccl.so"
    threads, iters = 2, 1
    ready, done, cap = trace_workload(
        build_dir, [str(build_dir / "tests/workloads/ascend/acl_calls"), "--threads",
                    str(threads), "--iters", str(iters)], tmp_path, "--target-library",
        str(lib), monitor_type="ACL")  # fmt: skip
    assert cap.libraries == [str(lib)]
    got = Counter(r["func"] for r in records(cap) if r["tid"] in ready["tids"])
    assert got == Counter({s: n for s, n in done["calls"].items() if s.startswith("Hccl")})
