"""Which chat is read aloud: pure checks returning a drop reason (or None to keep)."""

from __future__ import annotations

import re
import unicodedata

from ishow.config.schema import FilterConfig
from ishow.events import ChatEvent, EventKind

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)+/\S*", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")

PAID_KINDS = frozenset({EventKind.SUPER_CHAT, EventKind.GIFT, EventKind.GUARD, EventKind.SUB})


def clean_text(text: str) -> str:
    """Drop control/zero-width characters and collapse whitespace. Width and punctuation are left to the
    normalizer, which keeps Chinese punctuation (good for prosody) in Chinese text."""
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def squash(text: str) -> str:
    """Lower-case without spaces or punctuation, so banned words match through ``b a n`` tricks."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def drop_reason(event: ChatEvent, text: str, cfg: FilterConfig) -> str | None:
    """Reason to drop ``event`` (whose cleaned text is ``text``), or None to read it.

    Paid events are never dropped for length: the composer shortens them instead.
    """
    paid = event.kind in PAID_KINDS
    if not text and not paid:
        return "empty"
    if cfg.command_prefixes and any(text.startswith(p) for p in cfg.command_prefixes if p):
        return "command"
    if cfg.drop_links and text and not _URL.sub("", text).strip():
        return "link_only"
    squashed = squash(text)
    for word in cfg.banned_words:
        w = squash(word)
        if w and w in squashed:
            return "banned_word"
    if not paid:
        if len(text) < cfg.min_chars:
            return "too_short"
        if len(text) > cfg.max_chars:
            return "too_long"
    return None
