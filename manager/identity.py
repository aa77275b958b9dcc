"""Who this machine is: machine id, hostname, OS, accelerators (best effort).

Every file read here is a parameter with the real default, so tests point them at a
temporary tree instead of needing the real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import socket
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "APP_ID",
    "DBUS_MACHINE_ID_PATHS",
    "Accelerator",
    "Identity",
    "accelerators",
    "collect",
    "hostname",
    "machine_id",
    "manager_version",
    "os_info",
    "protected_id",
]

APP_ID = "xputrace"
# github.com/denisbrodbeck/machineid (id_linux.go) reads the D-Bus path first and falls back
# to /etc/machine-id; both normally hold the same 32 hex digits.
DBUS_MACHINE_ID_PATHS = (Path("/var/lib/dbus/machine-id"), Path("/etc/machine-id"))


def protected_id(app_id: str, raw_id: str) -> str:
    """The id machineid.ProtectedID(appID) returns for raw machine id raw_id.

    Assumption (from machineid's helper.go, written from memory since its source could not be
    fetched here): ``protect(appID, id)`` is ``hmac.New(sha256.New, []byte(id))``, then
    ``mac.Write([]byte(appID))`` and ``hex.EncodeToString(mac.Sum(nil))``; the id is the file's
    content with surrounding whitespace trimmed (``strings.TrimSpace``). So: HMAC-SHA256 keyed
    by the machine id over the app id, lower-case hex (64 characters).
    """
    return hmac.new(raw_id.strip().encode(), app_id.encode(), hashlib.sha256).hexdigest()


def machine_id(app_id: str = APP_ID, paths: tuple[Path, ...] = DBUS_MACHINE_ID_PATHS) -> str:
    """ProtectedID(app_id) of the first readable, non-empty machine-id file in paths."""
    for path in paths:
        try:
            raw = path.read_text().strip()
        except OSError:
            continue
        if raw:
            return protected_id(app_id, raw)
    raise RuntimeError(f"no machine id in {', '.join(map(str, paths))}")


def hostname(proc_root: Path = Path("/proc")) -> str:
    try:
        name = (proc_root / "sys/kernel/hostname").read_text().strip()
    except OSError:
        name = ""
    return name or socket.gethostname()


def _os_release(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            v = value.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            values[key.strip()] = v
    return values


def os_info(
    os_release: tuple[Path, ...] = (Path("/etc/os-release"), Path("/usr/lib/os-release")),
    proc_root: Path = Path("/proc"),
) -> str:
    """``PRETTY_NAME (kernel RELEASE)``, e.g. ``Debian GNU/Linux 12 (bookworm) (kernel 6.1.0)``."""
    name = ""
    for path in os_release:
        rel = _os_release(path)
        name = rel.get("PRETTY_NAME") or " ".join(
            x for x in (rel.get("NAME"), rel.get("VERSION")) if x
        )
        if name:
            break
    try:
        kernel = (proc_root / "sys/kernel/osrelease").read_text().strip()
    except OSError:
        kernel = ""
    name = name or "Linux"
    return f"{name} (kernel {kernel})" if kernel else name


@dataclass(frozen=True)
class Accelerator:
    vendor: str  # NVIDIA | HUAWEI
    kind: str  # GPU | NPU
    index: int  # device minor: /dev/nvidia<index>, /dev/davinci<index>
    device: str
    model: str | None = None
    driver_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_NV_VERSION = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")
_DEV_INDEX = re.compile(r"^(nvidia|davinci)(\d+)$")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _nvidia(dev_root: Path, proc_root: Path) -> list[Accelerator]:
    driver = None
    text = _read(proc_root / "driver/nvidia/version")
    if text and (m := _NV_VERSION.search(text)):
        driver = m.group(1)
    models: dict[int, str] = {}
    gpus = proc_root / "driver/nvidia/gpus"
    try:
        infos = sorted(gpus.iterdir())
    except OSError:
        infos = []
    for gpu in infos:
        fields = {}
        for line in (_read(gpu / "information") or "").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        minor = fields.get("Device Minor", "")
        if minor.isdigit() and fields.get("Model"):
            models[int(minor)] = fields["Model"]
    minors = set(models) | _dev_minors(dev_root, "nvidia")
    return [
        Accelerator("NVIDIA", "GPU", i, str(dev_root / f"nvidia{i}"), models.get(i), driver)
        for i in sorted(minors)
    ]


def _ascend(dev_root: Path, ascend_root: Path) -> list[Accelerator]:
    minors = _dev_minors(dev_root, "davinci")
    if not minors:
        return []
    driver = None
    for name in ("driver/version.info", "version.info"):
        for line in (_read(ascend_root / name) or "").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() in ("version", "package_version"):
                driver = value.strip()
                break
        if driver:
            break
    return [
        Accelerator("HUAWEI", "NPU", i, str(dev_root / f"davinci{i}"), None, driver)
        for i in sorted(minors)
    ]


def _dev_minors(dev_root: Path, prefix: str) -> set[int]:
    try:
        names = [p.name for p in dev_root.iterdir()]
    except OSError:
        return set()
    return {int(m.group(2)) for n in names if (m := _DEV_INDEX.match(n)) and m.group(1) == prefix}


def accelerators(
    dev_root: Path = Path("/dev"),
    proc_root: Path = Path("/proc"),
    ascend_root: Path = Path("/usr/local/Ascend"),
) -> list[Accelerator]:
    """NVIDIA GPUs and Ascend NPUs this machine shows; never raises."""
    found: list[Accelerator] = []
    # best effort: an odd /proc or /dev never stops the manager
    with contextlib.suppress(Exception):
        found.extend(_nvidia(dev_root, proc_root))
    with contextlib.suppress(Exception):
        found.extend(_ascend(dev_root, ascend_root))
    return found


def manager_version() -> str:
    try:
        return metadata.version("xputrace")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Identity:
    machine_id: str
    hostname: str
    os_info: str
    accelerators: tuple[Accelerator, ...]
    version: str


def collect(
    app_id: str = APP_ID,
    *,
    machine_id_paths: tuple[Path, ...] = DBUS_MACHINE_ID_PATHS,
    proc_root: Path = Path("/proc"),
    dev_root: Path = Path("/dev"),
    os_release: tuple[Path, ...] = (Path("/etc/os-release"), Path("/usr/lib/os-release")),
    ascend_root: Path = Path("/usr/local/Ascend"),
) -> Identity:
    return Identity(
        machine_id=machine_id(app_id, machine_id_paths),
        hostname=hostname(proc_root),
        os_info=os_info(os_release, proc_root),
        accelerators=tuple(accelerators(dev_root, proc_root, ascend_root)),
        version=manager_version(),
    )
