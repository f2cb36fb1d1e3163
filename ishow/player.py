"""The player: hands finished utterances to the sinks one at a time, paced at playback speed.

Pacing keeps the backlog in the daemon's queue (where stale/overflow policy applies) instead of in a browser or a
sound card buffer: the next utterance is handed over ``LEAD_S`` before the current one ends, so playback stays
gapless. Pause holds the next hand-off; skip cuts the current utterance in every sink.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog

from ishow.events import Audio, Utterance
from ishow.outputs.base import Sink

log = structlog.get_logger(__name__)

LEAD_S = 0.3


class AudioBuffer:
    """Bounded FIFO of synthesized audio waiting for the player. ``put`` waits when full (backpressure)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: collections.deque[Audio | None] = collections.deque()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, audio: Audio | None) -> None:
        while audio is not None and len(self._items) >= self.max_items:
            self._changed.clear()
            await self._changed.wait()
        self._items.append(audio)
        self._changed.set()

    async def get(self) -> Audio | None:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        self._changed.set()
        return item

    def push_front(self, audio: Audio) -> None:
        self._items.appendleft(audio)
        self._changed.set()

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        gone = [a.utterance for a in self._items if a is not None and predicate(a.utterance)]
        if gone:
            ids = {u.id for u in gone}
            self._items = collections.deque(a for a in self._items if a is None or a.utterance.id not in ids)
            self._changed.set()
        return gone

    def utterances(self) -> list[Utterance]:
        return [a.utterance for a in self._items if a is not None]


class Player:
    def __init__(
        self,
        sinks: Sequence[Sink],
        buffer: AudioBuffer,
        realtime: bool,
        on_spoken: Callable[[Audio], None],
    ) -> None:
        self.sinks = list(sinks)
        self.buffer = buffer
        self.realtime = realtime
        self._on_spoken = on_spoken
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._skip = asyncio.Event()
        self.current: Utterance | None = None
        self.current_started = 0.0
        self.speed = 1.0  # playback clock rate for pacing (tests and soak runs compress time with > 1)

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    async def skip(self) -> Utterance | None:
        """Cut the utterance playing now (if any) in every sink; the next one follows."""
        current = self.current
        if current is None:
            return None
        self._skip.set()
        for sink in self.sinks:
            try:
                await sink.skip(current.id)
            except Exception:
                log.exception("sink skip failed", sink=sink.name, id=current.id)
        return current

    async def run(self) -> None:
        """Play until a ``None`` arrives in the buffer (shutdown drain)."""
        while True:
            await self._resumed.wait()
            audio = await self.buffer.get()
            if audio is None:
                return
            if self.paused:  # paused while we waited for audio: keep it first in line
                self.buffer.push_front(audio)
                continue
            await self._play(audio)

    async def _play(self, audio: Audio) -> None:
        self.current = audio.utterance
        self.current_started = time.monotonic()
        self._skip.clear()
        for sink in self.sinks:
            try:
                await sink.play(audio)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sink failed", sink=sink.name, id=audio.utterance.id)
        self._on_spoken(audio)
        if self.realtime:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._skip.wait(), max(0.0, (audio.duration - LEAD_S) / self.speed))
        self.current = None
