"""A job as seed 000 section 3 describes it: the job, its parameters and its code.

Everything comes from /proc/<pid> (through a ``ProcessHandle`` pinned to the process) and from
files under the process's root read as the process could read them (``rootfs``). Nothing here
runs the target's code or follows its paths out of its root.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manager.jobs import params
from manager.jobs.classify import (
    MAPS_HINT,
    Classification,
    Facts,
    classify,
    is_interpreter,
    job_type,
    script_argument,
    script_imports,
)
from manager.jobs.container import container_of, own_mount_namespace
from manager.jobs.environ import read_environ
from manager.jobs.procfs import ProcessGone, ProcessHandle
from manager.jobs.rootfs import ConfinedRoot, Refused
from manager.jobs.table import boot_ns_to_unix_ms
from manager.jobs.versions import find_version, site_dirs

__all__ = [
    "SCRIPT_LIMIT",
    "SHELLS",
    "Inspection",
    "describe",
    "inspect",
    "model_formats",
    "open_root",
]

SCRIPT_LIMIT = 256 << 10
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
_MODEL_SUFFIXES = {
    ".pt": "pt",
    ".pth": "pt",
    ".safetensors": "safetensors",
    ".gguf": "gguf",
    ".onnx": "onnx",
    ".om": "om",
    ".mindir": "mindir",
}
_SHELL_OPTS_WITH_VALUE = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
_SO = re.compile(r"\.so(\.\d+)*$")
_SITE_PACKAGE = re.compile(r"/(?:site|dist)-packages/([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Inspection:
    """What one look at a process found: enough to classify it, and to describe it if a job."""

    exe: str
    argv: list[str]
    cwd: str | None
    maps: list[str]
    script_text: bytes | None
    classification: Classification


def open_root(proc: ProcessHandle, own_mnt_ns: str | None) -> ConfinedRoot:
    """The process's root, for reads confined to it with its own credentials."""
    host = proc.readlink("root") == "/" and proc.readlink("ns/mnt") == own_mnt_ns
    return ConfinedRoot(proc.open_root(), proc.creds(), host_root=host)


def _cwd(proc: ProcessHandle) -> str | None:
    cwd = proc.readlink("cwd")
    root = proc.readlink("root")
    if cwd and root and root != "/" and cwd.startswith(root.rstrip("/") + "/"):
        cwd = cwd[len(root.rstrip("/")) :]  # a chroot: paths as the process sees them
    return cwd


def _script(
    root: ConfinedRoot, cwd: str | None, argv: Sequence[str]
) -> tuple[str | None, bytes | None]:
    kind, value, _ = script_argument(argv)
    if kind == "script" and value:
        try:
            return value, root.read(root.join(cwd, value), SCRIPT_LIMIT).content
        except Refused:
            return value, None
    if kind == "command" and value is not None:
        return None, value.encode()
    return None, None


def inspect(
    proc: ProcessHandle,
    root: ConfinedRoot | None,
    own_mnt_ns: str | None = None,
    previous: Inspection | None = None,
    quick: bool = False,
) -> Inspection:
    """Read what classification needs and classify.

    root: the process's root, or None to open it only if needed (to read an interpreter's
    script, once per exec: previous keeps it). quick: skip parsing maps that name nothing
    classification looks for (the maps are then given as []).
    """
    exe = proc.readlink("exe") or ""
    argv = proc.cmdline()
    cwd = _cwd(proc)
    maps = proc.mapped_files(MAPS_HINT if quick else None)
    script_text = previous.script_text if previous and previous.argv == argv else None
    if script_text is None and is_interpreter(exe) and script_argument(argv)[0] != "none":
        if root is not None:
            script_text = _script(root, cwd, argv)[1]
        else:
            with open_root(proc, own_mnt_ns) as opened:
                script_text = _script(opened, cwd, argv)[1]
    c = classify(Facts(exe=exe, argv=argv, maps=maps, script_text=script_text))
    return Inspection(exe, argv, cwd, maps, script_text, c)


def model_formats(paths: Sequence[str]) -> list[str]:
    out: dict[str, None] = {}
    for path in paths:
        base = os.path.basename(path.partition("=")[2] if "=" in path else path).lower()
        suffix = os.path.splitext(base)[1]
        if suffix in _MODEL_SUFFIXES:
            out.setdefault(_MODEL_SUFFIXES[suffix], None)
        elif base.startswith("pytorch_model") and suffix == ".bin":
            out.setdefault("pt", None)
    return list(out)


def _shell_script(
    proc: ProcessHandle,
    ppid: int,
    parent_start: int | None,
    proc_root: Path,
    own_mnt_ns: str | None,
) -> dict[str, Any] | None:
    """The script a shell parent runs (``sh run.sh``, or ``./run.sh`` with a #! line)."""
    try:
        parent = ProcessHandle(ppid, parent_start, proc_root)
    except ProcessGone:
        return None
    with parent:
        try:
            argv = parent.cmdline()
            exe = os.path.basename(parent.readlink("exe") or "")
            if exe not in SHELLS and os.path.basename(argv[0] if argv else "") not in SHELLS:
                return None
            i = 1
            while i < len(argv) and argv[i].startswith(("-", "+")):
                if argv[i] in ("-c", "-s", "-i"):
                    return None  # a command string, stdin or an interactive shell
                i += 2 if argv[i] in _SHELL_OPTS_WITH_VALUE else 1
            if i >= len(argv):
                return None
            path = argv[i]
            with open_root(parent, own_mnt_ns) as root:
                try:
                    got = root.read(root.join(_cwd(parent), path), SCRIPT_LIMIT)
                except Refused as e:
                    return {"shScriptPath": path, "shScriptContent": None, "error": str(e)}
            return {
                "shScriptPath": path,
                "shScriptContent": got.content.decode(errors="replace"),
                "shScriptTruncated": got.truncated,
                "shellPid": ppid,
            }
        except ProcessGone:
            return None


def describe(
    proc: ProcessHandle,
    *,
    job_id: str,
    machine: str,
    status: dict[str, Any],
    parent_start: int | None = None,
    proc_root: Path = Path("/proc"),
    clk_tck: int | None = None,
    own_mnt_ns: str | None = None,
) -> dict[str, Any]:
    """The job's description (seed 000 §3.2) with its ``parameters`` (§3.3) and ``code`` (§3.4).

    status: ``status`` (running, exited, killed, lost), ``exitCode``, ``signal``, ``endTime``,
    as the process table knows them.
    """
    own_mnt_ns = own_mnt_ns if own_mnt_ns is not None else own_mount_namespace()
    tck = clk_tck or os.sysconf("SC_CLK_TCK")
    with open_root(proc, own_mnt_ns) as root:
        seen = inspect(proc, root, own_mnt_ns)
        c = seen.classification
        env, withheld = read_environ(proc)
        kind, value, first = script_argument(seen.argv) if c.interpreter else ("exe", seen.exe, 1)
        own_args = seen.argv[first:]
        configs = [params.read_config(root, seen.cwd, p) for p in params.config_paths(own_args)]
        sites = site_dirs(
            root, seen.cwd, seen.argv, seen.exe, env.get("PYTHONPATH"), c.package_dirs.values()
        )
        version = source = None
        if c.framework:
            version, source = find_version(root, c.framework, sites)
        container = container_of(proc, root, own_mnt_ns)
        open_files = proc.open_files()
    jtype, jtype_evidence = job_type(c, seen.argv)
    start_ms = boot_ns_to_unix_ms(proc.stat.start_ticks * 1_000_000_000 // tck)
    try:
        user: str | None = pwd.getpwuid(proc.creds().uid).pw_name
    except (KeyError, ProcessGone):
        user = None
    name = (
        os.path.basename(value)
        if value and kind in ("script", "exe")
        else value
        if kind == "module"
        else proc.stat.comm
    )
    loaded = list(dict.fromkeys(m.group(1) for p in seen.maps if (m := _SITE_PACKAGE.search(p))))
    imports = script_imports(seen.script_text) if seen.script_text else []
    return {
        "jobId": job_id,
        "nodeId": machine,
        "jobName": name,
        "jobType": jtype,
        "jobTypeEvidence": jtype_evidence,
        "framework": c.framework,
        "frameworkVersion": version,
        "frameworkVersionSource": source,
        "frameworks": c.frameworks,
        "accelerator": c.accelerator,
        "runtimes": c.runtimes,
        "evidence": c.evidence,
        "modelFormat": next(iter(model_formats(open_files + seen.maps + own_args)), None),
        "modelFiles": [p for p in open_files + seen.maps if model_formats([p])],
        "pid": proc.pid,
        "ppid": proc.stat.ppid,
        "pgid": proc.stat.pgid,
        "processName": proc.stat.comm,
        "commandLine": " ".join(seen.argv),
        "exe": seen.exe,
        "cwd": seen.cwd,
        "user": user,
        "uid": proc.creds().uid,
        "startTime": start_ms,
        "startTicks": proc.stat.start_ticks,
        "container": container,
        **status,
        "parameters": {
            "parameterRaw": " ".join(own_args),
            "parameterData": params.parse_args(own_args),
            "parameterSource": "command_line",
            "configFiles": configs,
            "envVars": env,
            "envVarsWithheld": withheld,
        },
        "code": {
            "scriptPath": value if kind in ("script", "module") else seen.exe,
            "scriptKind": kind,
            "scriptContent": (
                seen.script_text.decode(errors="replace") if seen.script_text is not None else None
            ),
            "importedLibraries": list(dict.fromkeys(loaded + imports)),
            "loadedPackages": loaded,
            "scriptImports": imports,
            "sharedLibraries": list(
                dict.fromkeys(os.path.basename(p) for p in seen.maps if _SO.search(p))
            ),
            "configFiles": [cfg["configFilePath"] for cfg in configs],
            **(
                _shell_script(proc, proc.stat.ppid, parent_start, proc_root, own_mnt_ns)
                or {"shScriptPath": None, "shScriptContent": None}
            ),
        },
    }
