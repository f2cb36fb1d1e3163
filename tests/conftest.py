from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ishow.app import Daemon
from ishow.config.load import default_config
from ishow.config.schema import Config

REPO = Path(__file__).resolve().parent.parent


def espeak_config(**changes: object) -> Config:
    """The shipped defaults with the espeak engine, no sources, no local audio, port 0."""
    cfg = default_config(REPO)
    cfg = dataclasses.replace(
        cfg,
        engine=dataclasses.replace(cfg.engine, kind="espeak", fallback="none"),
        server=dataclasses.replace(cfg.server, port=0),
        sources=(),
        outputs=dataclasses.replace(
            cfg.outputs, realtime=False, local=dataclasses.replace(cfg.outputs.local, enabled=False)
        ),
    )
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


class RunningDaemon:
    def __init__(self, daemon: Daemon, task: asyncio.Task[None], stop: asyncio.Event) -> None:
        self.daemon = daemon
        self.task = task
        self.stop = stop

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"


@pytest.fixture
async def start_daemon() -> AsyncIterator[Callable[..., asyncio.Future[RunningDaemon]]]:
    running: list[RunningDaemon] = []

    async def start(cfg: Config, **kwargs: object) -> RunningDaemon:
        daemon = Daemon(cfg, **kwargs)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        started = asyncio.create_task(daemon.started.wait())
        done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            started.cancel()
            task.result()  # raises the startup error
        assert started in done, "daemon did not start within 60 s"
        rd = RunningDaemon(daemon, task, stop)
        running.append(rd)
        return rd

    yield start  # type: ignore[misc]
    for rd in running:
        rd.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(rd.task), 30)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack(limit=8)
            raise
