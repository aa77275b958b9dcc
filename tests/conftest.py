"""Test-wide fixtures and the rule that BPF tests never go missing quietly.

Tests marked ``bpf`` load eBPF programs: they need root, kernel BTF and the
uprobe PMU. Where those are present the tests run; where they are not, they
are skipped and the summary says so loudly. With XPUTRACE_REQUIRE_BPF=1 (CI),
a run that skipped any of them on a machine that could run them fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg_fixtures", "tests.backend.influx_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
BPF_SKIP_PREFIX = "BPF tests need root, BTF and uprobes"


def bpf_unavailable_reason() -> str | None:
    """Why this machine cannot run BPF tests, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "no kernel BTF at /sys/kernel/btf/vmlinux"
    if not Path("/sys/bus/event_source/devices/uprobe/type").exists():
        return "no uprobe PMU"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = bpf_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"{BPF_SKIP_PREFIX}: {reason}")
    for item in items:
        if "bpf" in item.keywords:
            item.add_marker(skip)


def _skipped_bpf(terminalreporter) -> list[str]:  # type: ignore[no-untyped-def]
    """Tests skipped by the BPF gate (not those skipped for another reason)."""
    return [
        r.nodeid
        for r in terminalreporter.stats.get("skipped", [])
        if BPF_SKIP_PREFIX in str(getattr(r, "longrepr", ""))
    ]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    skipped = _skipped_bpf(terminalreporter)
    if not skipped:
        return
    reason = bpf_unavailable_reason()
    terminalreporter.write_sep("!", f"{len(skipped)} BPF TESTS WERE SKIPPED", red=True, bold=True)
    terminalreporter.write_line(f"this machine: {reason or 'could run them'}")
    for nodeid in skipped:
        terminalreporter.write_line(f"  skipped: {nodeid}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("XPUTRACE_REQUIRE_BPF") != "1" or bpf_unavailable_reason() is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _skipped_bpf(reporter):
        reporter.write_line(
            "XPUTRACE_REQUIRE_BPF=1 and this machine can run BPF tests, but some were skipped",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def build_dir() -> Path:
    path = Path(os.environ.get("XPUTRACE_BUILD_DIR", ROOT / "build"))
    if not (path / "xputrace-agent").exists():
        pytest.fail(f"xputrace-agent is not built in {path}: run `make build` first")
    return path


@pytest.fixture(scope="session")
def cudart12() -> Path:
    """The real libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel."""
    import nvidia.cuda_runtime as m

    path = Path(next(iter(m.__path__))) / "lib" / "libcudart.so.12"
    assert path.exists(), path
    return path


@pytest.fixture(scope="session")
def trace_processor() -> Path:
    """The WebAssembly trace processor's folder (tests.trace_tools.trace_processor). Missing, the
    test is skipped, unless XPUTRACE_REQUIRE_TRACE_PROCESSOR=1 (make test), where it fails."""
    from tests.trace_tools import trace_processor as tp

    folder = tp.assets()
    if folder is None:
        why = (
            f"no trace processor (node, and {tp.ASSETS_ENV} or build/trace_processor from "
            "scripts/fetch-trace-processor)"
        )
        if os.environ.get(tp.REQUIRE_ENV) == "1":
            pytest.fail(why)
        pytest.skip(why)
    return folder
