"""Is a process an AI job, and which: accelerator runtimes, frameworks, job type, with evidence.

Evidence, strongest first:
- **maps**: a mapped accelerator or collective runtime (libcudart, libcuda, libnccl,
  libtorch_cuda, libascendcl, libacl_rt, libhccl, torch_npu) or a file of a framework's
  package (``.../site-packages/torch/...``); what the process has really loaded.
- **argv**: an interpreter running a framework's module (``-m torch.distributed.run``) or its
  console script (``torchrun``, ``vllm``), or an engine's own binary (``ollama``,
  ``llama-server``).
- **script**: the interpreter's script imports a framework (``import torch``), read from the
  script itself: what it will load, before it has (Python maps only compiled modules, so a
  pure-Python framework never shows in maps).
Every conclusion carries the evidence that led to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "FRAMEWORKS",
    "MAPS_HINT",
    "RUNTIMES",
    "Classification",
    "Facts",
    "Framework",
    "classify",
    "is_interpreter",
    "job_type",
    "script_argument",
    "script_imports",
]


@dataclass(frozen=True)
class Framework:
    name: str
    packages: tuple[str, ...]  # top-level Python packages
    dists: tuple[str, ...]  # distribution names whose dist-info holds its version
    inference_engine: bool = False


#: Most specific first: the first one found is the job's framework.
FRAMEWORKS = (
    Framework("vllm", ("vllm",), ("vllm",), inference_engine=True),
    Framework("ollama", (), (), inference_engine=True),
    Framework("llama.cpp", ("llama_cpp",), ("llama_cpp_python",), inference_engine=True),
    Framework("transformers", ("transformers",), ("transformers",)),
    Framework("torch_npu", ("torch_npu",), ("torch_npu",)),
    Framework("torch", ("torch",), ("torch",)),
    Framework("mindspore", ("mindspore",), ("mindspore",)),
    Framework("tensorflow", ("tensorflow",), ("tensorflow", "tensorflow_cpu", "tensorflow_gpu")),
    Framework("jax", ("jax", "jaxlib"), ("jax",)),
    Framework("paddle", ("paddle",), ("paddlepaddle", "paddlepaddle_gpu")),
)
_BY_PACKAGE = {p: f for f in FRAMEWORKS for p in f.packages}

#: Library basename prefix -> (runtime, accelerator).
RUNTIMES = {
    "libcudart.so": ("libcudart", "cuda"),
    "libcuda.so": ("libcuda", "cuda"),
    "libnccl.so": ("libnccl", "cuda"),
    "libtorch_cuda.so": ("libtorch_cuda", "cuda"),
    "libascendcl.so": ("libascendcl", "ascend"),
    "libacl_rt.so": ("libacl_rt", "ascend"),
    "libhccl.so": ("libhccl", "ascend"),
    "libtorch_npu.so": ("torch_npu", "ascend"),
}
#: Matches maps that name something classify() looks for: one search over the raw maps
#: spares parsing those of the many processes that are no job.
MAPS_HINT = re.compile(
    rb"/(?:"
    + rb"|".join(re.escape(p.encode()) for p in RUNTIMES)
    + rb"|libllama\.so|libggml"
    + rb"|(?:site|dist)-packages/(?:"
    + rb"|".join(p.encode() for p in _BY_PACKAGE)
    + rb")/)"
)
_CONSOLE_SCRIPTS = {
    "torchrun": "torch",
    "vllm": "vllm",
    "deepspeed": "torch",
    "transformers-cli": "transformers",
    "transformers": "transformers",
}
_ENGINE_BINARIES = {
    "ollama": "ollama",
    "llama-server": "llama.cpp",
    "llama-cli": "llama.cpp",
    "llama-bench": "llama.cpp",
}
_SITE_PACKAGE = re.compile(r"/(?:site|dist)-packages/([A-Za-z_][A-Za-z0-9_]*)/")
_INTERPRETER = re.compile(r"python(\d+(\.\d+)?)?[dmu]*")
_IMPORT = re.compile(rb"^[ \t]*(?:import|from)[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
# Interpreter options that take a value as the next argument.
_PY_OPTS_WITH_VALUE = frozenset({"-W", "-X", "-Q"})


@dataclass(frozen=True)
class Facts:
    """What classification looks at, read from /proc (or built by a test)."""

    exe: str  # /proc/<pid>/exe
    argv: Sequence[str]
    maps: Sequence[str]  # mapped file paths
    script_text: bytes | None = None  # the interpreter's script, when read


@dataclass
class Classification:
    runtimes: list[str] = field(default_factory=list)
    accelerator: str | None = None
    frameworks: list[str] = field(default_factory=list)  # most specific first
    package_dirs: dict[str, str] = field(default_factory=dict)  # framework -> site dir (maps)
    evidence: list[str] = field(default_factory=list)
    interpreter: bool = False

    @property
    def is_job(self) -> bool:
        return bool(self.runtimes or self.frameworks)

    @property
    def framework(self) -> str | None:
        return self.frameworks[0] if self.frameworks else None


def is_interpreter(exe: str) -> bool:
    return _INTERPRETER.fullmatch(os.path.basename(exe)) is not None


def script_argument(argv: Sequence[str]) -> tuple[str, str | None, int]:
    """For an interpreter's argv: (kind, value, index of its first own argument).

    kind is "script" (value: the path), "module" (-m: the module), "command" (-c: the code) or
    "none" (an interactive interpreter or stdin).
    """
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "-c"):
            if i + 1 >= len(argv):
                return "none", None, len(argv)
            return ("module" if arg == "-m" else "command"), argv[i + 1], i + 2
        if arg.startswith("-m") and len(arg) > 2:
            return "module", arg[2:], i + 1
        if arg.startswith("-c") and len(arg) > 2:
            return "command", arg[2:], i + 1
        if arg == "-":
            return "none", None, i + 1
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        i += 2 if arg in _PY_OPTS_WITH_VALUE else 1
    if i < len(argv):
        return "script", argv[i], i + 1
    return "none", None, len(argv)


def script_imports(text: bytes) -> list[str]:
    """Top-level modules a Python source imports (static: every import statement)."""
    return list(dict.fromkeys(m.decode() for m in _IMPORT.findall(text)))


def _add(c: Classification, name: str, evidence: str) -> None:
    if name not in c.frameworks:
        c.frameworks.append(name)
    if evidence not in c.evidence:
        c.evidence.append(evidence)


def classify(facts: Facts) -> Classification:
    c = Classification(interpreter=is_interpreter(facts.exe))
    found: dict[str, str] = {}
    for path in facts.maps:
        base = os.path.basename(path)
        for prefix, (runtime, accel) in RUNTIMES.items():
            if base.startswith(prefix) and runtime not in c.runtimes:
                c.runtimes.append(runtime)
                c.accelerator = c.accelerator or accel
                c.evidence.append(f"maps {path}")
        m = _SITE_PACKAGE.search(path)
        if m and m.group(1) in _BY_PACKAGE:
            fw = _BY_PACKAGE[m.group(1)]
            if fw.name not in found:
                found[fw.name] = path
                c.package_dirs[fw.name] = path[: m.start(1)].rstrip("/")
        if base.startswith(("libllama.so", "libggml")) and "llama.cpp" not in found:
            found["llama.cpp"] = path
    for fw in FRAMEWORKS:  # keep the specificity order
        if fw.name in found:
            _add(c, fw.name, f"maps {found[fw.name]}")
    exe_base = os.path.basename(facts.exe)
    argv0 = os.path.basename(facts.argv[0]) if facts.argv else ""
    for name in (exe_base, argv0):
        if name in _ENGINE_BINARIES:
            _add(c, _ENGINE_BINARIES[name], f"exe {name}")
    if c.interpreter:
        kind, value, _ = script_argument(facts.argv)
        if kind == "module" and value:
            top = value.split(".")[0]
            if top in _BY_PACKAGE:
                _add(c, _BY_PACKAGE[top].name, f"argv -m {value}")
        elif kind == "script" and value:
            base = os.path.basename(value)
            if base in _CONSOLE_SCRIPTS:
                _add(c, _CONSOLE_SCRIPTS[base], f"argv console script {base}")
            if facts.script_text is not None:
                for module in script_imports(facts.script_text):
                    if module in _BY_PACKAGE:
                        _add(c, _BY_PACKAGE[module].name, f"script {value} imports {module}")
    order = {fw.name: i for i, fw in enumerate(FRAMEWORKS)}
    c.frameworks.sort(key=order.__getitem__)
    return c


_TRAINING = re.compile(r"train|finetun|fine_tun|pretrain|sft|rlhf|dpo", re.IGNORECASE)
_INFERENCE = re.compile(r"infer|serve|server|predict|generat|chat|eval", re.IGNORECASE)


def job_type(c: Classification, argv: Sequence[str]) -> tuple[str, str]:
    """(training | inference | other, the evidence).

    In order: an inference engine (vLLM, Ollama, llama.cpp) is inference; else the script,
    module or program name, then the subcommand words of argv (not option values), name the
    work (``train``, ``finetune``, ``pretrain``, ``sft`` -> training; ``infer``, ``serve``,
    ``predict``, ``generate``, ``chat``, ``eval`` -> inference); else other.
    """
    for name in c.frameworks:
        fw = next(f for f in FRAMEWORKS if f.name == name)
        if fw.inference_engine:
            return "inference", f"framework {name} is an inference engine"
    names: list[str] = []
    if c.interpreter:
        kind, value, first = script_argument(argv)
        if value and kind in ("script", "module"):
            names.append(os.path.basename(value))
        rest = list(argv[first:])
    else:
        names.extend(os.path.basename(a) for a in argv[:1])
        rest = list(argv[1:])
    words = [
        a
        for i, a in enumerate(rest)
        if not a.startswith("-")
        and not (i and rest[i - 1].startswith("--") and "=" not in rest[i - 1])
        and "=" not in a
        and "/" not in a
    ]
    for source, items in (("name", names), ("subcommand", words)):
        for item in items:
            if _TRAINING.search(item):
                return "training", f"{source} {item!r}"
            if _INFERENCE.search(item):
                return "inference", f"{source} {item!r}"
    return "other", "no name or engine says training or inference"
