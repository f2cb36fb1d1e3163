"""Stateful chat gates: who may be read (blocks, trust, level/medal/guard/subscriber gates, paid-only),
duplicates within a window and a per-user rate limit. Pure: the caller passes ``now``.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

from ishow.config.schema import FilterConfig
from ishow.events import ChatEvent
from ishow.policy.filters import PAID_KINDS, squash

MAX_TRACKED = 5000  # users/texts remembered for rate and duplicate checks; the oldest are forgotten first


def badge_value(badges: tuple[str, ...], prefix: str) -> str | None:
    """The value of the first badge ``prefix:value`` or ``prefix/value`` (None when absent)."""
    for badge in badges:
        for sep in (":", "/"):
            if badge.startswith(prefix + sep):
                return badge[len(prefix) + 1 :]
        if badge == prefix:
            return ""
    return None


def _int(value: str | None) -> int:
    try:
        return int((value or "0").split(":")[-1])
    except ValueError:
        return 0


@dataclass(frozen=True)
class UserFacts:
    level: int
    medal: bool
    guard: bool
    subscriber: bool


def user_facts(event: ChatEvent) -> UserFacts:
    badges = event.user.badges
    return UserFacts(
        level=_int(badge_value(badges, "level")),
        medal=badge_value(badges, "medal") is not None,
        guard=_int(badge_value(badges, "guard")) > 0,
        subscriber=any(badge_value(badges, b) is not None for b in ("subscriber", "founder", "member")),
    )


class ChatGate:
    """Decides per event whether it may be read, remembering recent texts and per-user rates."""

    def __init__(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self._patterns = [re.compile(p, re.IGNORECASE) for p in cfg.banned_patterns]
        self._blocked = {u.casefold() for u in cfg.blocked_users}
        self._trusted = {u.casefold() for u in cfg.trusted_users}
        self._recent_texts: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._user_times: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def _is(self, names: set[str], event: ChatEvent) -> bool:
        return bool(names) and (event.user.id.casefold() in names or event.user.name.casefold() in names)

    def check(self, event: ChatEvent, text: str, now: float) -> str | None:
        """Drop reason for ``event`` (cleaned text ``text``) at ``now``, or None. Records accepted events."""
        cfg = self.cfg
        paid = event.kind in PAID_KINDS
        if self._is(self._blocked, event):
            return "blocked_user"
        if any(p.search(text) for p in self._patterns):
            return "banned_pattern"
        trusted = self._is(self._trusted, event) or event.user.moderator
        if not trusted and not paid:
            if cfg.paid_only:
                return "paid_only"
            facts = user_facts(event)
            if cfg.min_user_level and facts.level < cfg.min_user_level:
                return "user_level"
            if cfg.require_medal and not facts.medal:
                return "no_medal"
            if cfg.guard_only and not facts.guard:
                return "not_guard"
            if cfg.subscribers_only and not facts.subscriber:
                return "not_subscriber"
            if cfg.duplicate_window_s > 0:
                key = squash(text)
                seen = self._recent_texts.get(key)
                if seen is not None and now - seen < cfg.duplicate_window_s:
                    return "duplicate"
            if cfg.user_rate_limit > 0:
                times = self._user_times.get(event.user.id)
                if times is not None:
                    while times and now - times[0] >= 60.0:
                        times.popleft()
                    if len(times) >= cfg.user_rate_limit:
                        return "rate_limited"
        self._remember(event, text, now)
        return None

    def _remember(self, event: ChatEvent, text: str, now: float) -> None:
        if self.cfg.duplicate_window_s > 0:
            key = squash(text)
            self._recent_texts[key] = now
            self._recent_texts.move_to_end(key)
            while len(self._recent_texts) > MAX_TRACKED:
                self._recent_texts.popitem(last=False)
        if self.cfg.user_rate_limit > 0:
            times = self._user_times.setdefault(event.user.id, collections.deque(maxlen=self.cfg.user_rate_limit))
            times.append(now)
            self._user_times.move_to_end(event.user.id)
            while len(self._user_times) > MAX_TRACKED:
                self._user_times.popitem(last=False)
