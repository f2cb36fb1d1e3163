"""How late the event loop runs what is due: every stall of the daemon's loop, whatever caused it, made visible.

Everything the daemon serves (chat sources, the API, the OBS page's websocket, the batcher's window) runs on one
asyncio loop. When something holds it (a slow callback, a garbage collection, another thread keeping the GIL), every
one of them waits. :class:`LoopWatch` sleeps ``interval_s`` over and over and reports how much later than asked it
woke up: the loop's lag. The daemon puts every lag into ``ishow_loop_lag_seconds`` (a histogram: 1 ms to 1 s) and
logs each one of at least :data:`LOG_LAG_S` (``event loop stalled``), so a late message in the logs can be told
apart from slow synthesis. One sleeping task: no work while nothing is late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

INTERVAL_S = 0.02
LOG_LAG_S = 0.05  # as gc_watch's threshold: a stall a listener could hear


class LoopWatch:
    """``run()`` until cancelled: sleep ``interval_s``, call ``report`` with how much later than that it woke."""

    def __init__(
        self,
        report: Callable[[float], None],
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.report = report
        self.interval_s = interval_s
        self.clock = clock
        self.sleep = sleep

    async def run(self) -> None:
        while True:
            t0 = self.clock()
            await self.sleep(self.interval_s)
            self.report(max(0.0, self.clock() - t0 - self.interval_s))
