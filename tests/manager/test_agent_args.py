"""manager.agent_args: a START, the settings and the target's facts to the agent's command
line, or the refusal with the seed's error code. Pure: nothing here needs root or a
process; the facts are what manager.target_facts reads (tests/manager/test_target_facts.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from manager.agent_args import (
    Library,
    Process,
    TargetFacts,
    agent_args,
    check_command,
    key_dir,
    keyfile,
    needs_hooks,
    needs_python,
)
from manager.python.hooks import PythonHooks
from manager.python.offsets import OFFSETS
from manager.python.target import PythonTarget, UnsupportedPython
from manager.settings import Settings
from manager.supervisor import AGENT_TYPES
from manager.syscall_hub import HUB_RINGBUF_KB
from tests.manager.conftest import MACHINE_ID
from xpucore.protocol import (
    AgentConfig,
    CommandError,
    ErrorCode,
    StartMonitor,
    StepWindow,
    Target,
)

MID = "123e4567-e89b-42d3-a456-426614174000"
DATA = "tcp://127.0.0.1:5556"
PID = 4242
HEAD = ["--monitor-id", MID, "--monitor-type"]
USER = Process(exists=True, user="alice", comm="python3")  # a user's process, readable
LIBCUDART = "/opt/cuda/lib64/libcudart.so.12.9.79"
PY311 = PythonTarget(PID, "/usr/bin/python3.11", 0x7F00DEAD0000, (3, 11, 2), OFFSETS[(3, 11)])
PY310 = replace(
    PY311, binary="/usr/lib/libpython3.10.so.1.0", version=(3, 10, 13), offsets=OFFSETS[(3, 10)]
)
HOOKS = PythonHooks(
    PY311.binary,
    "opcode",
    entry=(0x1000, 0x1010),
    exit=(0x2000,),
    entry_sites=(0x1004, 0x1014),
    exit_sites=(0x2004,),
)
PY_OFFSETS = ",".join(f"{k}={v}" for k, v in OFFSETS[(3, 11)].items())


def start(
    kind: str = "CUDA", target: Target | None = None, *, endpoint: str | None = DATA, **kw: Any
) -> StartMonitor:
    return StartMonitor("r1", MID, kind, target or Target(PID), data_endpoint=endpoint, **kw)


def head(kind: str) -> list[str]:
    return [*HEAD, kind, "--machine-id", MACHINE_ID]


def args(s: Settings, c: StartMonitor, facts: TargetFacts | None = None) -> list[str]:
    return agent_args(c, AGENT_TYPES, s, MACHINE_ID, facts or TargetFacts(process=USER))


def refusal(s: Settings, c: StartMonitor, facts: TargetFacts | None = None) -> str:
    with pytest.raises(CommandError) as e:
        args(s, c, facts)
    return f"{e.value.code.value}: {e.value.message}"


def test_cuda_process(settings: Callable[..., Settings]) -> None:
    s = settings()
    key = s.runtime_dir / "keys" / f"{MID}.key"
    c = start(config=AgentConfig(attach_mode="perf", ringbuf_kb=64, batch_events=512, flush_ms=20))
    assert args(s, c) == [
        *head("CUDA"),
        "--target-pid",
        str(PID),
        "--backend-zmq-endpoint",
        DATA,
        "--attach-mode",
        "perf",
        "--ringbuf-kb",
        "64",
        "--batch-events",
        "512",
        "--flush-ms",
        "20",
        "--curve-keyfile",
        str(key),
    ]
    assert keyfile(c, s) == key and key.parent == key_dir(s)
    plain = settings(data_curve=False)  # no CURVE, no key file
    assert args(plain, start()) == [
        *head("CUDA"),
        "--target-pid",
        str(PID),
        "--backend-zmq-endpoint",
        DATA,
    ]
    assert keyfile(start(), plain) is None
    assert not s.runtime_dir.exists(), "building the command line wrote something"


def test_cuda_process_checked_against_its_task_name(settings: Callable[..., Settings]) -> None:
    s = settings()
    got = args(s, start(target=Target(PID, comm="python3")))
    assert got[len(head("CUDA")) :][:2] == ["--target-pid", str(PID)]
    assert "--target-comm" not in got  # checked here; the kernel is not told
    assert refusal(s, start(target=Target(PID, comm="sshd"))) == (
        f"TARGET_NOT_FOUND: target.comm: PID {PID} does not run 'sshd'"
    )
    gone_comm = TargetFacts(process=replace(USER, comm=None))  # exited while it was read
    assert refusal(s, start(target=Target(PID, comm="python3")), gone_comm) == (
        f"TARGET_NOT_FOUND: Failed to find target PID {PID}."
    )


def test_acl_library_in_every_process_to_a_capture(settings: Callable[..., Settings]) -> None:
    s = settings()
    real = "/usr/local/Ascend/lib64/libascendcl.so"
    c = start(
        "ACL", Target(library_path="/opt/cann/latest/libascendcl.so", comm="train"), endpoint=None
    )
    facts = TargetFacts(library=Library(real, "file"))
    assert args(s, c, facts) == [
        *head("ACL"),
        "--target-library",
        real,
        "--target-comm",
        "train",
        "--output",
        str(s.capture_dir / f"{MID}.bin"),
    ]
    assert keyfile(c, s) is None  # a capture needs no key


def test_library_and_process(settings: Callable[..., Settings]) -> None:
    """A pid and a library: the library is probed in that process; target.comm goes to the
    agent with the library, and is not checked against the pid."""
    s = settings()
    c = start(target=Target(PID, "/usr/lib/libcudart.so.12", comm="worker"))
    facts = TargetFacts(process=USER, library=Library(LIBCUDART, "file"))
    assert args(s, c, facts)[len(head("CUDA")) : -4] == [
        "--target-pid",
        str(PID),
        "--target-library",
        LIBCUDART,
        "--target-comm",
        "worker",
    ]


@pytest.mark.parametrize(
    ("library", "expected"),
    [
        (
            Library(LIBCUDART, "missing"),
            "TARGET_NOT_FOUND: Failed to find target library /usr/lib/libcudart.so.12.",
        ),
        (
            Library("/usr/lib/libcudart.so.12", "other"),  # a directory, or unreadable
            "INVALID_CONFIG: target.library_path: '/usr/lib/libcudart.so.12' is not a library of "
            "libcudart*.so*, libcuda.so*, libnccl*.so*",
        ),
        (
            Library("/usr/bin/dash", "file"),  # a link with a library's name to something else
            "INVALID_CONFIG: target.library_path: '/usr/lib/libcudart.so.12' is not a library of "
            "libcudart*.so*, libcuda.so*, libnccl*.so*",
        ),
    ],
)
def test_library_facts_refused(
    settings: Callable[..., Settings], library: Library, expected: str
) -> None:
    c = start(target=Target(library_path="/usr/lib/libcudart.so.12"))
    assert refusal(settings(), c, TargetFacts(library=library)) == expected


def test_syscall(settings: Callable[..., Settings]) -> None:
    s = settings()
    c = start(
        "SYSCALL",
        Target(comm="sc_worker", syscalls=("read", "write")),
        config=AgentConfig(ringbuf_kb=HUB_RINGBUF_KB),
    )
    assert args(s, c, TargetFacts()) == [
        *head("SYSCALL"),
        "--target-comm",
        "sc_worker",
        "--syscalls",
        "read,write",
        "--backend-zmq-endpoint",
        DATA,
        "--ringbuf-kb",
        str(HUB_RINGBUF_KB),
        "--curve-keyfile",
        str(s.runtime_dir / "keys" / f"{MID}.key"),
    ]
    one = start("SYSCALL", Target(PID, comm="python3"))  # the kernel filters by name too
    assert args(s, one)[len(head("SYSCALL")) :][:4] == [
        "--target-pid",
        str(PID),
        "--target-comm",
        "python3",
    ]
    big = replace(c, config=AgentConfig(ringbuf_kb=HUB_RINGBUF_KB * 2))
    assert refusal(s, big, TargetFacts()) == (
        "INVALID_CONFIG: config.ringbuf_kb: SYSCALL monitors share one tracer, whose ring "
        f"buffer is {HUB_RINGBUF_KB} KB"
    )


def test_python_sampler_and_calls(settings: Callable[..., Settings]) -> None:
    s = settings()
    c = start("PYTHON", config=AgentConfig(sample_hz=99, functions=("Trainer.step", "loss")))
    assert needs_python(c)
    facts = TargetFacts(process=USER, python=PY311, hooks=HOOKS)
    assert args(s, c, facts) == [
        *head("PYTHON"),
        "--target-pid",
        str(PID),
        "--backend-zmq-endpoint",
        DATA,
        "--py-runtime",
        "0x7f00dead0000",
        "--py-offsets",
        PY_OFFSETS,
        "--py-binary",
        "/usr/bin/python3.11",
        "--sample-hz",
        "99",
        "--py-functions",
        "Trainer.step,loss",
        "--py-hooks",
        "opcode:0x1004,0x1014:0x2004",
        "--curve-keyfile",
        str(s.runtime_dir / "keys" / f"{MID}.key"),
    ]
    got = args(s, start("PYTHON"), facts)  # the sampler at its default rate, no calls
    assert got[got.index("--py-binary") + 1] == PY311.binary
    assert "--sample-hz" not in got and "--py-functions" not in got


@pytest.mark.parametrize("kind", ["CUDA", "ACL"])
def test_python_stacks(settings: Callable[..., Settings], kind: str) -> None:
    s = settings()
    c = start(kind, config=AgentConfig(python_stacks=True, ringbuf_kb=256))
    assert needs_python(c) and not needs_python(start(kind))
    assert args(s, c, TargetFacts(process=USER, python=PY311)) == [
        *head(kind),
        "--target-pid",
        str(PID),
        "--backend-zmq-endpoint",
        DATA,
        "--ringbuf-kb",
        "256",
        "--py-runtime",
        "0x7f00dead0000",
        "--py-offsets",
        PY_OFFSETS,
        "--curve-keyfile",
        str(s.runtime_dir / "keys" / f"{MID}.key"),
    ]
    no = UnsupportedPython("/usr/bin/node: no _PyRuntime: not CPython")
    assert refusal(s, c, TargetFacts(process=USER, python=no)) == (
        "INVALID_CONFIG: config.python_stacks: /usr/bin/node: no _PyRuntime: not CPython"
    )


def test_python_refusals(settings: Callable[..., Settings]) -> None:
    s = settings()
    calls = start("PYTHON", config=AgentConfig(functions=("Trainer.step",)))
    no = UnsupportedPython("CPython 3.9 is not supported (3.10-3.14 are)")
    assert refusal(s, start("PYTHON"), TargetFacts(process=USER, python=no)) == (
        "INVALID_CONFIG: target.pid: CPython 3.9 is not supported (3.10-3.14 are)"
    )
    no_hooks = UnsupportedPython("no opcode_targets table in /usr/bin/python3.11")
    assert refusal(s, calls, TargetFacts(process=USER, python=PY311, hooks=no_hooks)) == (
        "INVALID_CONFIG: config.functions: no opcode_targets table in /usr/bin/python3.11"
    )
    # 3.10 code objects carry co_name only: a qualified name could never match
    old = TargetFacts(process=USER, python=PY310, hooks=replace(HOOKS, mode="eval_frame"))
    assert refusal(
        s, replace(calls, config=AgentConfig(functions=("step", "Model.forward"))), old
    ) == (
        "INVALID_CONFIG: config.functions[1]: 'Model.forward' is a qualified name, and the "
        "target runs CPython 3.10, whose functions carry no qualified name (3.11+ do); name "
        "it 'forward' (every function of that name) instead"
    )
    got = args(s, replace(calls, config=AgentConfig(functions=("step",))), old)
    assert got[got.index("--py-hooks") + 1].startswith("eval:")
    for c, expected in (
        (
            start("SYSCALL", config=AgentConfig(python_stacks=True)),
            "config.python_stacks: not supported by SYSCALL monitors",
        ),
        (
            start(config=AgentConfig(functions=("step",))),
            "config.functions: not supported by CUDA monitors",
        ),
        (
            start(
                target=Target(library_path="/usr/lib/libcudart.so.12"),
                config=AgentConfig(python_stacks=True),
            ),
            "config.python_stacks: needs a CUDA, ACL or PYTHON monitor of one process (target.pid)",
        ),
        (
            start("PYTHON", Target(comm="python3")),
            "target.pid: needs a CUDA, ACL or PYTHON monitor of one process (target.pid)",
        ),
    ):
        assert refusal(s, c, TargetFacts()).startswith(f"INVALID_CONFIG: {expected}")


def test_allowed_users(settings: Callable[..., Settings]) -> None:
    """An operator with granted Unix accounts traces only those accounts' processes, named
    by pid: a library in every process, or a task name, needs an admin."""
    s = settings()
    granted = start(target=Target(PID), allowed_users=("alice", "bob"))
    assert args(s, granted) == args(s, start())
    for users in (("bob",), ()):
        assert refusal(s, replace(granted, allowed_users=users)) == (
            f"PERMISSION_DENIED: target.pid: PID {PID} belongs to no Unix account this user "
            "was granted"
        )
    nobody = TargetFacts(process=replace(USER, user=None))  # a uid with no name here
    assert refusal(s, granted, nobody).startswith("PERMISSION_DENIED: target.pid: ")
    for c in (
        start(target=Target(library_path="/usr/lib/libcudart.so.12")),
        start(target=Target(PID, library_path="/usr/lib/libcudart.so.12")),
        start("SYSCALL", Target(comm="sleep")),
    ):
        assert refusal(s, replace(c, allowed_users=("alice",)), TargetFacts()) == (
            "PERMISSION_DENIED: target: only a process named by target.pid may be traced by a "
            "user with granted Unix accounts; a library or task name in every process needs "
            "an admin"
        )


def test_process_refused(settings: Callable[..., Settings]) -> None:
    s = settings()
    for kind in ("CUDA", "ACL", "SYSCALL", "PYTHON"):
        c = start(kind)
        assert refusal(s, c, TargetFacts(process=Process(exists=False))) == (
            f"TARGET_NOT_FOUND: Failed to find target PID {PID}."
        )
        assert refusal(s, c, TargetFacts(process=replace(USER, platform=True))) == (
            f"PERMISSION_DENIED: target.pid: PID {PID} is refused: xputrace never traces its "
            "own processes, pid 1 or kernel threads"
        )


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        (
            start(machine_id="another-machine"),
            f"machine_id: this is machine '{MACHINE_ID}', not 'another-machine'",
        ),
        (start("NCCL"), "monitor_type: 'NCCL' is not supported here"),
        (
            start(target=Target(library_path="lib/libcudart.so")),
            "target.library_path: 'lib/libcudart.so' is not absolute",
        ),
        (
            start(target=Target(library_path="/bin/sh")),
            "target.library_path: '/bin/sh' is not a library of libcudart*.so*, libcuda.so*, "
            "libnccl*.so*",
        ),
        (
            start("ACL", Target(library_path="/usr/lib/libcudart.so.12")),
            "target.library_path: '/usr/lib/libcudart.so.12' is not a library of libacl_rt.so*, "
            "libascendcl.so*, libacl_op_compiler.so*, libopapi.so*, libcust_opapi.so*, "
            "libaclnn_*.so*, libhccl.so*",
        ),
        (
            start(endpoint="tcp://evil.example:5556"),
            "backend_zmq_data_endpoint: 'tcp://evil.example:5556' is not an allowed data endpoint "
            "for this manager",
        ),
        (
            start(endpoint="ipc:///tmp/x"),
            "backend_zmq_data_endpoint: 'ipc:///tmp/x' is not an allowed data endpoint for this "
            "manager",
        ),
        (
            start(target=Target(PID, syscalls=("read",))),
            "target.syscalls: not supported by CUDA monitors (they take target comm, library_path, "
            "pid)",
        ),
        (
            start("SYSCALL", Target(library_path="/usr/lib/libc.so.6")),
            "target.library_path: not supported by SYSCALL monitors (they take target comm, pid, "
            "syscalls)",
        ),
        # what the seed lets a client send but no monitor type does: refused, never ignored
        (
            start(config=AgentConfig(enable_profiling=True)),
            "config.enable_profiling: not supported by CUDA monitors",
        ),
        (
            start(config=AgentConfig(sampling_rate=0.5)),
            "config.sampling_rate: not supported by CUDA monitors",
        ),
        (
            start(config=AgentConfig(sample_hz=99)),
            "config.sample_hz: not supported by CUDA monitors",
        ),
        (
            start("SYSCALL", config=AgentConfig(attach_mode="perf")),
            "config.attach_mode: not supported by SYSCALL monitors",
        ),
        (
            start(target=Target(comm="python3")),
            "target.pid: missing: give target.pid or target.library_path",
        ),
    ],
)
def test_command_refused_before_anything_is_read(
    settings: Callable[..., Settings], c: StartMonitor, expected: str
) -> None:
    """check_command decides these from the command alone (no facts: nothing was read), and
    agent_args decides them alike."""
    s = settings()
    for check in (
        lambda: check_command(c, AGENT_TYPES, s, MACHINE_ID),
        lambda: agent_args(c, AGENT_TYPES, s, MACHINE_ID, TargetFacts()),
    ):
        with pytest.raises(CommandError) as e:
            check()
        assert e.value.code == ErrorCode.INVALID_CONFIG
        assert e.value.message.startswith(expected), e.value.message


def test_no_data_endpoint_without_a_capture_dir(settings: Callable[..., Settings]) -> None:
    assert refusal(settings(capture_dir=None), start(endpoint=None)) == (
        "INVALID_CONFIG: backend_zmq_data_endpoint: missing"
    )


def test_facts_the_command_needs_must_have_been_read(settings: Callable[..., Settings]) -> None:
    """A caller that skipped reading a fact is a bug, not a refusal to answer the backend."""
    s = settings()
    for c, facts in (
        (start(), TargetFacts()),
        (start(target=Target(library_path=LIBCUDART)), TargetFacts()),
        (start("PYTHON"), TargetFacts(process=USER)),
        (
            start("PYTHON", config=AgentConfig(functions=("f",))),
            TargetFacts(process=USER, python=PY311),
        ),
    ):
        with pytest.raises(ValueError, match="which was not read"):
            agent_args(c, AGENT_TYPES, s, MACHINE_ID, facts)


@pytest.mark.parametrize("kind", ["CUDA", "ACL", "PYTHON"])
def test_step_window(settings: Callable[..., Settings], kind: str) -> None:
    """config.window: the target's call hooks and --window; a CUDA or ACL monitor gets the
    interpreter's facts for the hooks only (--no-py-stacks) unless it asked for stacks."""
    s = settings()
    w = StepWindow("Optimizer.step", 100, 10)
    c = start(kind, config=AgentConfig(window=w))
    assert needs_python(c) and needs_hooks(c)
    got = args(s, c, TargetFacts(process=USER, python=PY311, hooks=HOOKS))
    tail = got[got.index("--py-runtime") : got.index("--curve-keyfile")]
    window = ["--py-hooks", "opcode:0x1004,0x1014:0x2004", "--window", "Optimizer.step:100:10"]
    if kind == "PYTHON":
        assert tail == ["--py-runtime", "0x7f00dead0000", "--py-offsets", PY_OFFSETS,
                        "--py-binary", PY311.binary, *window]  # fmt: skip
    else:
        assert tail == ["--py-runtime", "0x7f00dead0000", "--py-offsets", PY_OFFSETS,
                        *window, "--py-binary", PY311.binary, "--no-py-stacks"]  # fmt: skip
        stacks = start(kind, config=AgentConfig(window=w, python_stacks=True))
        assert "--no-py-stacks" not in args(
            s, stacks, TargetFacts(process=USER, python=PY311, hooks=HOOKS)
        )
    no = UnsupportedPython("/usr/bin/node: no _PyRuntime: not CPython")
    field = "target.pid" if kind == "PYTHON" else "config.window"
    assert refusal(s, c, TargetFacts(process=USER, python=no)) == (
        f"INVALID_CONFIG: {field}: /usr/bin/node: no _PyRuntime: not CPython"
    )
    no_hooks = UnsupportedPython("no opcode_targets table in /usr/bin/python3.11")
    assert refusal(s, c, TargetFacts(process=USER, python=PY311, hooks=no_hooks)) == (
        "INVALID_CONFIG: config.window: no opcode_targets table in /usr/bin/python3.11"
    )
    old = TargetFacts(process=USER, python=PY310, hooks=replace(HOOKS, mode="eval_frame"))
    assert refusal(s, c, old).startswith(
        "INVALID_CONFIG: config.window.function: 'Optimizer.step' is a qualified name"
    )


def test_step_window_refusals(settings: Callable[..., Settings]) -> None:
    s = settings()
    w = AgentConfig(window=StepWindow("step", 0, 1))
    for c, expected in (
        (start("SYSCALL", config=w), "config.window: not supported by SYSCALL monitors"),
        (
            start(target=Target(library_path="/usr/lib/libcudart.so.12"), config=w),
            "config.window: needs a CUDA, ACL or PYTHON monitor of one Python process",
        ),
    ):
        assert refusal(s, c, TargetFacts()).startswith(f"INVALID_CONFIG: {expected}")
