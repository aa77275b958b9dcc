"""The layering of the runtime packages (issue #13 §1): ``xpucore`` imports nothing else of
the project, ``trace_export`` only ``xpucore``, ``backend`` both, ``manager`` only
``xpucore``; none imports ``tests`` or anything else at the repository's top level.

Every import counts: at module level, inside functions and ``TYPE_CHECKING`` blocks,
relative ones resolved, and ``importlib.import_module``/``__import__`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["ALLOWED", "layer_violations"]

ROOT = Path(__file__).resolve().parents[1]

# package -> the other packages of the project it may import
ALLOWED: dict[str, frozenset[str]] = {
    "xpucore": frozenset(),
    "trace_export": frozenset({"xpucore"}),
    "backend": frozenset({"xpucore", "trace_export"}),
    "manager": frozenset({"xpucore"}),
}

_DYNAMIC = {"import_module", "__import__"}


def _project_names(root: Path) -> set[str]:
    """What an absolute import of the project can start with: the top-level packages and
    modules of the repository (``tests``, ``bench``, ``setup`` and the layers)."""
    names = set(ALLOWED)
    for p in root.iterdir():
        if p.is_dir() and (p / "__init__.py").exists():
            names.add(p.name)
        elif p.suffix == ".py":
            names.add(p.stem)
    return names


def _imports(tree: ast.Module, package: list[str]) -> Iterator[tuple[int, str | None]]:
    """(line, dotted name) of each import in the module; ``package`` is the dotted package
    the module lives in, against which relative imports resolve. None for a relative import
    that climbs above the top-level package."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module
                continue
            if node.level > len(package):
                yield node.lineno, None
                continue
            base = package[: len(package) - node.level + 1]
            yield node.lineno, ".".join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            arg = node.args[0]
            if (
                name in _DYNAMIC
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                yield node.lineno, arg.value


def layer_violations(root: Path) -> list[str]:
    """Each import under ``root`` that breaks :data:`ALLOWED`, as ``path:line: message``."""
    project = _project_names(root)
    found: list[str] = []
    for top, allowed in ALLOWED.items():
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            package = list(rel.parent.parts)  # for a/b/c.py and a/b/__init__.py alike
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, name in _imports(tree, package):
                if name is None:
                    found.append(f"{rel}:{line}: relative import above {top}")
                    continue
                head = name.split(".")[0]
                if head in project and head != top and head not in allowed:
                    found.append(f"{rel}:{line}: {top} imports {head}")
    return found


def test_runtime_packages_keep_their_layers() -> None:
    assert layer_violations(ROOT) == []


def _tree(root: Path, files: dict[str, str]) -> None:
    for top in ALLOWED:
        (root / top).mkdir()
        (root / top / "__init__.py").write_text("")
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "xpucore/abi.py": "import numpy\nfrom . import protocol\nfrom .protocol import x\n",
        "trace_export/perfetto.py": "from xpucore import abi\nfrom .events import y\n",
        "backend/db/repo.py": "from .. import errors\nfrom ..trace import z\n"
                              "import trace_export.events\nfrom xpucore.abi import ABI\n",
        "manager/daemon.py": "import xpucore.protocol\nfrom manager.keys import k\n",
    })  # fmt: skip
    assert layer_violations(tmp_path) == []


@pytest.mark.parametrize(("path", "text", "message"), [
    ("xpucore/abi.py", "import backend\n", "xpucore/abi.py:1: xpucore imports backend"),
    ("xpucore/abi.py", "def f():\n    from trace_export import perfetto\n",
     "xpucore/abi.py:2: xpucore imports trace_export"),
    ("trace_export/perfetto.py", "from backend.db import repo\n",
     "trace_export/perfetto.py:1: trace_export imports backend"),
    ("trace_export/sub/m.py", "from ...backend import errors\n",
     "trace_export/sub/m.py:1: relative import above trace_export"),
    ("manager/daemon.py", "import backend.errors\n",
     "manager/daemon.py:1: manager imports backend"),
    ("manager/daemon.py", "if 1:\n    from trace_export.events import E\n",
     "manager/daemon.py:2: manager imports trace_export"),
    ("manager/daemon.py", "import importlib\nimportlib.import_module('backend.cli')\n",
     "manager/daemon.py:2: manager imports backend"),
    ("backend/db/repo.py", "from tests.ports import free_port\n",
     "backend/db/repo.py:1: backend imports tests"),
    ("backend/app.py", "import setup\n", "backend/app.py:1: backend imports setup"),
])  # fmt: skip
def test_a_wrong_import_is_reported(tmp_path: Path, path: str, text: str, message: str) -> None:
    _tree(tmp_path, {path: text, "setup.py": ""})
    assert layer_violations(tmp_path) == [message]
