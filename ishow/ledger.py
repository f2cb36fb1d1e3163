"""The accounting rule, enforced: every accepted message ends exactly once, as *spoken* or *dropped(reason)*.

``Ledger`` holds the ids of accepted messages that have not ended yet. ``spoken``/``dropped`` close an id and count
it (``ishow_utterances_spoken``, ``ishow_dropped_messages{reason}``); closing an id twice counts nothing, so the
counters always reconcile: ``accepted = spoken + Σ dropped-after-acceptance + open``. Messages refused at the door
(filters, mutes, duplicates) are counted in ``ishow_dropped_messages`` by the daemon directly, so over all
received messages ``ishow_messages = spoken + Σ ishow_dropped_messages`` once nothing waits.
"""

from __future__ import annotations

import structlog

from ishow.events import Priority, Utterance
from ishow.metrics import Metrics

log = structlog.get_logger(__name__)


class Ledger:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._open: dict[str, Utterance] = {}
        self.accepted = 0
        self.spoken_count = 0
        self.dropped_counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def accept(self, u: Utterance) -> None:
        self._open[u.id] = u
        self.accepted += 1
        self._metrics.accepted.inc()

    def is_open(self, uid: str) -> bool:
        return uid in self._open

    def spoken(self, u: Utterance) -> bool:
        if self._open.pop(u.id, None) is None:
            log.error("accounting: utterance ended twice (spoken)", id=u.id)
            return False
        self.spoken_count += 1
        self._metrics.spoken.inc()
        return True

    def dropped(self, u: Utterance, reason: str, **context: object) -> bool:
        """Close ``u`` as dropped; paid messages are logged at info with the reason, chat at debug."""
        if self._open.pop(u.id, None) is None:
            return False
        self.dropped_counts[reason] = self.dropped_counts.get(reason, 0) + 1
        self._metrics.dropped.labels(reason).inc()
        level = log.info if u.priority >= Priority.PAID else log.debug
        level("message dropped", reason=reason, id=u.id, user=u.user, text=u.text[:80], kind=u.kind.value, **context)
        return True

    def still_open(self) -> list[Utterance]:
        return list(self._open.values())
