"""ChatEvent → Utterance: clean, filter, template, choose a voice. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ishow.config import Config
from ishow.events import ChatEvent, EventKind, Priority, Utterance, new_id
from ishow.policy.filters import PAID_KINDS, clean_text, drop_reason, replace_links

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


def has_cjk(text: str) -> bool:
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in _CJK_RANGES)


@dataclass(frozen=True)
class Dropped:
    reason: str
    event: ChatEvent


def pick_voice(cfg: Config, text: str, requested: str = "") -> str:
    """The configured voice for ``text``: an explicit request, else by language via ``[voice_map]``."""
    if requested:
        return requested
    if cfg.voice_map.english and not has_cjk(text):
        return cfg.voice_map.english
    return cfg.voice_map.default


def compose(event: ChatEvent, cfg: Config, voice: str = "") -> Utterance | Dropped:
    """Turn a chat event into what will be spoken, or say why it is dropped."""
    text = clean_text(event.text)
    reason = drop_reason(event, text, cfg.filter)
    if reason:
        return Dropped(reason, event)
    paid = event.kind in PAID_KINDS
    if paid and len(text) > cfg.filter.max_chars:
        text = text[: cfg.filter.max_chars] + "…"  # paid messages are shortened, never dropped
    link_word = "链接" if has_cjk(text) else "link"
    text = replace_links(text, link_word)
    template = {
        EventKind.SUPER_CHAT: cfg.templates.super_chat,
        EventKind.GIFT: cfg.templates.gift,
    }.get(event.kind, cfg.templates.danmaku)
    if not template:
        return Dropped("template_disabled", event)
    spoken = template.replace("{user}", clean_text(event.user.name)).replace("{text}", text).strip()
    priority = Priority.PAID if paid else Priority.MODERATOR if event.user.moderator else Priority.NORMAL
    return Utterance(
        id=new_id(),
        text=spoken,
        voice=pick_voice(cfg, spoken, voice),
        user=event.user.name,
        raw=event.text,
        platform=event.platform,
        kind=event.kind,
        priority=priority,
        msg_id=event.msg_id,
        user_id=event.user.id,
    )
