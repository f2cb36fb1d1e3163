"""Batch collection: wait for the first message, then gather for the window (50–100 ms) or up to max_items.

The window counts from the first message's *arrival* (``Utterance.created``), not from when the batcher got to
it: after a long synthesis, a message that has already waited a window goes out with whatever else is queued.

``on_wait`` lets the caller use the window: it is called with the items collected so far each time the collector has
to wait for more (the window is open and nothing else is queued). The pipeline starts synthesizing the items it
has not started yet then, if the engine is free (``batch.early_start``), so an idle stream's message is ready when
its window closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from ishow.events import Batch, Utterance
from ishow.utterance_queue import AsyncUtteranceQueue

# The event loop's timers fire up to 1 ms late (epoll waits in whole milliseconds, rounded up): the last stretch
# of a window is waited out by yielding to the loop instead, so a batch closes when its window does, not up to a
# millisecond after. (At most this long per batch, and the loop keeps serving everything else meanwhile.)
SPIN_S = 0.0015


class BatchWindow:
    """Pure policy: is a batch opened at ``opened`` with ``count`` items complete at ``now``?"""

    def __init__(self, window_s: float, max_items: int) -> None:
        self.window_s = window_s
        self.max_items = max_items

    @staticmethod
    def opened(first_arrival: float, now: float) -> float:
        """The window opens when the batch's first message arrived (never in the future of ``now``)."""
        return min(first_arrival, now)

    def remaining(self, opened: float, now: float) -> float:
        return max(0.0, opened + self.window_s - now)

    def complete(self, opened: float, count: int, now: float) -> bool:
        return count >= self.max_items or now >= opened + self.window_s


async def next_batch(
    queue: AsyncUtteranceQueue,
    window: BatchWindow,
    clock: Callable[[], float] = time.monotonic,
    items: list[Utterance] | None = None,
    on_wait: Callable[[Sequence[Utterance]], None] | None = None,
) -> Batch:
    """Block for the first item, then collect until the window (from its arrival) closes or the batch is full.

    Items already queued are always taken (up to ``max_items``), even when the window has already closed.
    ``clock`` must be the clock of ``Utterance.created`` (monotonic). ``items`` (optional) is the list collected
    into, so the caller can see (and cancel) items mid-collection. ``on_wait`` (optional) is called with a copy of
    the items so far just before each wait for more (see the module doc).
    """
    items = [] if items is None else items
    first = await queue.get()
    items.append(first)
    opened = window.opened(first.created, clock())
    spin_since: float | None = None
    timed_out = False
    while len(items) < window.max_items:
        item = queue.get_nowait()
        if item is not None:
            items.append(item)
            continue
        left = window.remaining(opened, clock())
        if left <= 0.0:
            break
        if not timed_out and left > SPIN_S:
            if on_wait is not None:
                on_wait(tuple(items))
            # an arrival ends the wait early (take it, wait again); a timeout leaves only the last stretch
            timed_out = not await queue.wait_nonempty(left - SPIN_S)
            continue
        now = time.perf_counter()
        spin_since = now if spin_since is None else spin_since
        if now - spin_since > 2 * SPIN_S:  # a clock that does not advance (tests): never spin for long
            break
        await asyncio.sleep(0)
    return Batch(tuple(items))
