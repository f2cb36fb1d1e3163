"""Jittered exponential reconnect delays, shared by every network source."""

from __future__ import annotations


def backoff_delay(attempt: int, cap: float, rand: float, base: float = 1.0) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): ``base·2^attempt`` capped at ``cap``, jittered to
    50–100 % by ``rand`` ∈ [0, 1)."""
    return min(cap, base * 2.0 ** min(attempt, 30)) * (0.5 + 0.5 * rand)
