"""Long garbage-collector pauses, made visible.

A collection stops every thread of the process (it holds the GIL): the event loop, the engine thread that
launches the GPU work, the warm-up thread. A full collection over a compiled engine's many Python objects
(inductor and dynamo keep large object graphs) can take long enough to delay chat by a visible amount. Each
collection that takes at least ``threshold_s`` is reported (generation, duration, objects collected), so a latency
spike in the logs can be told apart from slow synthesis.

:class:`GcWatch` is a ``gc.callbacks`` entry: install it once (the daemon does for its lifetime), uninstall it on
the way out. It does no I/O itself: ``report`` gets each long pause.

:func:`freeze_heap` makes such pauses rare and short: the daemon calls it once the engine is loaded and again when
its warm-up is done. Every object alive then (torch's, the model's, dynamo's and inductor's: most of the heap, and
alive for the process's lifetime) moves to the collector's permanent generation, which no collection scans again.
A full collection then walks only what chat created since. Garbage among the frozen objects (cycles the load left
behind) is kept rather than collected: a one-time cost, bounded by the load. :func:`thaw_heap` undoes it when the
daemon stops (so a process that runs a daemon and goes on, e.g. the tests, collects normally afterwards).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_THRESHOLD_S = 0.05


@dataclass(frozen=True)
class GcPause:
    generation: int
    seconds: float
    collected: int


class GcWatch:
    """Times every collection (``gc.callbacks``); calls ``report`` with each one of at least ``threshold_s``."""

    def __init__(
        self,
        report: Callable[[GcPause], None],
        threshold_s: float = DEFAULT_THRESHOLD_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.report = report
        self.threshold_s = threshold_s
        self.clock = clock
        self.pauses = 0  # collections reported so far
        self._t0: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = self.clock()
            return
        if self._t0 is None:  # installed mid-collection
            return
        seconds, self._t0 = self.clock() - self._t0, None
        if seconds >= self.threshold_s:
            self.pauses += 1
            with contextlib.suppress(Exception):  # a callback must never raise into the collector
                self.report(GcPause(int(info.get("generation", -1)), seconds, int(info.get("collected", 0))))

    def install(self) -> GcWatch:
        if self not in gc.callbacks:
            gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        while self in gc.callbacks:
            gc.callbacks.remove(self)


def freeze_heap() -> None:
    """Move every object the collector tracks into its permanent generation (``gc.freeze``: a list splice, no
    collection, so no pause). Not ``gc.get_freeze_count()`` after it: that walks every frozen object (60–75 ms
    with the GIL held for a compiled engine's ~650k objects, which delayed a message's hand-off on an H200)."""
    gc.freeze()


def thaw_heap() -> None:
    """Back to normal collection for everything :func:`freeze_heap` froze (``gc.unfreeze``)."""
    gc.unfreeze()
