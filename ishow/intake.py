"""Intake: every chat event enters here — valid Unicode, mutes, duplicate ids, filters, templates — then the queue.

A message refused at the door is counted in ``ishow_dropped_messages{reason}``; an accepted one is opened in the
ledger and queued. Runs on the event loop only.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

import structlog

from ishow.boundary import platform_label, sanitize_event, sanitize_removal
from ishow.config.schema import Config
from ishow.events import ChatEvent, EventKind, Removal, User, Utterance
from ishow.ledger import Ledger
from ishow.metrics import Metrics
from ishow.mutes import MuteList
from ishow.policy.compose import Dropped, compose
from ishow.policy.gates import ChatGate
from ishow.utterance_queue import AsyncUtteranceQueue

log = structlog.get_logger(__name__)

# A platform may deliver one message twice (a reconnect that replays recent chat, a super chat sent again):
# the same (platform, msg_id) within this window is dropped as "duplicate_id". Bounded by count too.
DUPLICATE_ID_WINDOW_S = 120.0
MAX_RECENT_IDS = 10_000

DropWaiting = Callable[[Callable[[Utterance], bool], str], list[Utterance]]


class Intake:
    def __init__(
        self,
        cfg: Callable[[], Config],
        queue: AsyncUtteranceQueue,
        ledger: Ledger,
        metrics: Metrics,
        drop_waiting: DropWaiting,
    ) -> None:
        self._cfg = cfg
        self.queue = queue
        self.ledger = ledger
        self.metrics = metrics
        self._drop_waiting = drop_waiting
        self.gate = ChatGate(cfg().filter)
        self.mutes = MuteList()  # bounded: past MAX_MUTED users the oldest mute expires first
        self._recent_ids: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()

    def ingest(self, event: ChatEvent | Removal) -> None:
        """What sources emit (called on the event loop): chat to speak, or removals to apply."""
        if isinstance(event, Removal):
            self.remove(sanitize_removal(event))
        else:
            self.accept(event)

    def accept(self, event: ChatEvent, voice: str = "") -> Utterance | Dropped:
        """Filter, compose and enqueue one chat event (its strings made valid Unicode first)."""
        event = sanitize_event(event)
        self.metrics.messages.labels(platform_label(event.platform)).inc()
        outcome: Utterance | Dropped
        if self.mutes and self.mutes.is_muted((event.user.id, event.user.name), time.monotonic()):
            outcome = Dropped("muted", event)
        elif event.msg_id and self._seen_id(event.platform, event.msg_id):
            outcome = Dropped("duplicate_id", event)
        else:
            outcome = compose(event, self._cfg(), self.gate, time.monotonic(), voice)
        if isinstance(outcome, Dropped):
            self.metrics.dropped.labels(outcome.reason).inc()
            log.debug("message dropped", reason=outcome.reason, user=event.user.name, text=event.text[:80])
            return outcome
        self.ledger.accept(outcome)
        self.queue.put(outcome)
        self.metrics.queue_depth.set(len(self.queue))
        return outcome

    def submit_text(self, user: str, text: str, platform: str = "api", voice: str = "") -> Utterance | Dropped:
        event = ChatEvent(
            platform=platform, room="api", user=User(id=user, name=user), kind=EventKind.DANMAKU, text=text
        )
        return self.accept(event, voice)

    def _seen_id(self, platform: str, msg_id: str) -> bool:
        """True when this message was already accepted recently; else remember it."""
        now = time.monotonic()
        key = (platform, msg_id)
        seen = self._recent_ids.get(key)
        if seen is not None and now - seen < DUPLICATE_ID_WINDOW_S:
            return True
        self._recent_ids[key] = now
        self._recent_ids.move_to_end(key)
        while self._recent_ids and (
            len(self._recent_ids) > MAX_RECENT_IDS
            or now - next(iter(self._recent_ids.values())) >= DUPLICATE_ID_WINDOW_S
        ):
            self._recent_ids.popitem(last=False)
        return False

    def remove(self, removal: Removal) -> list[Utterance]:
        """A moderator deleted chat upstream: drop the matching waiting utterances."""

        def match(u: Utterance) -> bool:
            if u.platform != removal.platform:
                return False
            if removal.msg_id:
                return u.msg_id == removal.msg_id
            return not removal.user_id or u.user_id == removal.user_id

        gone = self._drop_waiting(match, "removed")
        for u in gone:
            log.info("queued message removed by a moderator", user=u.user, text=u.text[:80], platform=u.platform)
        return gone

    def mute(self, user: str, minutes: float) -> int:
        """Silence ``user`` (name or id) for ``minutes``; their waiting messages are dropped too."""
        self.mutes.mute(user, time.monotonic() + minutes * 60.0)
        gone = self._drop_waiting(lambda u: user in (u.user, u.user_id), "muted")
        log.info("user muted", user=user, minutes=minutes, removed=len(gone))
        return len(gone)

    def unmute(self, user: str) -> bool:
        return self.mutes.unmute(user)

    def muted(self) -> dict[str, float]:
        return self.mutes.remaining(time.monotonic())
