"""The pure parts of the trust boundary: Host/Origin policy, token rules, text and JSON at the door, the bounded
queue and mute list, engine turns, the /ws/input and stdin rules, and `ishow voices add` against TOML injection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.boundary import loads_limited, platform_label, sanitize_event, valid_text
from ishow.config_load import load_config, parse_config
from ishow.engine.worker import EngineTurns
from ishow.errors import ConfigError, InputError, VoiceError
from ishow.events import ChatEvent, EventKind, Priority, User, Utterance
from ishow.mutes import MuteList
from ishow.queue import UtteranceQueue
from ishow.sources.stdin import parse_line
from ishow.sources.wsinput import parse_frame, untrusted
from ishow.voices import add_voice, toml_string
from ishow.web_guard import RequestGuard, normalize_origin, token_problem
from tests.conftest import REPO

# ---------------------------------------------------------------- Host / Origin


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:27121", True),
        ("localhost:27121", True),
        ("LOCALHOST.:27121", True),
        ("[::1]:27121", True),
        ("127.9.9.9:27121", True),
        ("localhost:8080", False),
        ("localhost", False),  # port 80 implied: not ours
        ("evil.example:27121", False),
        ("localhost.evil.example:27121", False),
        ("127.0.0.1.nip.io:27121", False),
        ("user@localhost:27121", False),
        ("", False),
        (None, False),
        ("[::1:27121", False),
    ],
)
def test_host_policy_on_loopback(host: str | None, ok: bool) -> None:
    assert (RequestGuard().host_problem(host, 27121) is None) is ok


def test_host_policy_with_wildcard_bind_and_allowed_hosts() -> None:
    guard = RequestGuard("0.0.0.0", allowed_hosts=("tts.example.com", "proxy.lan:8443"))
    assert guard.host_problem("192.168.1.20:27121", 27121) is None  # an IP literal cannot be rebound
    assert guard.host_problem("127.0.0.1:8080", 27121) is None  # e.g. docker run -p 127.0.0.1:8080:27121
    assert guard.host_problem("tts.example.com", 27121) is None
    assert guard.host_problem("proxy.lan:8443", 27121) is None
    assert guard.host_problem("proxy.lan", 27121) is not None
    assert guard.host_problem("nas.lan:27121", 27121) is not None
    assert RequestGuard("192.168.1.20").host_problem("10.0.0.1:27121", 27121) is not None


def test_origin_policy() -> None:
    guard = RequestGuard(allowed_origins=("https://dash.example",))
    host = "127.0.0.1:27121"
    assert guard.origin_problem(None, host) is None
    assert guard.origin_problem("http://127.0.0.1:27121", host) is None
    assert guard.origin_problem("HTTP://127.0.0.1:27121/", host) is None
    assert guard.origin_problem("https://dash.example:443", host) is None
    for bad in ("null", "https://evil.example", "http://localhost:27121", "http://127.0.0.1", "file://", "x"):
        assert guard.origin_problem(bad, host) is not None, bad
    assert normalize_origin("http://[::1]:80") == "http://[::1]:80"
    assert normalize_origin("https://a.example/path") is None


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('allowed_origins = ["evil.example"]', r"server\.allowed_origins\[0\]: not an origin"),
        ('allowed_hosts = ["http://x.example/"]', r"server\.allowed_hosts\[0\]: not a host name"),
        ('host = "0.0.0.0"\ntoken = "short"', r"server\.token: too short: 5 characters; off loopback at least 16"),
        ('token = "has space in it here"', r"server\.token: must be printable ASCII"),
        ('token = "tökén-with-umlauts-1234"', r"server\.token: must be printable ASCII"),
    ],
)
def test_config_refuses_bad_server_entries(toml: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as e:
        parse_config(f"[server]\n{toml}\n")
    assert "short" not in str(e.value).replace("too short", "")  # the token itself is never echoed


def test_ishow_token_prints_a_token_the_config_accepts_off_loopback() -> None:
    run = subprocess.run([sys.executable, "-m", "ishow", "token"], capture_output=True, text=True, timeout=60)
    token = run.stdout.strip()
    assert run.returncode == 0 and len(token) >= 32 and token_problem(token, loopback=False) is None
    assert parse_config(f'[server]\nhost = "0.0.0.0"\ntoken = "{token}"\n').server.token == token
    again = subprocess.run([sys.executable, "-m", "ishow", "token"], capture_output=True, text=True, timeout=60)
    assert again.stdout.strip() != token


# ---------------------------------------------------------------- text and JSON at the door


def test_valid_text_and_event_sanitation() -> None:
    assert valid_text("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert valid_text("😀 ok") == "😀 ok"
    event = ChatEvent(
        "twi\x00tch", "r", User("id\ud800", "na\x1bme\u0085"), EventKind.DANMAKU, "hi \ud83d", msg_id="m\n1"
    )
    clean = sanitize_event(event)
    assert (clean.platform, clean.user.id, clean.user.name, clean.text, clean.msg_id) == (
        "twitch",
        "id\ufffd",
        "name",
        "hi \ufffd",
        "m1",
    )
    for s in (clean.platform, clean.user.id, clean.user.name, clean.text, clean.msg_id):
        s.encode("utf-8")  # never raises
    assert sanitize_event(clean) is clean
    assert platform_label("bilibili") == "bilibili" and platform_label("plat42") == "other"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 33 + "]" * 33, "nested deeper than 32 levels"),
        ('{"a": "' + "[" * 100 + '"}', None),  # brackets inside strings do not count
        ("1" + "0" * 20, "21 digits"),
        ("-" + "9" * 25, "25 digits"),
        ("Infinity", "Infinity is not a JSON number"),
        ("[1e999999]", None),  # a float that overflows is inf, not an error; fields check finiteness
        ("{", "not valid JSON"),
    ],
)
def test_loads_limited(text: str, expected: str | None) -> None:
    if expected is None:
        loads_limited(text)
    else:
        with pytest.raises(InputError, match=expected):
            loads_limited(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_loads_limited_raises_only_input_errors(text: str) -> None:
    with contextlib.suppress(InputError):
        loads_limited(text)


def test_ws_input_frames_follow_the_http_rules() -> None:
    with pytest.raises(InputError, match=r"'user' contains control character U\+001B at index 1"):
        parse_frame(json.dumps({"user": "a\x1bb", "text": "hi"}))
    with pytest.raises(InputError, match="nested deeper"):
        parse_frame('{"user": "a", "text": "hi", "x": ' + "[" * 40 + "]" * 40 + "}")
    with pytest.raises(InputError, match="5000 digits"):
        parse_frame('{"user": "a", "text": "hi", "count": ' + "9" * 5000 + "}")
    event = parse_frame('{"user": "a\\ud800", "text": "x \\udfff"}')
    assert isinstance(event, ChatEvent) and (event.user.name, event.text) == ("a\ufffd", "x \ufffd")
    paid = parse_frame(json.dumps({"user": "b", "text": "t", "kind": "gift", "amount": 5, "gift": "x", "count": 3}))
    plain = untrusted(paid)
    assert isinstance(plain, ChatEvent)
    assert (plain.kind, plain.amount, plain.gift, plain.count, plain.user.moderator) == (
        EventKind.DANMAKU,
        0,
        "",
        0,
        False,
    )
    for platform in ("bilibili", "twitch", "youtube"):
        with pytest.raises(InputError, match="reserved"):
            untrusted(parse_frame(json.dumps({"user": "b", "text": "t", "platform": platform})))


def test_stdin_lines_follow_the_http_rules() -> None:
    with pytest.raises(InputError, match=r"control character U\+0007"):
        parse_line("bob: ring \x07 ring\n")
    event = parse_line("bob: caf\udce9 ok\n")  # an undecodable byte, surrogate-escaped
    assert event is not None and event.text == "caf\ufffd ok" and event.kind is EventKind.DANMAKU
    assert parse_line("  \n") is None


# ---------------------------------------------------------------- bounded structures


def utt(i: int, priority: Priority = Priority.NORMAL) -> Utterance:
    return Utterance(id=f"u{i}", text=f"t{i}", voice="v", priority=priority, created=0.0)


def test_paid_backlog_is_bounded_oldest_paid_dropped_first() -> None:
    q = UtteranceQueue(max_size=3, max_age_s=60, max_paid=4)
    drops = [d for i in range(10) for d in q.push(utt(i, Priority.PAID))]
    assert [(d.reason, d.utterance.id) for d in drops] == [("paid_overflow", f"u{i}") for i in range(6)]
    assert q.paid == 4 and [u.id for u in q.snapshot()] == ["u6", "u7", "u8", "u9"]
    drops = q.push(utt(10))  # chat past max_size with only paid waiting: the new chat is the victim
    assert [(d.reason, d.utterance.id) for d in drops] == [("queue_full", "u10")]
    assert [q.pop(0.0)[0].id for _ in range(4)] == ["u6", "u7", "u8", "u9"]  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Priority)), st.booleans()), max_size=80))
def test_queue_matches_a_reference_model(ops: list[tuple[Priority, bool]]) -> None:
    """Pushes and pops against a sorted-list model of the same policy: same order, same victims, same bounds."""
    q = UtteranceQueue(max_size=5, max_age_s=1e9, max_paid=3)
    model: list[tuple[int, int, Utterance]] = []
    for i, (priority, pop) in enumerate(ops):
        if pop:
            got, _ = q.pop(0.0)
            model.sort(key=lambda e: (-e[0], e[1]))
            want = model.pop(0)[2] if model else None
            assert got == want
            continue
        u = utt(i, priority)
        dropped = {d.utterance.id for d in q.push(u)}
        model.append((int(priority), i, u))
        expected: set[str] = set()
        while len(model) > 5:
            chat = [e for e in model if e[0] < Priority.PAID]
            if not chat:
                break
            victim = min(chat, key=lambda e: (e[0], e[1]))
            model.remove(victim)
            expected.add(victim[2].id)
        paid = sorted((e for e in model if e[0] == Priority.PAID), key=lambda e: e[1])
        for e in paid[: max(0, len(paid) - 3)]:
            model.remove(e)
            expected.add(e[2].id)
        assert dropped == expected
        assert len(q) == len(model) and q.paid <= 3


def test_mute_list_is_capped_oldest_expires_first() -> None:
    mutes = MuteList(max_entries=3)
    for i in range(5):
        mutes.mute(f"user{i}", until=100.0 + i)
    assert len(mutes) == 3
    assert not mutes.is_muted(("user0",), 0.0) and not mutes.is_muted(("user1",), 0.0)
    assert all(mutes.is_muted((f"user{i}",), 0.0) for i in (2, 3, 4))
    mutes.mute("user2", until=500.0)  # muting again refreshes: now the newest
    mutes.mute("user5", until=101.0)
    assert not mutes.is_muted(("user3",), 0.0) and mutes.is_muted(("user2",), 0.0)
    assert set(mutes.remaining(103.5)) == {"user2", "user4"}  # user5's mute ended at 101: forgotten


async def test_engine_turns_put_chat_before_waiting_background_jobs() -> None:
    turns = EngineTurns()
    await turns.acquire(background=True)  # the engine is busy
    order: list[str] = []

    async def job(name: str, background: bool) -> None:
        await turns.acquire(background)
        order.append(name)
        turns.release()

    tasks = [asyncio.create_task(job("tts1", True)), asyncio.create_task(job("tts2", True))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("chat", False)))
    cancelled = asyncio.create_task(job("gone", False))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    turns.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["chat", "tts1", "tts2"]


# ---------------------------------------------------------------- `ishow voices add` against injection


def project(tmp_path: Path) -> Path:
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "config" / "ishowtts.toml", tmp_path / "config" / "ishowtts.toml")
    shutil.copytree(REPO / "voices", tmp_path / "voices")
    return tmp_path / "config" / "ishowtts.toml"


INJECTION = '\n[server]\nhost = "0.0.0.0"\ntoken = "0123456789abcdef0123"\n[templates]\ndanmaku = "pwned {text}"\n#'


def test_voices_add_file_name_and_transcript_cannot_add_keys(tmp_path: Path) -> None:
    cfg_path = project(tmp_path)
    before = load_config(cfg_path)
    evil_dir = tmp_path / "in"
    evil_dir.mkdir()
    wav = evil_dir / f"x{INJECTION}.wav"
    shutil.copy(REPO / "voices" / "default_en.wav", wav)
    transcript = f'Hello everyone" {INJECTION} \\ """ \x07 end'
    add_voice(cfg_path, "guest", wav, transcript)
    after = load_config(cfg_path)
    assert after.server == before.server and after.templates == before.templates
    assert [v.id for v in after.voices] == [*(v.id for v in before.voices), "guest"]
    assert after.voice("guest").ref_text == transcript.strip()  # type: ignore[union-attr]
    text = cfg_path.read_text(encoding="utf-8")
    assert "\n[server]\nhost" not in text.split("[[voices]]  # added")[-1]
    with pytest.raises(ConfigError, match="use 1–40 letters"):
        add_voice(cfg_path, "ok\n", wav, "x")  # `$` would have matched before a trailing newline


def test_voices_add_reads_the_duration_from_the_header_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg_path = project(tmp_path)
    long_wav = tmp_path / "long.wav"
    sf.write(long_wav, np.zeros(16000 * 600, dtype=np.int16), 16000, subtype="PCM_16")  # 10 minutes
    loaded: list[Path] = []
    monkeypatch.setattr("ishow.engine.audio.load_audio", lambda p, *a: loaded.append(p))
    with pytest.raises(VoiceError, match=r"lasts 600\.00 s"):
        add_voice(cfg_path, "long", long_wav, "words")
    assert loaded == []  # refused from the header: no samples were read


def test_toml_string_round_trips_anything() -> None:
    import tomllib

    for value in ('a"b', "c\\d", "e\nf\r\tg", '"""', "\x00\x1f\x7f\x85\u2028", "中文 😀", INJECTION):
        assert tomllib.loads(f"k = {toml_string(value)}")["k"] == value
        assert "\n" not in toml_string(value)
