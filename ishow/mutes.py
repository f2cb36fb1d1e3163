"""The mute list: users (names or ids) silenced until a time. Pure, bounded, driven by the caller's clock.

Bound and drop policy: at most ``max_entries`` users; muting one more makes the oldest mute (by when it was set)
expire early, with a log line. Expired entries are forgotten when looked up or listed.
"""

from __future__ import annotations

import collections

import structlog

log = structlog.get_logger(__name__)

MAX_MUTED = 1000


class MuteList:
    def __init__(self, max_entries: int = MAX_MUTED) -> None:
        self.max_entries = max_entries
        self._until: collections.OrderedDict[str, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def __bool__(self) -> bool:
        return bool(self._until)

    def mute(self, user: str, until: float) -> None:
        self._until.pop(user, None)
        self._until[user] = until
        while len(self._until) > self.max_entries:
            old, _ = self._until.popitem(last=False)
            log.info("mute list full; the oldest mute expired early", user=old, limit=self.max_entries)

    def unmute(self, user: str) -> bool:
        return self._until.pop(user, None) is not None

    def is_muted(self, keys: tuple[str, ...], now: float) -> bool:
        for key in keys:
            until = self._until.get(key)
            if until is not None:
                if until > now:
                    return True
                del self._until[key]
        return False

    def remaining(self, now: float) -> dict[str, float]:
        """Seconds left per muted user (expired entries are dropped)."""
        for user in [u for u, until in self._until.items() if until <= now]:
            del self._until[user]
        return {user: round(until - now, 1) for user, until in self._until.items()}
