"""Jittered exponential reconnect delays and task restarts, shared by every network source and output."""

from __future__ import annotations

import asyncio
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
    active: Callable[[], bool],
    on_failure: Callable[[], None],
    log: Any,
    pause_s: float = 1.0,
) -> None:
    """The one catch-all of a background task: a bug is logged with context (``"<what> failed; restarting it"``)
    and the task restarts ``pause_s`` later, while ``active()``; it ends when ``run`` returns."""
    while active():
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            on_failure()
            log.exception(f"{what} failed; restarting it")
            await asyncio.sleep(pause_s)
