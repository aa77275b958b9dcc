"""The runtime packages never import the tests' tools, nor what only the tests install: a
trace validator, the trace processor or the perfetto wheel belong to the tests, not to what
`pip install .` runs."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("xpucore", "backend", "manager", "trace_export")
TEST_ONLY = ("tests", "perfetto", "pytest")


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, module) of each import of the file, relative ones resolved from its package."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            parts = [*base, *([node.module] if node.module else [])]
            yield from ((node.lineno, ".".join([*parts, a.name])) for a in node.names)


def test_runtime_never_imports_the_tests_tools() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for package in RUNTIME
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imports(path)
        if module.split(".")[0] in TEST_ONLY
    ]
    assert found == []


def test_the_scan_sees_each_way_of_importing(tmp_path: Path) -> None:
    (tmp_path / "trace_export").mkdir()
    module = tmp_path / "trace_export" / "chrome.py"
    module.write_text(
        "import tests.trace_tools.validate\n"
        "from tests.trace_tools import trace_processor as tp\n"
        "from .. import tests\n"
        "def f() -> None:\n    import perfetto.protos\n"
        "from trace_export import events\n"
    )
    assert list(imports(module, tmp_path)) == [
        (1, "tests.trace_tools.validate"),
        (2, "tests.trace_tools.trace_processor"),
        (3, "tests"),
        (6, "trace_export.events"),
        (5, "perfetto.protos"),
    ]
