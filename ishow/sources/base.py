"""The source interface: ``run`` emits ChatEvents until cancelled (or the input ends)."""

from __future__ import annotations

import abc
from collections.abc import Callable

from aiohttp import web

from ishow.events import ChatEvent, Removal

Emit = Callable[[ChatEvent | Removal], object]


class Source(abc.ABC):
    """A chat input. ``state`` is shown in /healthz and /metrics: idle, connecting, connected, reconnecting,
    replaying, reading, finished, failed (sources may add more precise states)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "idle"

    def routes(self) -> list[web.RouteDef]:
        """HTTP/websocket routes this source serves on the daemon's server (e.g. a websocket input)."""
        return []

    @property
    def connected(self) -> bool:
        return self.state in ("connected", "replaying", "reading")

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Read chat and call ``emit`` per event; returns when the input ends; cancelled on shutdown."""
