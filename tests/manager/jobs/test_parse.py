"""Arguments, environment names and classification from given facts: no /proc needed."""

from __future__ import annotations

from manager.jobs import params
from manager.jobs.classify import Facts, classify, job_type, script_argument, script_imports
from manager.jobs.container import parse_cgroup
from manager.jobs.environ import is_allowed, is_secret


def test_parse_args_forms() -> None:
    args = [
        "--config",
        "c.yaml",
        "--lr=0.001",
        "epochs=3",
        "--batch_size",
        "32",
        "--fp16",
        "--name",
        "run-1",
        "--offset",
        "-5",
        "-v",
    ]
    assert params.parse_args(args) == {
        "config": "c.yaml",
        "lr": 0.001,
        "epochs": 3,
        "batch_size": 32,
        "fp16": True,
        "name": "run-1",
        "offset": -5,
        "v": True,
    }


def test_config_paths() -> None:
    assert params.config_paths(
        ["--config", "a.yaml", "b=conf/x.JSON", "c.toml", "a.yaml", "model.pt"]
    ) == ["a.yaml", "conf/x.JSON", "c.toml"]


def test_environment_names() -> None:
    for name in (
        "CUDA_VISIBLE_DEVICES",
        "RANK",
        "SLURM_JOB_ID",
        "HCCL_CONNECT_TIMEOUT",
        "TORCHELASTIC_RUN_ID",
        "MASTER_PORT",
        "PYTHONPATH",
    ):
        assert is_allowed(name), name
    for name in (
        "HCCL_AUTH_TOKEN",
        "ASCEND_API_KEY",
        "SLURM_SECRET",
        "HOME",
        "AWS_ACCESS_KEY_ID",
        "DB_PASSWORD",
        "SLURM_CREDENTIALS",
    ):
        assert not is_allowed(name), name
    assert is_secret("my_passwd") and is_secret("GITHUB_TOKEN") and not is_secret("RANK")


def test_script_argument() -> None:
    assert script_argument(["python3", "-u", "-X", "dev", "train.py", "--a", "1"]) == (
        "script",
        "train.py",
        5,
    )
    assert script_argument(["python", "-m", "torch.distributed.run", "x.py"]) == (
        "module",
        "torch.distributed.run",
        3,
    )
    assert script_argument(["python", "-c", "import torch"]) == ("command", "import torch", 3)
    assert script_argument(["python"]) == ("none", None, 1)


def test_classify_runtimes_and_frameworks() -> None:
    maps = [
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so",
        "/venv/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2",
        "/venv/lib/python3.11/site-packages/vllm/_C.abi3.so",
    ]
    c = classify(Facts(exe="/usr/bin/python3.11", argv=["python", "serve.py"], maps=maps))
    assert c.is_job and c.interpreter
    assert c.runtimes == ["libtorch_cuda", "libnccl"] and c.accelerator == "cuda"
    assert c.frameworks == ["vllm", "torch"]
    assert c.package_dirs["torch"] == "/venv/lib/python3.11/site-packages"
    assert job_type(c, ["python", "serve.py"])[0] == "inference"


def test_classify_script_and_module_evidence() -> None:
    script = b"import os\nfrom transformers import AutoModel\n  import mindspore as ms\n"
    assert script_imports(script) == ["os", "transformers", "mindspore"]
    c = classify(
        Facts(exe="/usr/bin/python3", argv=["python3", "ft.py"], maps=[], script_text=script)
    )
    assert c.frameworks == ["transformers", "mindspore"]
    assert job_type(c, ["python3", "ft.py", "finetune"]) == ("training", "subcommand 'finetune'")
    m = classify(
        Facts(
            exe="/usr/bin/python3",
            argv=["python3", "-m", "torch.distributed.run", "--nproc-per-node", "2", "pretrain.py"],
            maps=[],
        )
    )
    assert m.frameworks == ["torch"]
    assert job_type(m, m_argv := ["python3", "-m", "torch.distributed.run"])[0] == "other"
    assert m_argv  # a launcher alone does not say what its workers do


def test_not_a_job() -> None:
    c = classify(
        Facts(
            exe="/usr/bin/bash",
            argv=["bash", "-c", "import torch"],
            maps=["/usr/lib/libc.so.6"],
            script_text=b"import torch",
        )
    )
    assert not c.is_job  # bash is no interpreter of Python: its text is not read as imports
    assert job_type(c, ["bash"]) == ("other", "no name or engine says training or inference")


def test_engine_binaries() -> None:
    c = classify(Facts(exe="/usr/local/bin/ollama", argv=["ollama", "serve"], maps=[]))
    assert c.frameworks == ["ollama"] and job_type(c, ["ollama", "serve"])[0] == "inference"


def test_containers_from_cgroup() -> None:
    cid = "3f" * 32
    assert parse_cgroup(f"0::/system.slice/docker-{cid}.scope\n") == {
        "id": cid,
        "runtime": "docker",
        "cgroup": f"/system.slice/docker-{cid}.scope",
        "podUid": None,
    }
    k8s = (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"1b2c3d4e_0000_1111_2222_333344445555.slice/cri-containerd-{cid}.scope\n"
    )
    got = parse_cgroup(k8s)
    assert (got["id"], got["runtime"], got["podUid"]) == (
        cid,
        "containerd",
        "1b2c3d4e-0000-1111-2222-333344445555",
    )
    assert parse_cgroup(f"12:memory:/docker/{cid}\n")["runtime"] == "docker"
    assert parse_cgroup(f"0::/user.slice/libpod-{cid}.scope/container\n")["runtime"] == "podman"
    assert parse_cgroup("0::/user.slice/user-0.slice/session-1.scope\n")["id"] is None
