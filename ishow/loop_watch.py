"""How late the event loop runs what is due: every stall of the daemon's loop, whatever caused it, made visible.

Everything the daemon serves (chat sources, the API, the OBS page's websocket, the batcher's window) runs on one
asyncio loop. When something holds it (a slow callback, a garbage collection, another thread keeping the GIL), every
one of them waits. :class:`LoopWatch` sleeps ``interval_s`` over and over and reports how much later than asked it
woke up: the loop's lag. The daemon puts every lag into ``ishow_loop_lag_seconds`` (a histogram: 1 ms to 1 s) and
logs the stalls of at least :data:`LOG_LAG_S` (``event loop stalled``; :class:`StallLog` keeps that to one line
per :data:`LOG_EVERY_S`, with a count of the others), so a late message in the logs can be told apart from slow
synthesis. One sleeping task: no work while nothing is late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

INTERVAL_S = 0.02
LOG_LAG_S = 0.05  # as gc_watch's threshold: a stall a listener could hear
LOG_EVERY_S = 10.0  # at most one "event loop stalled" line this often (a cold start's compiles stall it many times)


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


class StallLog:
    """Which stalls get a log line: the first one, then at most one per ``every_s``; each line carries how many
    stalls went unlogged since the one before it and the worst of them. Pure policy: no clock, no I/O."""

    def __init__(self, threshold_s: float = LOG_LAG_S, every_s: float = LOG_EVERY_S) -> None:
        self.threshold_s = threshold_s
        self.every_s = every_s
        self._last: float | None = None  # when the last line was logged
        self._skipped = 0
        self._worst = 0.0

    def note(self, lag_s: float, now: float) -> dict[str, float] | None:
        """The fields of a line to log for a lag of ``lag_s`` seen at ``now``, or None (short, or counted for the
        next line)."""
        if lag_s < self.threshold_s:
            return None
        if self._last is not None and now - self._last < self.every_s:
            self._skipped += 1
            self._worst = max(self._worst, lag_s)
            return None
        line = {"ms": round(lag_s * 1000, 1)}
        if self._skipped:
            line |= {"more_since_last_line": self._skipped, "worst_of_those_ms": round(self._worst * 1000, 1)}
        self._last, self._skipped, self._worst = now, 0, 0.0
        return line
