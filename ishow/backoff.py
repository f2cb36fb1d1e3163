"""Jittered exponential reconnect delays and task restarts, shared by every network source and output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any


def backoff_delay(attempt: int, cap: float, rand: float, base: float = 1.0) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): ``base·2^attempt`` capped at ``cap``, jittered to
    50–100 % by ``rand`` ∈ [0, 1)."""
    return min(cap, base * 2.0 ** min(attempt, 30)) * (0.5 + 0.5 * rand)


async def rerun_on_failure(
    run: Callable[[], Coroutine[Any, Any, None]],
    what: str,
    *,
    log: Any,
    active: Callable[[], bool] = lambda: True,
    on_failure: Callable[[], None] | None = None,
    pause_s: tuple[float, float] = (1.0, 1.0),
    calm_s: float = 60.0,
) -> None:
    """The one catch-all of a background task: a bug is logged with context (``"<what> failed; restarting it"``,
    with ``retry_in_s`` and ``restarts``) and the task restarts after a pause, while ``active()``; it ends when
    ``run`` returns. The pause starts at ``pause_s[0]`` and doubles up to ``pause_s[1]`` while failures follow
    each other; a run that lasted ``calm_s`` starts the pauses over."""
    delay = pause_s[0]
    restarts = 0
    while active():
        started = time.monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if time.monotonic() - started > calm_s:  # it ran fine for a while: start over with a short pause
                delay = pause_s[0]
            restarts += 1
            if on_failure is not None:
                on_failure()
            log.exception(f"{what} failed; restarting it", retry_in_s=delay, restarts=restarts)
        await asyncio.sleep(delay)
        delay = min(delay * 2, pause_s[1])
