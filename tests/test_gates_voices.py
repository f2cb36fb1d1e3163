"""Chat gates (blocks, trust, level/medal/guard/subscriber, paid-only, duplicates, rate) and voice mapping."""

from __future__ import annotations

import dataclasses

from ishow.config.load import default_config
from ishow.config.schema import FilterConfig, VoiceMapConfig, VoiceRule
from ishow.config.voice import VoiceSpec
from ishow.events import ChatEvent, EventKind, User
from ishow.policy.compose import Dropped, compose, pick_voice, stable_index
from ishow.policy.gates import ChatGate


def ev(text: str = "hello", uid: str = "u1", badges: tuple[str, ...] = (), kind: EventKind = EventKind.DANMAKU,
       moderator: bool = False, platform: str = "bilibili") -> ChatEvent:  # fmt: skip
    return ChatEvent(platform, "r", User(uid, f"name-{uid}", badges, moderator), kind, text)


def test_blocked_and_banned_patterns_apply_even_to_trusted() -> None:
    gate = ChatGate(FilterConfig(blocked_users=("name-bad",), banned_patterns=(r"加.?微.?信",)))
    assert gate.check(ev(uid="bad"), "hi", 0) == "blocked_user"
    assert gate.check(ev(moderator=True), "快加 微信 领奖", 0) == "banned_pattern"
    assert gate.check(ev(), "normal", 0) is None


def test_level_medal_guard_subscriber_gates_and_paid_only() -> None:
    cases = [
        (FilterConfig(min_user_level=10), ("level:5",), "user_level"),
        (FilterConfig(min_user_level=10), ("level:12",), None),
        (FilterConfig(require_medal=True), (), "no_medal"),
        (FilterConfig(require_medal=True), ("medal:粉丝团:3",), None),
        (FilterConfig(guard_only=True), ("guard:0",), "not_guard"),
        (FilterConfig(guard_only=True), ("guard:3",), None),
        (FilterConfig(subscribers_only=True), ("vip/1",), "not_subscriber"),
        (FilterConfig(subscribers_only=True), ("subscriber/12",), None),
        (FilterConfig(paid_only=True), (), "paid_only"),
    ]
    for cfg, badges, expected in cases:
        assert ChatGate(cfg).check(ev(badges=badges), "hi", 0) == expected, (cfg, badges)
    # paid events, moderators and trusted users pass the gates
    strict = FilterConfig(paid_only=True, min_user_level=50, trusted_users=("name-vip",))
    assert ChatGate(strict).check(ev(kind=EventKind.SUPER_CHAT), "hi", 0) is None
    assert ChatGate(strict).check(ev(moderator=True), "hi", 0) is None
    assert ChatGate(strict).check(ev(uid="vip"), "hi", 0) is None


def test_duplicates_within_window_and_rate_limit() -> None:
    gate = ChatGate(FilterConfig(duplicate_window_s=10, user_rate_limit=3))
    assert gate.check(ev(uid="a"), "Same Text", 0) is None
    assert gate.check(ev(uid="b"), "same  text!", 5) == "duplicate"  # squashed: case/space/punct-insensitive
    assert gate.check(ev(uid="b"), "same text", 11) is None  # window passed
    for i in range(2):
        assert gate.check(ev(uid="a"), f"msg {i}", 20 + i) is None
    assert gate.check(ev(uid="a"), "one too many", 22) == "rate_limited"
    assert gate.check(ev(uid="a"), "a minute later", 81) is None


def test_compose_uses_gate_templates_and_gift_fields() -> None:
    cfg = default_config()
    gate = ChatGate(cfg.filter)
    gift = dataclasses.replace(ev(kind=EventKind.GIFT, text=""), gift="辣条", count=15)
    u = compose(gift, cfg, gate, 0.0)
    assert not isinstance(u, Dropped) and u.text == "谢谢name-u1的十五个辣条"  # numbers read, name kept as written
    tw = dataclasses.replace(ev("PogChamp nice", kind=EventKind.SUPER_CHAT, platform="twitch"), amount=100)
    u = compose(tw, cfg, gate, 0.0)
    assert not isinstance(u, Dropped) and u.text == "name-u1 cheered one hundred bits: PogChamp nice"
    assert compose(ev("hello"), cfg, gate, 1.0) != Dropped("duplicate", ev("hello"))
    again = compose(ev("hello", uid="u2"), cfg, gate, 2.0)
    assert isinstance(again, Dropped) and again.reason == "duplicate"
    sticker = dataclasses.replace(ev("[doge]"), emote_only=True)
    assert isinstance(compose(sticker, cfg, gate, 3.0), Dropped)


def test_voice_rules_pool_and_language() -> None:
    cfg = default_config()
    voices = (*cfg.voices, VoiceSpec("alice"), VoiceSpec("bob"), VoiceSpec("carol"))
    vm = VoiceMapConfig(
        pool=("alice", "bob", "carol"),
        rules=(
            VoiceRule(voice="default_en", platform="twitch", kind="super_chat"),
            VoiceRule(voice="bob", user="boss"),
        ),
    )
    cfg = dataclasses.replace(cfg, voices=voices, voice_map=vm)
    assert pick_voice(cfg, "x", platform="twitch", kind="super_chat", user_id="1") == "default_en"
    assert pick_voice(cfg, "x", platform="bilibili", kind="danmaku", user_id="9", user_name="boss") == "bob"
    assert pick_voice(cfg, "x", "carol", platform="twitch", kind="super_chat") == "carol"  # explicit wins
    # each viewer keeps the same pool voice; the pool is actually spread
    picks = {uid: pick_voice(cfg, "你好", platform="bilibili", user_id=uid) for uid in map(str, range(60))}
    assert picks == {uid: pick_voice(cfg, "hello", platform="bilibili", user_id=uid) for uid in picks}
    assert set(picks.values()) == {"alice", "bob", "carol"}
    assert stable_index("bilibili:42", 3) == stable_index("bilibili:42", 3)
    no_pool = dataclasses.replace(cfg, voice_map=VoiceMapConfig())
    assert pick_voice(no_pool, "你好", user_id="1") == "default_zh"
    assert pick_voice(no_pool, "hello", user_id="1") == "default_en"


def test_pool_voice_is_stable_across_processes() -> None:
    """A restart (new process, different hash seed) gives every viewer the same voice again."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import dataclasses, json\n"
        "from ishow.config.schema import VoiceMapConfig\n"
        "from ishow.config.load import default_config\n"
        "from ishow.config.voice import VoiceSpec\n"
        "from ishow.policy.compose import pick_voice\n"
        "cfg = default_config()\n"
        "cfg = dataclasses.replace(cfg, voices=(*cfg.voices, VoiceSpec('a'), VoiceSpec('b'), VoiceSpec('c')),\n"
        "                          voice_map=VoiceMapConfig(pool=('a', 'b', 'c')))\n"
        "print(json.dumps([pick_voice(cfg, 'hi', platform='twitch', user_id=str(i)) for i in range(50)]))\n"
    )
    runs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1] and len(set(runs[0])) == 3
