"""Daemon lifecycle helpers: supervised background tasks, binding problems, signals, "is anyone listening"."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import structlog
from aiohttp import web

from ishow.backoff import rerun_on_failure
from ishow.outputs.base import Sink

log = structlog.get_logger(__name__)

SUPERVISOR_BACKOFF_S = (1.0, 60.0)  # first and longest pause before a failed background task is restarted


async def supervise(run: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
    """Run a background task; when it fails, log it and start it again after a growing pause."""
    await rerun_on_failure(run, what, log=log, pause_s=SUPERVISOR_BACKOFF_S)


def has_listener(sinks: Sequence[Sink]) -> bool:
    """Someone can hear us: an active output other than the OBS hub, or an OBS page connected."""
    for sink in sinks:
        state = sink.state()
        if sink.name == "obs":
            if int(str(state.get("clients", 0))) > 0:
                return True
        elif "connected" in state:  # an output that drives another program (OBS over its websocket)
            if state["connected"]:
                return True
        elif state.get("active"):
            return True
    return False


def bind_problem(host: str, port: int, e: OSError) -> str:
    if e.errno in (errno.EADDRINUSE, errno.EACCES):
        what = "is already in use" if e.errno == errno.EADDRINUSE else "needs privileges"
        return (
            f"port {port} on {host} {what} (another ishow running?); stop it, or pick another port: "
            f"ishow run --port {port + 1} (or server.port in the config)"
        )
    return f"cannot listen on {host}:{port}: {e.strerror or e}; check server.host and server.port in the config"


def bound_port(runner: web.AppRunner, default: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return default


def install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    import signal

    loop = asyncio.get_running_loop()
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in sigs:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)

    return remove
