"""Request bodies of the REST API (seeds/003, part 1), typed and validated with msgspec.

decode_body() turns a validation failure into a 400 that names the field.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web

from backend import emails, password_policy
from backend.errors import BadRequest
from backend.roles import Role
from xpucore import abi

__all__ = [
    "InviteBody",
    "JobBatchStop",
    "JobTraceCreate",
    "LoginBody",
    "MonitorConfig",
    "MonitorCreate",
    "MonitorTarget",
    "RefreshBody",
    "RegisterBody",
    "StepWindow",
    "TraceGenerate",
    "UserPatch",
    "check_supported",
    "decode_body",
    "path_text",
    "path_uuid",
]

# PostgreSQL's text cannot hold NUL (U+0000): no string field that is stored or looked up
# takes one (decode_body says so by name; the patterns put it in the OpenAPI document).
NO_NUL = r"^[^\x00]*$"
_ADDR = r"[^@\s\x00-\x1f\x7f]+"
_EMAIL = re.compile(rf"^{_ADDR}@{_ADDR}\.{_ADDR}$")
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=_EMAIL.pattern,
        description="stored NFKC-normalised, in lower case",
    ),
]
# the length is checked with the rest of the rule (RegisterBody), so the 400 says the rule
Password = Annotated[
    str,
    msgspec.Meta(
        max_length=1024,
        pattern=NO_NUL,
        description=password_policy.RULE,
        extra_json_schema={"minLength": password_policy.MIN_LENGTH},
    ),
]
Name = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
MonitorType = Literal["CUDA", "ACL", "PYTHON", "SYSCALL", "OLLAMA"]


Token = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]


def _normal_email(email: str) -> str:
    """email as stored (backend.emails.normalise); still an address once normalised."""
    normal = emails.normalise(email)
    if len(normal) > 254 or not _EMAIL.match(normal):
        raise ValueError("is not an e-mail address once NFKC-normalised - at `$.email`")
    return normal


class RegisterBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    display_name: Name = ""
    # with registration closed: the token of an admin's invite for this e-mail
    invite_token: Token | None = None

    def __post_init__(self) -> None:
        self.email = _normal_email(self.email)
        problem = password_policy.problem(self.password, self.email)
        if problem:
            raise ValueError(
                f"{problem}; a password must be {password_policy.RULE} - at `$.password`"
            )


class InviteBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    role: Role = "viewer"

    def __post_init__(self) -> None:
        self.email = _normal_email(self.email)


UnixAccount = Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]


class UserPatch(msgspec.Struct, forbid_unknown_fields=True):
    """Either or both: the role, and the Unix accounts whose processes the user may trace
    (the target policy: an operator traces processes of these accounts only, named by pid)."""

    role: Role | None = None
    unix_accounts: Annotated[list[UnixAccount], msgspec.Meta(max_length=64)] | None = None


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024, pattern=NO_NUL)]

    def __post_init__(self) -> None:
        self.email = _normal_email(self.email)


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Token


SyscallName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class MonitorTarget(msgspec.Struct, forbid_unknown_fields=True):
    pid: Annotated[int, msgspec.Meta(ge=1, le=4_194_304)] | None = None
    comm: Annotated[str, msgspec.Meta(min_length=1, max_length=15, pattern=NO_NUL)] | None = None
    library_path: (
        Annotated[str, msgspec.Meta(min_length=2, max_length=4096, pattern=r"^/[^\x00]*$")] | None
    ) = None
    binary_path: (
        Annotated[str, msgspec.Meta(min_length=2, max_length=4096, pattern=r"^/[^\x00]*$")] | None
    ) = None
    # SYSCALL: record only these (names as in xpucore/include/syscall_nr.h); all when absent
    syscalls: Annotated[list[SyscallName], msgspec.Meta(min_length=1, max_length=512)] | None = None


# A Python function's qualified name (co_qualname): Model.forward, main.<locals>.step
FunctionName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.<>]+$")
]


class StepWindow(msgspec.Struct, forbid_unknown_fields=True):
    """Events only from the start of call skip+1 of a Python function to the end of call
    skip+count (counted in the process, every thread); then the monitor stops by itself."""

    function: FunctionName
    count: Annotated[int, msgspec.Meta(ge=1, le=1 << 62)]
    skip: Annotated[int, msgspec.Meta(ge=0, le=1 << 62)] = 0


class MonitorConfig(msgspec.Struct, forbid_unknown_fields=True):
    sampling_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0
    enable_profiling: bool = False
    python_stacks: bool = False  # CUDA or ACL, one process: each call's Python stack
    sample_hz: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # PYTHON
    # PYTHON: every call of these functions (qualified names), exactly, start to return
    functions: Annotated[list[FunctionName], msgspec.Meta(min_length=1, max_length=8)] | None = None
    # CUDA, ACL or PYTHON of one Python process: trace only these calls of a function (steps)
    window: StepWindow | None = None


class MonitorCreate(msgspec.Struct, forbid_unknown_fields=True):
    monitor_type: MonitorType
    target: MonitorTarget
    config: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    display_name: Name = ""

    def __post_init__(self) -> None:
        t = self.target
        if self.monitor_type == "PYTHON" and (t.pid is None or t.library_path is not None):
            raise ValueError(
                "a PYTHON monitor samples one process: needs pid, no library_path - at `$.target`"
            )
        if self.config.window is not None and (
            self.monitor_type not in ("CUDA", "ACL", "PYTHON") or t.pid is None
        ):
            raise ValueError(
                "a step window needs a CUDA, ACL or PYTHON monitor of one Python process (pid)"
                " - at `$.config.window`"
            )
        if self.monitor_type == "SYSCALL":
            if t.library_path is not None:
                raise ValueError("a SYSCALL monitor takes no library - at `$.target.library_path`")
            if t.pid is None and t.comm is None:
                raise ValueError("needs pid or comm - at `$.target`")
            known = set(abi.function_names("SYSCALL").values())
            for i, name in enumerate(t.syscalls or ()):
                if name not in known:
                    raise ValueError(f"unknown syscall {name!r} - at `$.target.syscalls[{i}]`")
            return
        if t.syscalls is not None:
            raise ValueError("only for SYSCALL monitors - at `$.target.syscalls`")
        if self.config.functions is not None and self.monitor_type != "PYTHON":
            raise ValueError("only for PYTHON monitors - at `$.config.functions`")
        if t.pid is None and t.library_path is None:
            raise ValueError("needs pid or library_path - at `$.target`")


def check_supported(body: MonitorCreate, announced: Mapping[str, Any] | None) -> None:
    """400 naming monitor_type when the machine's manager does not run that type, or the
    first target or config field set (to other than its default) that the type does nothing
    with there. sampling_rate and enable_profiling are no type's: only 1.0 (every call is
    recorded) and false pass. A machine that announced nothing is not checked here."""
    if announced is None:
        return
    options = announced.get(body.monitor_type, False)
    if options is False:
        runs = ", ".join(sorted(announced)) or "none"
        raise BadRequest(
            "monitor_type",
            f"this machine cannot run {body.monitor_type} monitors (it runs: {runs})",
        )
    if not isinstance(options, Mapping):
        return  # an older manager: types only
    part: str
    for part, given in (("target", body.target), ("config", body.config)):
        taken = set(options.get(part) or ())
        for f in msgspec.structs.fields(given):
            default = f.default if f.default_factory is msgspec.NODEFAULT else f.default_factory()
            if f.name not in taken and getattr(given, f.name) != default:
                known = [g.name for g in msgspec.structs.fields(given) if g.name in taken]
                raise BadRequest(
                    f"{part}.{f.name}",
                    f"not supported by {body.monitor_type} "
                    f"monitors on this machine (they take {part} "
                    f"{', '.join(known) or 'fields: none'})",
                )


# 1..200 characters, not all blank, no control characters.
TraceName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^(?=.*\S)[^\x00-\x1f\x7f]+$")
]


class TraceGenerate(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/v1/traces:generate. filter: AIP-160 over the events fields ("" = every event);
    trace_name: the download's file name, sanitised; gzip: the file is gzipped."""

    # no NUL pattern: the format's grammar (filters.py) already refuses control characters
    filter: Annotated[str, msgspec.Meta(max_length=4096)]
    trace_name: TraceName
    format: Literal["perfetto", "chrome"] = "perfetto"
    gzip: bool = False


class JobBatchStop(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/v1/jobs:batchStop: the jobs to stop (each answered on its own)."""

    jobIds: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=100)]


class JobTraceCreate(msgspec.Struct, forbid_unknown_fields=True):
    """POST /api/v1/jobs/{id}:trace: a monitor of monitorType on every rank, with config
    (a monitor's) and window (its config.window); name: the trace's (file) name."""

    monitorType: Literal["CUDA", "ACL", "PYTHON", "SYSCALL"]
    config: MonitorConfig = msgspec.field(default_factory=MonitorConfig)
    window: StepWindow | None = None
    name: TraceName | None = None

    def monitor_config(self) -> dict[str, Any]:
        """Each rank's monitor config (the window in it), checked as a monitor's: a 400
        naming the field (window for the window's)."""
        config = self.config
        if self.window is not None:
            config = msgspec.structs.replace(config, window=self.window)
        body = {"monitor_type": self.monitorType, "target": {"pid": 1}, "config": config}
        try:
            checked = msgspec.convert(msgspec.to_builtins(body), MonitorCreate, strict=True)
        except msgspec.ValidationError as e:
            field, problem = _field_of(str(e))
            if self.window is not None and field.startswith("config.window"):
                field = field.removeprefix("config.")
            raise BadRequest(field, problem) from None
        return msgspec.to_builtins(checked.config)  # type: ignore[no-any-return]


T = TypeVar("T")
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_NAMED = re.compile(r"(missing required|unknown) field `([^`]*)`")


def _field_of(message: str) -> tuple[str, str]:
    """(dotted field path, problem) from a msgspec validation message."""
    m = _PATH.search(message)
    where = m.group(1) if m else ""
    named = _NAMED.search(message)
    if named:
        field = f"{where}.{named.group(2)}" if where else named.group(2)
        return field, "is required" if named.group(1) == "missing required" else "is not allowed"
    problem = _PATH.sub("", message).strip(" -")
    return where or "body", problem or "invalid"


def _nul_at(v: Any, where: str = "") -> str | None:
    """The dotted path of the first string (or key) in v holding a NUL, or None."""
    if isinstance(v, str):
        return (where or "body") if "\x00" in v else None
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        if isinstance(k, str) and "\x00" in k:
            return where or "body"
        found = _nul_at(
            x, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}" if where else k
        )
        if found:
            return found
    return None


def _integral(v: Any) -> Any:
    """v with every float that has no fraction made an int (5058.0 -> 5058)."""
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    if isinstance(v, dict):
        return {k: _integral(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_integral(x) for x in v]
    return v


async def decode_body(request: web.Request, kind: type[T], max_bytes: int = 64 * 1024) -> T:
    """The JSON body as kind, or a 400 naming the field that is missing or wrong."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise BadRequest("body", f"larger than {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BadRequest("body", f"larger than {max_bytes} bytes")
    if not raw.strip():
        raise BadRequest("body", "a JSON object is required")
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise BadRequest("body", f"invalid JSON: {e}") from None
    nul = _nul_at(value)
    if nul:
        raise BadRequest(nul, "must not contain NUL (U+0000)")
    try:
        # JSON Schema's integer is any number with no fraction (5058.0); msgspec's is not
        return msgspec.convert(_integral(value), kind, strict=True)
    except msgspec.ValidationError as e:
        field, problem = _field_of(str(e))
        raise BadRequest(field, problem) from None


def path_text(request: web.Request, name: str) -> str:
    """The path parameter name, or a 400 naming it when it holds a NUL (U+0000)."""
    raw = request.match_info[name]
    if "\x00" in raw:
        raise BadRequest(name, "must not contain NUL (U+0000)")
    return raw


def path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """The path parameter name as a UUID, or a 400 naming it (an id that cannot exist)."""
    raw = path_text(request, name)
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(name, f"'{raw[:80]}' is not a UUID") from None
