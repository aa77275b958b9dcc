"""A framework's version, read from its installed files under the process's root.

Where Python would find the package: the site directory a mapped file of it lies in (the
surest), then the process's PYTHONPATH, then the site-packages of the interpreter it runs
(argv[0] first, as a virtual environment's bin/python is named there while /proc/<pid>/exe
gives the base interpreter). In each, ``<dist>-<version>.dist-info/METADATA`` gives the
version (``Version:``), else ``<package>/version.py`` (``__version__ = "..."``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

from manager.jobs.classify import FRAMEWORKS, Framework
from manager.jobs.rootfs import ConfinedRoot, Refused

__all__ = ["find_version", "site_dirs"]

_META_LIMIT = 64 << 10
_VERSION_LINE = re.compile(rb"^Version:[ \t]*(\S+)", re.MULTILINE)
_VERSION_PY = re.compile(
    rb"""^(?:__version__|version)[ \t]*(?::[^=]*)?=[ \t]*['"]([^'"]+)""", re.MULTILINE
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def site_dirs(
    root: ConfinedRoot,
    cwd: str | None,
    argv: Sequence[str],
    exe: str,
    pythonpath: str | None,
    mapped_sites: Iterable[str],
) -> list[str]:
    """Where to look, in order, each once."""
    out: dict[str, None] = dict.fromkeys(mapped_sites)
    for entry in (pythonpath or "").split(":"):
        if entry:
            out.setdefault(os.path.normpath(root.join(cwd, entry)), None)
    for program in ([argv[0]] if argv and "/" in argv[0] else []) + [exe]:
        prefix = os.path.dirname(os.path.dirname(root.join(cwd, program)))
        lib = os.path.join(prefix, "lib")
        for name in sorted(root.listdir(lib)):
            if name.startswith("python3"):
                out.setdefault(os.path.join(lib, name, "site-packages"), None)
                out.setdefault(os.path.join(lib, name, "dist-packages"), None)
    out.setdefault("/usr/lib/python3/dist-packages", None)
    return list(out)


def _from_dist_info(root: ConfinedRoot, site: str, names: list[str], fw: Framework) -> str | None:
    wanted = {_norm(d) for d in fw.dists}
    for name in sorted(names):
        if name.endswith(".dist-info") and _norm(name[:-10].rsplit("-", 1)[0]) in wanted:
            try:
                meta = root.read(f"{site}/{name}/METADATA", _META_LIMIT).content
            except Refused:
                continue
            m = _VERSION_LINE.search(meta)
            if m:
                return m.group(1).decode(errors="replace")
    return None


def find_version(
    root: ConfinedRoot, framework: str, sites: Sequence[str]
) -> tuple[str | None, str | None]:
    """(version, the site directory it came from); (None, None) when not found."""
    fw = next((f for f in FRAMEWORKS if f.name == framework), None)
    if fw is None or not fw.packages:
        return None, None
    for site in sites:
        names = root.listdir(site)
        if not names:
            continue
        version = _from_dist_info(root, site, names, fw)
        if version:
            return version, site
        for package in fw.packages:
            if package not in names:
                continue
            try:
                text = root.read(f"{site}/{package}/version.py", _META_LIMIT).content
            except Refused:
                continue
            m = _VERSION_PY.search(text)
            if m:
                return m.group(1).decode(errors="replace"), site
    return None, None
