"""Fixtures for discovery tests: the procwatch binary, and a job workload with a framework
stand-in, a config file and a launching shell script."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

MACHINE = "m-test"
#: The stand-in framework's version, written into its dist-info and version.py.
TORCH_VERSION = "2.5.1+standin"
SECRETS = {
    "HCCL_AUTH_TOKEN": "hccl-secret-9f1c",
    "MY_API_KEY": "api-secret-77ab",
    "DB_PASSWORD": "pw-secret-31d0",
}


@pytest.fixture(scope="session")
def procwatch(build_dir: Path) -> Path:
    path = build_dir / "xputrace-procwatch"
    if not path.exists():
        pytest.fail(f"xputrace-procwatch is not built in {build_dir}")
    return path


def write_standin_site(site: Path, version: str = TORCH_VERSION) -> None:
    """A fake ``torch``: a version in dist-info and version.py, and a library file it maps
    (with mmap, as the real one maps libtorch) so that maps show its package path."""
    pkg = site / "torch"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "lib" / "libtorch_cpu.so").write_bytes(b"\0" * 4096)
    (pkg / "version.py").write_text(f'__version__ = "{version}"\n')
    (pkg / "__init__.py").write_text(
        "import mmap, os\n"
        "from .version import __version__\n"
        "_f = open(os.path.join(os.path.dirname(__file__), 'lib', 'libtorch_cpu.so'), 'rb')\n"
        "_lib = mmap.mmap(_f.fileno(), 0, prot=mmap.PROT_READ)\n"
    )
    dist = site / f"torch-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")


TRAIN_PY = """\
import sys
import torch

model = open("model.safetensors", "rb")
print("ready", torch.__version__, flush=True)
sys.stdin.readline()
"""

CONFIG_YAML = "batch_size: 32\noptimizer:\n  name: adamw\n  lr: 0.001\n"

RUN_SH = """\
#!/bin/sh
# launches one training rank
"$PY" train.py --config config.yaml --lr=0.001 epochs=3 --batch_size 32 --fp16
"""


@pytest.fixture
def workload(tmp_path: Path) -> dict[str, object]:
    """A job directory: train.py importing the stand-in torch, config.yaml, run.sh, model file.

    Returns the argv to start it (``sh run.sh``), its cwd and environment.
    """
    site = tmp_path / "lib" / "python3" / "site-packages"  # named as pip would have it
    write_standin_site(site)
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(TRAIN_PY)
    (work / "config.yaml").write_text(CONFIG_YAML)
    (work / "run.sh").write_text(RUN_SH)
    (work / "model.safetensors").write_bytes(b"{}")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PY": sys.executable,
        "PYTHONPATH": str(site),
        "CUDA_VISIBLE_DEVICES": "0,1",
        "RANK": "0",
        "WORLD_SIZE": "1",
        "HOME": "/root",
        "UNLISTED": "plain-value",
        **SECRETS,
    }
    return {"argv": ["sh", "run.sh"], "cwd": work, "env": env, "site": site}


def children(pid: int) -> list[int]:
    """The children of pid (of its main thread)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]
