"""The player: hands finished utterances to the sinks one at a time, paced at playback speed.

A long message arrives in parts (``Audio.part``/``final``): each part goes to the sinks as soon as it is
synthesized, and the whole message is paced once, by its total duration.

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
    """Bounded FIFO of synthesized audio waiting for the player. ``put`` waits when full (backpressure).

    Later parts of a streamed message (``part > 0``) never wait for room (the player is waiting for them while
    it plays the message's first part) and are taken only by ``get_part``.
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: collections.deque[Audio | None] = collections.deque()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return sum(1 for a in self._items if a is None or a.part == 0)

    async def put(self, audio: Audio | None) -> None:
        while audio is not None and audio.part == 0 and len(self) >= self.max_items:
            self._changed.clear()
            await self._changed.wait()
        self._items.append(audio)
        self._changed.set()

    async def get(self) -> Audio | None:
        """The next message's (first part of) audio, or ``None`` (shutdown)."""
        while True:
            while not self._items:
                self._changed.clear()
                await self._changed.wait()
            item = self._items.popleft()
            self._changed.set()
            if item is None or item.part == 0:
                return item
            log.debug("orphan part of a streamed message discarded", id=item.utterance.id, part=item.part)

    async def get_part(self, utterance_id: str) -> Audio:
        """The next part of the streamed message ``utterance_id`` (waits until the batcher puts it)."""
        while True:
            for i, item in enumerate(self._items):
                if item is not None and item.part > 0 and item.utterance.id == utterance_id:
                    del self._items[i]
                    self._changed.set()
                    return item
            self._changed.clear()
            await self._changed.wait()

    def push_front(self, audio: Audio) -> None:
        self._items.appendleft(audio)
        self._changed.set()

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        """Drop waiting messages that match (with their later parts); the one playing keeps its parts."""
        gone = [a.utterance for a in self._items if a is not None and a.part == 0 and predicate(a.utterance)]
        if gone:
            ids = {u.id for u in gone}
            self._items = collections.deque(a for a in self._items if a is None or a.utterance.id not in ids)
            self._changed.set()
        return gone

    def utterances(self) -> list[Utterance]:
        return [a.utterance for a in self._items if a is not None and a.part == 0]


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
        """Hand one message to the sinks: all its parts, as they arrive; then pace by its whole duration."""
        uid = audio.utterance.id
        self.current = audio.utterance
        self.current_started = time.monotonic()
        self._skip.clear()
        total = 0.0
        while True:
            if not self._skip.is_set():
                await self._hand(audio)
            if audio.part == 0:
                self._on_spoken(audio)
            total += audio.duration
            if audio.final:
                break
            audio = await self.buffer.get_part(uid)
        if self.realtime and not self._skip.is_set():
            left = (total - LEAD_S) / self.speed - (time.monotonic() - self.current_started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._skip.wait(), max(0.0, left))
        self.current = None

    async def _hand(self, audio: Audio) -> None:
        for sink in self.sinks:
            try:
                await sink.play(audio)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sink failed", sink=sink.name, id=audio.utterance.id, part=audio.part)
