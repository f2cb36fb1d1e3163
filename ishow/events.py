"""Frozen dataclasses that cross stage boundaries: ChatEvent → Utterance → Batch → Audio."""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ishow.audio_format import SAMPLE_RATE


class EventKind(str, enum.Enum):
    DANMAKU = "danmaku"
    SUPER_CHAT = "super_chat"
    GIFT = "gift"
    GUARD = "guard"
    SUB = "sub"
    RAID = "raid"
    SYSTEM = "system"


class Priority(enum.IntEnum):
    """Higher is spoken first."""

    NORMAL = 0
    MODERATOR = 1
    PAID = 2


@dataclass(frozen=True)
class User:
    id: str
    name: str
    badges: tuple[str, ...] = ()
    moderator: bool = False


@dataclass(frozen=True)
class ChatEvent:
    """One message (or gift, super chat...) as a platform delivered it."""

    platform: str
    room: str
    user: User
    kind: EventKind
    text: str
    amount: float = 0.0
    currency: str = ""
    timestamp: float = field(default_factory=time.time)
    msg_id: str = ""
    gift: str = ""  # gift name (gift), guard/membership name (guard, sub)
    count: int = 0  # gifts in this (merged) event; raid viewers; sub months
    emote_only: bool = False  # the platform says the message is only an emote/sticker


@dataclass(frozen=True)
class Removal:
    """A moderator removed chat upstream (Twitch CLEARMSG/CLEARCHAT, Bilibili super-chat delete).

    ``msg_id`` set → that message; else ``user_id`` set → all of that user's messages; else everything from
    ``platform``. Queued utterances that match are dropped (reason "removed").
    """

    platform: str
    msg_id: str = ""
    user_id: str = ""


_ids = itertools.count(1)


def new_id(prefix: str = "u") -> str:
    return f"{prefix}{next(_ids)}-{int(time.time() * 1000) % 10_000_000}"


@dataclass(frozen=True)
class Utterance:
    """What will be spoken: ``text`` is exactly the spoken text (normalized, templated); ``raw`` the original."""

    id: str
    text: str
    voice: str
    user: str = ""
    raw: str = ""
    platform: str = "local"
    kind: EventKind = EventKind.DANMAKU
    priority: Priority = Priority.NORMAL
    msg_id: str = ""
    user_id: str = ""
    created: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Batch:
    items: tuple[Utterance, ...]
    created: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, eq=False)
class Audio:
    """Synthesized speech for one utterance: float32 mono samples in [-1, 1]."""

    utterance: Utterance
    samples: npt.NDArray[np.float32]
    sample_rate: int = SAMPLE_RATE
    engine: str = ""
    synth_seconds: float = 0.0
    # A long message is streamed: part 0 first (final=False), then the rest as it is synthesized; the last part
    # has final=True. Chat-sized messages are one part (0, final). Outputs treat all parts as one utterance.
    part: int = 0
    final: bool = True

    @property
    def duration(self) -> float:
        return float(len(self.samples)) / self.sample_rate

    def pcm16(self) -> bytes:
        """Little-endian signed 16-bit PCM bytes of ``samples``."""
        clipped = np.clip(self.samples, -1.0, 1.0)
        return (clipped * 32767.0).round().astype("<i2").tobytes()
