from __future__ import annotations

import dataclasses

import pytest

from ishow.config.load import default_config
from ishow.config.schema import FilterConfig
from ishow.events import ChatEvent, EventKind, Priority, User
from ishow.policy.compose import Dropped, compose
from ishow.policy.filters import clean_text, drop_reason


def ev(text: str, kind: EventKind = EventKind.DANMAKU, name: str = "viewer", moderator: bool = False) -> ChatEvent:
    return ChatEvent("test", "room", User(id=name, name=name, moderator=moderator), kind, text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \u200b ", "empty"),
        ("!song", "command"),
        ("https://example.com/x", "link_only"),
        ("www.spam.io/free", "link_only"),
        ("x" * 201, "too_long"),
        ("hello", None),
        ("看看这个 https://example.com", None),
    ],
)
def test_drop_reasons(text: str, reason: str | None) -> None:
    assert drop_reason(ev(text), clean_text(text), FilterConfig()) == reason


def test_banned_words_match_through_spacing_and_full_width() -> None:
    cfg = FilterConfig(banned_words=("spoiler", "剧透"))
    for text in ("S P O I L E R alert", "ｓｐｏｉｌｅｒ", "这里有剧 透"):
        assert drop_reason(ev(text), clean_text(text), cfg) == "banned_word"


def test_compose_templates_priority_voice_and_links() -> None:
    cfg = default_config()
    long_text = "".join(chr(0x4E00 + 7 * i) for i in range(300))  # 300 distinct characters
    sc = compose(ev(long_text, EventKind.SUPER_CHAT, "大佬"), cfg)
    assert not isinstance(sc, Dropped)
    assert sc.priority == Priority.PAID and sc.text.startswith("大佬的醒目留言：") and sc.text.endswith("…")
    en = compose(ev("check https://x.io/a out"), cfg)
    assert not isinstance(en, Dropped) and en.text == "check link out" and en.voice == "default_en"
    zh = compose(ev("看 https://x.io/a 这个", moderator=True), cfg)
    assert not isinstance(zh, Dropped) and zh.text == "看 链接 这个" and zh.voice == "default_zh"
    assert zh.priority == Priority.MODERATOR
    off = dataclasses.replace(cfg, templates=dataclasses.replace(cfg.templates, gift=""))
    gift = ev("辣条", EventKind.GIFT)
    assert compose(gift, off) == Dropped("template_disabled", gift)


def test_clean_text_strips_controls_and_collapses_space() -> None:
    assert clean_text("hello\x07\u200bworld  \n x，好") == "hello world x，好"


async def test_replay_loop_rounds_get_fresh_message_ids() -> None:
    import asyncio

    from ishow.sources.replay import ReplaySource

    src = ReplaySource("demo", None, speed=1000.0, loop=True)
    seen: list[str] = []

    def emit(event: object) -> None:
        seen.append(event.msg_id)  # type: ignore[attr-defined]

    task = asyncio.create_task(src.run(emit))
    for _ in range(200):
        if len(seen) >= 3 * len(src.lines):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert len(seen) >= 3 * len(src.lines)
    assert len(set(seen)) == len(seen)  # a looping demo is not eaten by the duplicate-id filter


def test_has_cjk_matches_the_code_point_ranges_on_every_edge() -> None:
    import random

    from ishow.policy.compose import _CJK_RANGES, has_cjk

    def by_ranges(text: str) -> bool:
        return any(lo <= ord(ch) <= hi for ch in text for lo, hi in _CJK_RANGES)

    edges = [c for lo, hi in _CJK_RANGES for c in (lo - 1, lo, hi, hi + 1)]
    for c in edges:
        assert has_cjk(f"ab{chr(c)}c") == by_ranges(chr(c)), hex(c)
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(chr(rng.choice([rng.randint(32, 0x3000), rng.randint(0x3000, 0x30000)])) for _ in range(6))
        assert has_cjk(text) == by_ranges(text), [hex(ord(ch)) for ch in text]
    assert not has_cjk("") and has_cjk("主播 hello") and not has_cjk("hello 123")
