"""Merge rapid repeats of one gift from one user ("辣条 x 1" × 15 → "辣条 x 15"). Pure; the clock is injected."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ishow.events import ChatEvent, EventKind

_SEP = " x "


def gift_text(name: str, num: int) -> str:
    return f"{name}{_SEP}{num}"


def parse_gift_text(text: str) -> tuple[str, int] | None:
    """Inverse of ``gift_text``; ``None`` if ``text`` is not in that form."""
    name, sep, num = text.rpartition(_SEP)
    if not sep or not name or not num.isdigit():
        return None
    return name, int(num)


@dataclass
class _Pending:
    first: ChatEvent
    name: str
    num: int
    amount: float
    opened: float
    last: float


@dataclass
class GiftMerger:
    """Holds gift events and releases one merged event per (user, gift) once ``window_s`` passes without a repeat.

    A run of repeats is released at the latest ``max_hold_s`` after its first gift, so a steady stream still
    speaks. ``push`` and ``poll`` return the events whose window has closed (in the order they were opened);
    ``flush`` releases everything (on shutdown: paid events are never silently dropped). Non-gift events and
    gifts whose text is not ``gift_text`` form pass straight through ``push``. At most ``max_pending`` runs are
    held; opening one more releases the oldest.
    """

    window_s: float = 3.0
    max_hold_s: float = 10.0
    max_pending: int = 256
    _pending: dict[tuple[str, str, str], _Pending] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def next_deadline(self) -> float | None:
        """The clock value at which ``poll`` will next release something."""
        return min((self._deadline(p) for p in self._pending.values()), default=None)

    def _deadline(self, p: _Pending) -> float:
        return min(p.last + self.window_s, p.opened + self.max_hold_s)

    def push(self, event: ChatEvent, now: float) -> list[ChatEvent]:
        out = self.poll(now)
        parsed: tuple[str, int] | None = None
        if event.kind is EventKind.GIFT:
            parsed = (event.gift, max(1, event.count)) if event.gift else parse_gift_text(event.text)
        if parsed is None or self.window_s <= 0:
            return [*out, event]
        name, num = parsed
        key = (event.user.id or event.user.name, event.user.name, name)
        p = self._pending.get(key)
        if p is None:
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                out.append(self._release(self._pending.pop(oldest)))
            self._pending[key] = _Pending(event, name, num, event.amount, now, now)
        else:
            p.num += num
            p.amount += event.amount
            p.last = now
        return out

    def poll(self, now: float) -> list[ChatEvent]:
        done = [k for k, p in self._pending.items() if now >= self._deadline(p)]
        return [self._release(self._pending.pop(k)) for k in done]

    def flush(self) -> list[ChatEvent]:
        out = [self._release(p) for p in self._pending.values()]
        self._pending.clear()
        return out

    @staticmethod
    def _release(p: _Pending) -> ChatEvent:
        return dataclasses.replace(
            p.first, text=gift_text(p.name, p.num), gift=p.name, count=p.num, amount=round(p.amount, 6)
        )
