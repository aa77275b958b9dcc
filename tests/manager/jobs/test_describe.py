"""A real job, described exactly: parameters, config file, environment, code, launcher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from manager.jobs.describe import describe
from manager.jobs.environ import read_environ
from manager.jobs.procfs import ProcessHandle
from tests.manager.jobs.conftest import (
    CONFIG_YAML,
    RUN_SH,
    SECRETS,
    TORCH_VERSION,
    TRAIN_PY,
    children,
)

ARGS = "--config config.yaml --lr=0.001 epochs=3 --batch_size 32 --fp16"


def start(workload: dict[str, Any]) -> tuple[subprocess.Popen[str], int]:
    """sh run.sh, once train.py has imported the stand-in and opened its model; the
    python pid."""
    sh = subprocess.Popen(
        workload["argv"],
        cwd=workload["cwd"],
        env=workload["env"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sh.stdout is not None and sh.stdout.readline() == f"ready {TORCH_VERSION}\n"
    (python,) = children(sh.pid)
    return sh, python


def test_describes_a_real_job_exactly(workload: dict[str, Any]) -> None:
    sh, pid = start(workload)
    work: Path = workload["cwd"]
    site: Path = workload["site"]
    try:
        with ProcessHandle(pid) as proc:
            job = describe(proc, job_id="j1", machine="m", status={"status": "running"})
    finally:
        sh.communicate("\n", timeout=10)
    assert sh.returncode == 0
    assert {
        k: job[k]
        for k in (
            "jobId",
            "nodeId",
            "jobName",
            "jobType",
            "framework",
            "frameworkVersion",
            "frameworkVersionSource",
            "frameworks",
            "modelFormat",
            "pid",
            "ppid",
            "commandLine",
            "cwd",
            "user",
            "container",
            "status",
        )
    } == {
        "jobId": "j1",
        "nodeId": "m",
        "jobName": "train.py",
        "jobType": "training",
        "framework": "torch",
        "frameworkVersion": TORCH_VERSION,
        "frameworkVersionSource": str(site),
        "frameworks": ["torch"],
        "modelFormat": "safetensors",
        "pid": pid,
        "ppid": sh.pid,
        "commandLine": f"{sys.executable} train.py {ARGS}",
        "cwd": str(work),
        "user": "root",
        "container": None,
        "status": "running",
    }
    assert job["jobTypeEvidence"] == "name 'train.py'"
    assert str(work / "model.safetensors") in job["modelFiles"]
    assert f"maps {site}/torch/lib/libtorch_cpu.so" in job["evidence"]
    assert "script train.py imports torch" in job["evidence"]
    assert job["parameters"] == {
        "parameterRaw": ARGS,
        "parameterData": {
            "config": "config.yaml",
            "lr": 0.001,
            "epochs": 3,
            "batch_size": 32,
            "fp16": True,
        },
        "parameterSource": "command_line",
        "configFiles": [
            {
                "configFilePath": "config.yaml",
                "configFileContent": CONFIG_YAML,
                "size": len(CONFIG_YAML),
                "truncated": False,
                "parameterData": {"batch_size": 32, "optimizer": {"name": "adamw", "lr": 0.001}},
            }
        ],
        "envVars": {
            "PYTHONPATH": str(site),
            "CUDA_VISIBLE_DEVICES": "0,1",
            "RANK": "0",
            "WORLD_SIZE": "1",
        },
        "envVarsWithheld": ["HCCL_AUTH_TOKEN"],
    }
    code = job["code"]
    assert {
        k: code[k]
        for k in (
            "scriptPath",
            "scriptKind",
            "scriptContent",
            "configFiles",
            "shScriptPath",
            "shScriptContent",
            "shellPid",
            "scriptImports",
            "loadedPackages",
        )
    } == {
        "scriptPath": "train.py",
        "scriptKind": "script",
        "scriptContent": TRAIN_PY,
        "configFiles": ["config.yaml"],
        "shScriptPath": "run.sh",
        "shScriptContent": RUN_SH,
        "shellPid": sh.pid,
        "scriptImports": ["sys", "torch"],
        "loadedPackages": ["torch"],
    }
    assert code["importedLibraries"] == ["torch", "sys"]
    assert "libtorch_cpu.so" in code["sharedLibraries"]
    text = json.dumps(job)
    for value in (*SECRETS.values(), "plain-value"):
        assert value not in text


def test_environ_never_yields_unlisted_values(workload: dict[str, Any]) -> None:
    sh, pid = start(workload)
    try:
        with ProcessHandle(pid) as proc:
            allowed, withheld = read_environ(proc)
    finally:
        sh.communicate("\n", timeout=10)
    assert set(allowed) == {"PYTHONPATH", "CUDA_VISIBLE_DEVICES", "RANK", "WORLD_SIZE"}
    assert withheld == ["HCCL_AUTH_TOKEN"]


def test_a_reused_pid_is_refused() -> None:
    from manager.jobs.procfs import ProcessGone

    with ProcessHandle(1) as init:
        start_ticks = init.stat.start_ticks
    try:
        ProcessHandle(1, start_ticks + 1)
    except ProcessGone as e:
        assert "started at" in str(e)
    else:
        raise AssertionError("a different start time must not open the process")
