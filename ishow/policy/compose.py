"""ChatEvent → Utterance: clean, filter, gate, normalize, template, choose a voice. Pure (the caller passes
``now`` and owns the stateful ``ChatGate``)."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from ishow.config.schema import Config
from ishow.events import ChatEvent, EventKind, Priority, Utterance, new_id
from ishow.policy.filters import PAID_KINDS, clean_text, drop_reason
from ishow.policy.gates import ChatGate
from ishow.policy.normalize import normalize

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
_CJK = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES) + "]")


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


@dataclass(frozen=True)
class Dropped:
    reason: str
    event: ChatEvent


def stable_index(key: str, size: int) -> int:
    """The same viewer always maps to the same pool slot (across restarts and machines)."""
    return zlib.crc32(key.encode("utf-8")) % size


def pick_voice(
    cfg: Config,
    text: str,
    requested: str = "",
    *,
    platform: str = "",
    kind: str = "",
    user_id: str = "",
    user_name: str = "",
) -> str:
    """The voice for a message: explicit request → first matching rule → viewer's pool voice → by language."""
    if requested:
        return requested
    vm = cfg.voice_map
    for rule in vm.rules:
        if rule.platform and rule.platform != platform:
            continue
        if rule.kind and rule.kind != kind:
            continue
        if rule.user and rule.user not in (user_id, user_name):
            continue
        return rule.voice
    if vm.pool and user_id:
        return vm.pool[stable_index(f"{platform}:{user_id}", len(vm.pool))]
    if vm.english and not has_cjk(text):
        return vm.english
    return vm.default


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def speech_text(text: str, lang: str | None = None) -> str:
    """What the engine should read for a chat text: links spoken as a word, emotes gone, spam collapsed,
    numbers in words, in the message's language (see ``ishow.policy.normalize``)."""
    return normalize(text, lang)


_USER_MARK = "XqIshowUserQx"  # stands in for the user's name while the template is normalized


def fill_template(template: str, event: ChatEvent, spoken_text: str) -> str:
    """Fill the template and read its numbers ({num}, {amount}) in the template's language; the user's name
    is kept exactly as written (no number reading inside names)."""
    filled = template.format(
        user=_USER_MARK,
        text=spoken_text,
        amount=_amount(event.amount),
        currency=event.currency,
        gift=event.gift,
        num=event.count,
        platform=event.platform,
    )
    lang = "zh" if has_cjk(template) or (template.strip() == "{text}" and has_cjk(spoken_text)) else "en"
    return normalize(filled, lang).replace(_USER_MARK, clean_text(event.user.name)).strip()


def compose(
    event: ChatEvent, cfg: Config, gate: ChatGate | None = None, now: float = 0.0, voice: str = ""
) -> Utterance | Dropped:
    """Turn a chat event into what will be spoken, or say why it is dropped."""
    text = clean_text(event.text)
    reason = drop_reason(event, text, cfg.filter)
    if reason:
        return Dropped(reason, event)
    paid = event.kind in PAID_KINDS
    if event.emote_only and cfg.filter.drop_emote_only and not paid:
        return Dropped("emote_only", event)
    if gate is not None:
        reason = gate.check(event, text, now)
        if reason:
            return Dropped(reason, event)
    spoken_text = speech_text(text)
    if not spoken_text and not paid:
        return Dropped("emote_only" if cfg.filter.drop_emote_only else "empty", event)
    if paid and len(spoken_text) > cfg.filter.max_chars:
        spoken_text = spoken_text[: cfg.filter.max_chars] + "…"  # paid messages are shortened, never dropped
    template = cfg.templates.for_kind(event.kind.value, event.platform)
    if not template:
        return Dropped("template_disabled", event)
    spoken = fill_template(template, event, spoken_text)
    if not spoken:
        return Dropped("empty", event)
    if paid:
        priority = Priority.PAID
    elif event.user.moderator:
        priority = Priority.MODERATOR
    else:
        priority = Priority.NORMAL
    return Utterance(
        id=new_id(),
        text=spoken,
        voice=pick_voice(
            cfg,
            spoken,
            voice,
            platform=event.platform,
            kind=event.kind.value,
            user_id=event.user.id,
            user_name=event.user.name,
        ),
        user=event.user.name,
        raw=event.text,
        platform=event.platform,
        kind=event.kind,
        priority=priority,
        msg_id=event.msg_id,
        user_id=event.user.id,
    )


__all__ = ["Dropped", "EventKind", "compose", "has_cjk", "pick_voice", "speech_text"]
