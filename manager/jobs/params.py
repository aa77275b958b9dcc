"""A job's parameters: its arguments parsed, and the config files they name, read and parsed.

Arguments: ``--k v``, ``--k=v`` and ``k=v`` give k; a ``--flag`` followed by another option or
nothing is True. Values are typed as JSON would (int, float, true/false, null) when they
read as such, else kept as text. Config files: arguments (or values) ending in .yaml, .yml,
.json or .toml, read through the process's root (``rootfs``) up to ``CONFIG_LIMIT`` and
parsed; YAML only where PyYAML is installed (it is not a dependency of xputrace), otherwise
the content is given and ``parseError`` says why it was not parsed.
"""

from __future__ import annotations

import importlib
import json
import tomllib
from collections.abc import Sequence
from typing import Any

from manager.jobs.rootfs import ConfinedRoot, Refused

__all__ = ["CONFIG_LIMIT", "CONFIG_SUFFIXES", "config_paths", "parse_args", "read_config", "typed"]

CONFIG_LIMIT = 64 << 10
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")

_yaml: Any
try:
    _yaml = importlib.import_module("yaml")
except ImportError:  # pragma: no cover - PyYAML is in the venv here
    _yaml = None


def typed(text: str) -> Any:
    """text as a JSON scalar when it is one (32, 0.001, true, null), else text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) or value is None else text


def parse_args(args: Sequence[str]) -> dict[str, Any]:
    """``--k v``, ``--k=v``, ``k=v`` (and ``-k v``) as {k: value}; positional words are left."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            key, eq, value = arg.lstrip("-").partition("=")
            if eq:
                out[key] = typed(value)
            elif i + 1 < len(args) and not (
                args[i + 1].startswith("-") and not _is_number(args[i + 1])
            ):
                out[key] = typed(args[i + 1])
                i += 1
            else:
                out[key] = True
        elif "=" in arg and not arg.startswith("="):
            key, _, value = arg.partition("=")
            out[key] = typed(value)
        i += 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def config_paths(args: Sequence[str]) -> list[str]:
    """Arguments (or the value part of ``k=v`` ones) that name config files, in order."""
    out: list[str] = []
    for arg in args:
        value = arg.partition("=")[2] if "=" in arg else arg
        if value.lower().endswith(CONFIG_SUFFIXES) and value not in out:
            out.append(value)
    return out


def _parse(path: str, text: str) -> tuple[Any, str | None]:
    lower = path.lower()
    try:
        if lower.endswith(".json"):
            return json.loads(text), None
        if lower.endswith(".toml"):
            return tomllib.loads(text), None
        if _yaml is None:
            return None, "PyYAML is not installed: YAML is given as text only"
        return _yaml.safe_load(text), None
    except Exception as e:  # any parse error of untrusted text is reported, not raised
        return None, f"{type(e).__name__}: {e}"


def read_config(
    root: ConfinedRoot, cwd: str | None, path: str, limit: int = CONFIG_LIMIT
) -> dict[str, Any]:
    """The config file entry: path, content (text), parsed data or the reason it is not."""
    entry: dict[str, Any] = {"configFilePath": path}
    try:
        got = root.read(root.join(cwd, path), limit)
    except Refused as e:
        entry["error"] = str(e)
        return entry
    text = got.content.decode(errors="replace")
    entry.update(configFileContent=text, size=got.size, truncated=got.truncated)
    if got.truncated:
        entry["parseError"] = f"larger than {limit} bytes: not parsed"
        return entry
    data, error = _parse(path, text)
    if error:
        entry["parseError"] = error
    else:
        entry["parameterData"] = data
    return entry
