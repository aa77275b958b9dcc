"""The environment variables a job description may show: an allow-list, secrets never read.

/proc/<pid>/environ is read into one bytearray that is overwritten with zeros before this
module returns, and only names are looked at until a name is allowed: the value of any other
variable, secret or not, is never copied into a Python object of its own.
"""

from __future__ import annotations

import re

from manager.jobs.procfs import ProcessGone, ProcessHandle

__all__ = [
    "ALLOWED_NAMES",
    "ALLOWED_PREFIXES",
    "ENVIRON_LIMIT",
    "is_allowed",
    "is_secret",
    "read_environ",
]

ALLOWED_NAMES = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "ASCEND_RT_VISIBLE_DEVICES",
        "ASCEND_VISIBLE_DEVICES",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "NODE_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
        "RAY_JOB_ID",
        "JOB_COMPLETION_INDEX",  # a Kubernetes Indexed Job's pod: its index
        "HOSTNAME",  # in a pod: its name (an Indexed Job's is <job>-<index>)
        "PYTHONPATH",
        "OMP_NUM_THREADS",
    }
)
ALLOWED_PREFIXES = ("SLURM_", "TORCHELASTIC_", "HCCL_", "ASCEND_")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL", re.IGNORECASE)
#: The most of /proc/<pid>/environ read (the kernel's limit for the whole of argv + envp is
#: far larger, but jobs' environments are a few KiB).
ENVIRON_LIMIT = 256 << 10


def is_secret(name: str) -> bool:
    return _SECRET.search(name) is not None


def is_allowed(name: str) -> bool:
    return not is_secret(name) and (name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES))


def read_environ(
    proc: ProcessHandle, limit: int = ENVIRON_LIMIT
) -> tuple[dict[str, str], list[str]]:
    """(allowed variables, names withheld as secret-looking among those the list would allow).

    The second list names variables such as ``HCCL_AUTH_TOKEN`` whose prefix is allowed but
    whose name looks secret: their values were not read.
    """
    buf = bytearray(limit)
    try:
        used = proc.read_into("environ", buf)
    except ProcessGone:
        return {}, []
    allowed: dict[str, str] = {}
    withheld: list[str] = []
    try:
        pos = 0
        while pos < used:
            end = buf.find(b"\0", pos, used)
            if end < 0:
                end = used  # the last entry, maybe cut by the limit: take its name only
            eq = buf.find(b"=", pos, end)
            if eq > pos:
                name = bytes(buf[pos:eq]).decode(errors="replace")
                if is_allowed(name) and end < used:
                    allowed[name] = bytes(buf[eq + 1 : end]).decode(errors="replace")
                elif is_secret(name) and name.startswith(ALLOWED_PREFIXES):
                    withheld.append(name)
            pos = end + 1
    finally:
        buf[:] = bytes(len(buf))
    return allowed, withheld
