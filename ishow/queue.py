"""The bounded priority queue of utterances waiting to be synthesized.

Pure policy (``UtteranceQueue``) driven by the caller's clock, plus a thin asyncio wrapper.
Drop policy: when full, the oldest waiting item of the lowest priority below PAID is dropped ("queue_full");
if only paid items are waiting, the queue grows past ``max_size`` rather than lose one (logged by the caller).
At pop time, items below PAID older than ``max_age_s`` are dropped as "stale".
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from ishow.events import Priority, Utterance


@dataclass(frozen=True)
class QueueDrop:
    reason: str
    utterance: Utterance


class UtteranceQueue:
    """Highest priority first, then arrival order. Not thread-safe; owned by the event loop."""

    def __init__(self, max_size: int, max_age_s: float) -> None:
        self.max_size = max_size
        self.max_age_s = max_age_s
        self._heap: list[tuple[int, int, Utterance]] = []
        self._seq = itertools.count()
        self._removed: set[str] = set()

    def __len__(self) -> int:
        return len(self._heap) - len(self._removed)

    def push(self, item: Utterance) -> list[QueueDrop]:
        heapq.heappush(self._heap, (-int(item.priority), next(self._seq), item))
        drops: list[QueueDrop] = []
        while len(self) > self.max_size:
            victim = self._oldest_droppable()
            if victim is None:
                break
            self._removed.add(victim.id)
            drops.append(QueueDrop("queue_full", victim))
        return drops

    def _oldest_droppable(self) -> Utterance | None:
        live = [(p, s, u) for p, s, u in self._heap if u.id not in self._removed and u.priority < Priority.PAID]
        if not live:
            return None
        # lowest priority first (largest -p), then oldest (smallest seq)
        _, _, victim = min(live, key=lambda e: (e[0] * -1, e[1]))
        return victim

    def pop(self, now: float) -> tuple[Utterance | None, list[QueueDrop]]:
        """The next item to speak (or None when empty) and the stale items skipped on the way."""
        drops: list[QueueDrop] = []
        while self._heap:
            _, _, item = heapq.heappop(self._heap)
            if item.id in self._removed:
                self._removed.discard(item.id)
                continue
            if item.priority < Priority.PAID and now - item.created > self.max_age_s:
                drops.append(QueueDrop("stale", item))
                continue
            return item, drops
        return None, drops

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        gone = [u for _, _, u in self._heap if u.id not in self._removed and predicate(u)]
        self._removed.update(u.id for u in gone)
        return gone

    def snapshot(self) -> list[Utterance]:
        return [u for _, _, u in sorted(self._heap) if u.id not in self._removed]


class AsyncUtteranceQueue:
    """``UtteranceQueue`` with an awaitable ``get``; drops are reported through ``on_drop``."""

    def __init__(
        self,
        max_size: int,
        max_age_s: float,
        on_drop: Callable[[QueueDrop], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._q = UtteranceQueue(max_size, max_age_s)
        self._on_drop = on_drop
        self._clock = clock
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._q)

    def put(self, item: Utterance) -> None:
        for drop in self._q.push(item):
            self._on_drop(drop)
        self._ready.set()

    def get_nowait(self) -> Utterance | None:
        item, drops = self._q.pop(self._clock())
        for drop in drops:
            self._on_drop(drop)
        if not len(self._q):
            self._ready.clear()
        return item

    async def get(self) -> Utterance:
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            await self._ready.wait()

    async def wait_nonempty(self, timeout: float) -> bool:
        if len(self._q):
            return True
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        return self._q.remove(predicate)

    def set_limits(self, max_size: int, max_age_s: float) -> None:
        """New limits (hot reload); an over-full queue sheds its oldest chat at the next push."""
        self._q.max_size, self._q.max_age_s = max_size, max_age_s

    def clear(self) -> list[Utterance]:
        return self._q.remove(lambda _: True)

    def snapshot(self) -> list[Utterance]:
        return self._q.snapshot()
