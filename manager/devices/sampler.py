"""The manager's side of device sampling: the probe process (manager.devices.probe), its
timeouts and restarts, and the DEVICE_METRICS loop.

A sample that takes longer than ``timeout_s`` (a library hung) gets the probe killed; a probe
that dies mid-sample (a library crashed) is noted too. Either way the library the probe was in
is left out of the next probes for ``retry_s`` (so the other library keeps reporting) with an
``errors`` entry in every sample meanwhile, and the probe is started again. Each library's
error is logged when it appears or changes, not per sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xpucore import protocol
from xpucore.device_wire import LIBRARIES

__all__ = ["DeviceSampler", "report_devices"]

log = logging.getLogger(__name__)
EXIT_WAIT_S = 2.0  # a probe whose output ended this long ago and still runs is killed

Sample = tuple[list[dict[str, Any]], list[dict[str, str]]]


class DeviceSampler:
    def __init__(
        self,
        *,
        dcmi_library: Path | None = None,
        timeout_s: float = 5.0,
        retry_s: float = 60.0,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.dcmi_library = dcmi_library
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.python = python
        self.env = env  # the probe's environment (None: the manager's)
        self.restarts = 0  # probes started after the first
        self._proc: asyncio.subprocess.Process | None = None
        self._down: dict[str, tuple[str, float]] = {}  # library: (message, retry at)
        self._logged: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> DeviceSampler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # EOF: the probe ends
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            await self._kill(proc)

    @staticmethod
    async def _kill(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    async def _start(self) -> asyncio.subprocess.Process:
        now = time.monotonic()
        for lib in [k for k, (_, at) in self._down.items() if at <= now]:
            del self._down[lib]
        argv = [self.python, "-m", "manager.devices.probe"]
        if self.dcmi_library is not None:
            argv += ["--dcmi-library", str(self.dcmi_library)]
        for lib in self._down:
            argv += ["--skip", lib]
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
            env=None if self.env is None else dict(self.env),
        )

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(at <= now for _, at in self._down.values())

    async def sample(self) -> Sample:
        """One sample of every library: (devices, errors). Never raises for a library's
        failure; a probe that hangs or dies is replaced."""
        if self._proc is not None and self._down and self._retry_due():
            await self.close()  # a library left out is due another try
        if self._proc is None or self._proc.returncode is not None:
            if self._proc is not None:
                self.restarts += 1
            self._proc = await self._start()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        current: str | None = None
        result: dict[str, Any] | None = None
        timed_out = False
        try:
            proc.stdin.write(b"sample\n")
            await proc.stdin.drain()
            async with asyncio.timeout(self.timeout_s):
                while result is None:
                    line = await proc.stdout.readline()
                    if not line:
                        break
                    msg = json.loads(line)
                    if "library" in msg:
                        current = msg["library"]
                    else:
                        result = msg
        except TimeoutError:
            timed_out = True
            await self._kill(proc)
            self._fail(current, f"timed out after {self.timeout_s:g} s; probe restarted")
        except (BrokenPipeError, ConnectionResetError, ValueError):
            pass  # the probe died or wrote nonsense: as below
        if result is None and not timed_out:
            # its output ended: it is dying. Wait for it rather than kill it: killing a child
            # that has just exited polls it (Popen.send_signal), which can take its status
            # before asyncio's child watcher does (the watcher then reports 255).
            try:
                async with asyncio.timeout(EXIT_WAIT_S):
                    await proc.wait()
            except TimeoutError:
                await self._kill(proc)
            code = proc.returncode
            how = (
                f"signal {signal.Signals(-code).name}"
                if code is not None and code < 0
                else f"exit code {code}"
            )
            self._fail(current, f"crashed ({how}); probe restarted")
        devices = list(result.get("devices", [])) if result else []
        errors = list(result.get("errors", [])) if result else []
        errors += [{"library": k, "message": m} for k, (m, _) in self._down.items()]
        errors.sort(key=lambda e: LIBRARIES.index(e["library"]))
        self._log(errors)
        return devices, errors

    def _fail(self, library: str | None, message: str) -> None:
        for lib in (library,) if library in LIBRARIES else LIBRARIES:
            assert lib is not None
            self._down[lib] = (message, time.monotonic() + self.retry_s)

    def _log(self, errors: list[dict[str, str]]) -> None:
        now = {e["library"]: e["message"] for e in errors}
        for lib, message in now.items():
            if self._logged.get(lib) != message:
                log.warning("device library %s: %s", lib, message)
        for lib in set(self._logged) - set(now):
            log.info("device library %s: works again", lib)
        self._logged = now


async def report_devices(
    sampler: DeviceSampler,
    machine_id: str,
    emit: Callable[[dict[str, Any]], None],
    interval_s: float,
) -> None:
    """A DEVICE_METRICS event every interval_s, on a fixed schedule, until cancelled."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        sampled_at = time.time_ns() // 1_000_000
        devices, errors = await sampler.sample()
        emit(protocol.device_metrics(machine_id, sampled_at, devices, errors, datetime.now(UTC)))
        next_at += interval_s
        now = loop.time()
        if next_at < now:  # a slow sample: skip the missed ticks
            next_at = now + interval_s - (now - next_at) % interval_s
        await asyncio.sleep(next_at - now)
