"""The audio buffer between synthesis and the player: bounded, so a full buffer holds the batcher (backpressure)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import structlog

from ishow.events import Audio, Utterance

log = structlog.get_logger(__name__)


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
