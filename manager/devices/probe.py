"""The device probe: the helper process in which NVML and DCMI are called.

``python -m manager.devices.probe [--dcmi-library PATH] [--skip LIBRARY]...``: for every
line on stdin it samples each library and writes JSON lines to stdout: ``{"library": NAME}``
before calling into a library (so the manager knows which one hung or crashed) and then
``{"devices": [...], "errors": [{"library", "message"}]}``. A library that cannot be loaded or
initialised is tried once and reported in every answer. EOF on stdin ends it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["main", "serve"]


class Source(Protocol):
    library: str

    def sample(self) -> list[dict[str, Any]]: ...

    @staticmethod
    def describe(e: BaseException) -> str: ...


def _nvml() -> Source:
    from manager.devices.nvml import NvmlSource

    return NvmlSource()


def _open(library: str, make: Callable[[], Source], out: IO[str]) -> Source | str:
    out.write(json.dumps({"library": library}) + "\n")
    out.flush()
    try:
        return make()
    except Exception as e:  # any failure to load is this library's, said in every answer
        if library == "nvml":
            from manager.devices.nvml import NvmlSource

            return NvmlSource.describe(e)
        from manager.devices.dcmi import DcmiSource

        return DcmiSource.describe(e)


def serve(makers: dict[str, Callable[[], Source]], requests: IO[str], out: IO[str]) -> None:
    sources: dict[str, Source | str] = {}
    for _ in requests:
        devices: list[dict[str, Any]] = []
        errors = []
        for library, make in makers.items():
            if library not in sources:
                sources[library] = _open(library, make, out)
            src = sources[library]
            if isinstance(src, str):
                errors.append({"library": library, "message": src})
                continue
            out.write(json.dumps({"library": library}) + "\n")
            out.flush()
            try:
                devices.extend(src.sample())
            except Exception as e:  # a failing call: this sample says so, the next tries again
                errors.append({"library": library, "message": src.describe(e)})
        out.write(json.dumps({"devices": devices, "errors": errors}) + "\n")
        out.flush()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m manager.devices.probe")
    p.add_argument("--dcmi-library", type=Path)
    p.add_argument("--skip", action="append", default=[], choices=("nvml", "dcmi"))
    ns = p.parse_args(argv)

    def dcmi() -> Source:
        from manager.devices.dcmi import DcmiSource

        return DcmiSource(ns.dcmi_library)

    makers = {"nvml": _nvml, "dcmi": dcmi}
    serve({k: v for k, v in makers.items() if k not in ns.skip}, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
