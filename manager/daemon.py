"""The manager daemon: identity, supervisor, jobs watcher and control channel wired together."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import replace

import zmq.asyncio

from manager import identity as ident
from manager.control import ControlClient
from manager.devices.sampler import DeviceSampler, report_devices
from manager.identity import Identity
from manager.job_metrics import JobMetrics
from manager.job_reports import JobReporter, own_pids, start_watcher, wait_closed
from manager.settings import Settings
from manager.supervisor import Monitor, Supervisor
from manager.tasks import cancel_all

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


def load_identity(settings: Settings) -> Identity:
    paths = (settings.machine_id_file,) if settings.machine_id_file else ident.DBUS_MACHINE_ID_PATHS
    me = ident.collect(settings.app_id, machine_id_paths=paths)
    return replace(me, hostname=settings.hostname) if settings.hostname else me


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    identity: Identity | None = None,
    context: zmq.asyncio.Context | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Runs until stop is set; then stops every agent, reports them STOPPED and says
    GOODBYE."""
    me = identity or load_identity(settings)
    log.info(
        "machine %s (%s, %s), accelerators: %s",
        me.machine_id,
        me.hostname,
        me.os_info,
        ", ".join(f"{a.vendor} {a.kind} {a.index}" for a in me.accelerators) or "none",
    )
    control: ControlClient | None = None

    def on_status(m: Monitor) -> None:
        if control is not None:
            control.notify(m)

    def on_job(msg: dict[str, object]) -> None:
        if control is not None:
            control.emit(dict(msg))

    watcher = None
    sampling: asyncio.Task[None] | None = None
    if settings.jobs:
        watcher = await start_watcher(settings.procwatch, me.machine_id, settings.jobs_root_pid)
    else:
        log.info("job discovery off (--no-jobs)")
    try:
        async with Supervisor(settings, me.machine_id, on_status=on_status) as supervisor:
            reporter = None
            if watcher is not None:
                own = own_pids(
                    lambda: (m.agent_pid for m in supervisor.active()), lambda: (watcher.pid,)
                )
                reporter = JobReporter(
                    watcher, me.machine_id, on_job, agent_path=settings.agent_path, own=own
                )
            control = ControlClient(settings, me, supervisor, context=context, jobs=reporter)
            if watcher is not None and settings.job_metrics_interval_s > 0:
                metrics = JobMetrics(
                    watcher, me.machine_id, on_job, settings.job_metrics_interval_s
                )
                sampling = asyncio.create_task(metrics.run(), name="job-metrics")
            async with (
                control,
                DeviceSampler(
                    dcmi_library=settings.dcmi_library, timeout_s=settings.device_timeout_s
                ) as sampler,
            ):
                devices = None
                if settings.device_interval_s > 0:
                    devices = asyncio.create_task(
                        report_devices(
                            sampler, me.machine_id, control.emit, settings.device_interval_s
                        )
                    )
                else:
                    log.info("device sampling off (--device-interval 0)")
                if started is not None:
                    started.set()
                await stop.wait()
                if devices is not None:
                    await cancel_all([devices])
                log.info("shutting down: stopping %d agent(s)", len(supervisor.active()))
                for m in await supervisor.stop_all():
                    control.notify(m)
    finally:
        if sampling is not None:
            await cancel_all([sampling])
        await wait_closed(watcher)


async def main(settings: Settings) -> None:
    """serve() until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)
