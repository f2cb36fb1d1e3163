"""Batch collection: wait for the first message, then gather for the window (50–100 ms) or up to max_items."""

from __future__ import annotations

import time
from collections.abc import Callable

from ishow.events import Batch, Utterance
from ishow.utterance_queue import AsyncUtteranceQueue


class BatchWindow:
    """Pure policy: is a batch started at ``opened`` with ``count`` items complete at ``now``?"""

    def __init__(self, window_s: float, max_items: int) -> None:
        self.window_s = window_s
        self.max_items = max_items

    def remaining(self, opened: float, now: float) -> float:
        return max(0.0, opened + self.window_s - now)

    def complete(self, opened: float, count: int, now: float) -> bool:
        return count >= self.max_items or now >= opened + self.window_s


async def next_batch(
    queue: AsyncUtteranceQueue,
    window: BatchWindow,
    clock: Callable[[], float] = time.monotonic,
    items: list[Utterance] | None = None,
) -> Batch:
    """Block for the first item, then collect until the window closes or the batch is full.

    ``items`` (optional) is the list collected into, so the caller can see (and cancel) items mid-collection.
    """
    items = [] if items is None else items
    items.append(await queue.get())
    opened = clock()
    while not window.complete(opened, len(items), clock()):
        item = queue.get_nowait()
        if item is not None:
            items.append(item)
            continue
        if not await queue.wait_nonempty(window.remaining(opened, clock())):
            break
    return Batch(tuple(items))
