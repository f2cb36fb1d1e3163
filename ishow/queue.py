"""The bounded priority queue of utterances waiting to be synthesized.

Pure policy (``UtteranceQueue``) driven by the caller's clock, plus a thin asyncio wrapper.

Structure: one FIFO per priority level (there are three), so push, pop and the overflow victim are O(1); only the
explicit moderator actions (``remove``: remove/clear/mute) and ``snapshot`` walk the queue.

Drop policy, written next to the bounds it enforces:

- chat (below PAID): when the queue holds more than ``max_size`` items, the oldest item of the lowest priority
  below PAID is dropped ("queue_full"); if only paid items are waiting, the queue grows past ``max_size`` rather
  than lose one.
- paid: at most ``max_paid`` paid items wait; past that the *oldest* paid item is dropped ("paid_overflow") and
  the caller logs it as a warning. A paid flood therefore cannot grow the queue (or the daemon's memory and
  latency) without bound, and every paid item dropped is counted.
- at pop time, items below PAID older than ``max_age_s`` are dropped as "stale".
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from ishow.events import Priority, Utterance

DEFAULT_MAX_PAID = 100
_LEVELS = tuple(sorted(Priority, reverse=True))  # PAID, MODERATOR, NORMAL: pop order


@dataclass(frozen=True)
class QueueDrop:
    reason: str
    utterance: Utterance


class UtteranceQueue:
    """Highest priority first, then arrival order. Not thread-safe; owned by the event loop."""

    def __init__(self, max_size: int, max_age_s: float, max_paid: int = DEFAULT_MAX_PAID) -> None:
        self.max_size = max_size
        self.max_age_s = max_age_s
        self.max_paid = max_paid
        self._fifo: dict[Priority, collections.deque[Utterance]] = {p: collections.deque() for p in _LEVELS}

    def __len__(self) -> int:
        return sum(len(q) for q in self._fifo.values())

    @property
    def paid(self) -> int:
        return len(self._fifo[Priority.PAID])

    def push(self, item: Utterance) -> list[QueueDrop]:
        self._fifo[item.priority].append(item)
        drops: list[QueueDrop] = []
        while len(self) > self.max_size:
            victim = self._oldest_chat()
            if victim is None:
                break
            drops.append(QueueDrop("queue_full", victim))
        paid = self._fifo[Priority.PAID]
        while len(paid) > self.max_paid:
            drops.append(QueueDrop("paid_overflow", paid.popleft()))
        return drops

    def _oldest_chat(self) -> Utterance | None:
        """Remove and return the oldest item of the lowest non-empty priority below PAID (O(1))."""
        for level in reversed(_LEVELS):
            if level < Priority.PAID and self._fifo[level]:
                return self._fifo[level].popleft()
        return None

    def pop(self, now: float) -> tuple[Utterance | None, list[QueueDrop]]:
        """The next item to speak (or None when empty) and the stale items skipped on the way."""
        drops: list[QueueDrop] = []
        for level in _LEVELS:
            fifo = self._fifo[level]
            while fifo:
                item = fifo.popleft()
                if level < Priority.PAID and now - item.created > self.max_age_s:
                    drops.append(QueueDrop("stale", item))
                    continue
                return item, drops
        return None, drops

    def remove(self, predicate: Callable[[Utterance], bool]) -> list[Utterance]:
        gone: list[Utterance] = []
        for level in _LEVELS:
            keep: collections.deque[Utterance] = collections.deque()
            for u in self._fifo[level]:
                (gone if predicate(u) else keep).append(u)
            self._fifo[level] = keep
        return gone

    def snapshot(self) -> list[Utterance]:
        return [u for level in _LEVELS for u in self._fifo[level]]


class AsyncUtteranceQueue:
    """``UtteranceQueue`` with an awaitable ``get``; drops are reported through ``on_drop``."""

    def __init__(
        self,
        max_size: int,
        max_age_s: float,
        on_drop: Callable[[QueueDrop], None],
        clock: Callable[[], float] = time.monotonic,
        max_paid: int = DEFAULT_MAX_PAID,
    ) -> None:
        self._q = UtteranceQueue(max_size, max_age_s, max_paid)
        self._on_drop = on_drop
        self._clock = clock
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._q)

    @property
    def paid(self) -> int:
        return self._q.paid

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

    def set_limits(self, max_size: int, max_age_s: float, max_paid: int | None = None) -> None:
        """New limits (hot reload); an over-full queue sheds its oldest chat (or paid) at the next push."""
        self._q.max_size, self._q.max_age_s = max_size, max_age_s
        if max_paid is not None:
            self._q.max_paid = max_paid

    def clear(self) -> list[Utterance]:
        return self._q.remove(lambda _: True)

    def snapshot(self) -> list[Utterance]:
        return self._q.snapshot()
