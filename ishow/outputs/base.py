"""The interface every audio output ("sink") implements.

A sink receives one finished utterance at a time from the player, in playback order. Rules every sink keeps:

- ``start()`` acquires resources. A missing device or folder is not fatal: the sink logs one clear warning and
  becomes inactive (``state()["active"] is False``); the daemon keeps running with its other sinks.
- ``play()`` hands over one utterance and returns promptly: it never blocks the event loop and never waits for
  the audio to finish. Each sink buffers a bounded amount and documents what it drops when that bound is hit.
- ``flush()`` (shutdown) waits until what was handed over has left the sink; ``close()`` then stops, idempotent.
- A long message arrives as several ``Audio`` parts (``part`` 0, 1, …; the last has ``final=True``): one
  utterance for the listener (one subtitle, one header), its audio continuing as parts arrive.
- ``state()`` is a small JSON-able dict for ``/healthz``.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import ClassVar

from ishow.events import Audio


class Sink(abc.ABC):
    """One audio output: local speakers, the OBS page, wav files."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire resources; on "no device"-type failures log a warning and become inactive instead of raising."""

    @abc.abstractmethod
    async def play(self, audio: Audio) -> None:
        """Hand over one utterance's audio; returns without waiting for playback (bounded buffering)."""

    async def skip(self, utterance_id: str) -> None:  # noqa: B027 - optional hook
        """Stop playing ``utterance_id`` now if it is playing or waiting (moderator "skip"). Default: nothing."""

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Shutdown: return once everything handed over has left this output (played, sent, written). The daemon
        bounds the wait; ``close`` follows. Default: nothing is buffered."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush or stop; safe to call more than once."""

    @abc.abstractmethod
    def state(self) -> dict[str, object]:
        """A JSON-able snapshot for ``/healthz``; always has ``name`` and ``active``."""

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
