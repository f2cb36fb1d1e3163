"""The source interface: ``run`` emits ChatEvents until cancelled (or the input ends)."""

from __future__ import annotations

import abc
from collections.abc import Callable

from ishow.events import ChatEvent

Emit = Callable[[ChatEvent], object]


class Source(abc.ABC):
    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "idle"

    @abc.abstractmethod
    async def run(self, emit: Emit) -> None:
        """Read chat and call ``emit`` per event; returns when the input ends; cancelled on shutdown."""
