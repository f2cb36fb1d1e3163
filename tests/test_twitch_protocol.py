"""Twitch IRC parsing: lines written from the documented format, fed whole, byte by byte and with garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.errors import ProtocolError
from ishow.events import ChatEvent, EventKind, Removal
from ishow.sources.twitch import protocol as p

PRIVMSG = (
    "@badge-info=subscriber/14;badges=moderator/1,subscriber/12;client-nonce=abc;color=#1E90FF;"
    "display-name=Ronni;emotes=25:0-4,12-16/1902:6-10;first-msg=0;flags=;id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;"
    "mod=1;returning-chatter=0;room-id=1337;subscriber=1;tmi-sent-ts=1507246572675;turbo=0;user-id=1337;"
    "user-type=mod :ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #ronni :Kappa Keepo Kappa hello there"
)
BITS = (
    "@badge-info=;badges=bits/100;bits=150;color=;display-name=Cheerer;emotes=;id=c1;mod=0;room-id=1;"
    "tmi-sent-ts=1507246572676;user-id=42;user-type= :cheerer!cheerer@cheerer.tmi.twitch.tv PRIVMSG #ronni "
    ":Cheer100 great stream Kappa50 abc999"
)
ACTION = (
    "@badges=vip/1;display-name=Dancer;emotes=25:7-11;id=a1;user-id=7;vip=1 "
    ":dancer!dancer@dancer.tmi.twitch.tv PRIVMSG #ronni :\x01ACTION dances Kappa\x01"
)
REPLY = (
    "@badges=;display-name=Bob;id=r1;reply-parent-display-name=Alice;reply-parent-msg-body=hi\\severyone;"
    "reply-parent-msg-id=p1;reply-parent-user-id=5;reply-parent-user-login=alice;user-id=6 "
    ":bob!bob@bob.tmi.twitch.tv PRIVMSG #ronni :welcome back"
)
RESUB = (
    "@badge-info=subscriber/3;badges=subscriber/0;display-name=Sub\\sFan;emotes=;id=n1;login=subfan;"
    "msg-id=resub;msg-param-cumulative-months=3;msg-param-sub-plan=1000;"
    "msg-param-sub-plan-name=Channel\\sSubscription\\s(ronni);room-id=1;"
    "system-msg=subfan\\ssubscribed\\sat\\sTier\\s1.\\sThey've\\ssubscribed\\sfor\\s3\\smonths!;"
    "tmi-sent-ts=1507246572000;user-id=77 :tmi.twitch.tv USERNOTICE #ronni :Great stream -- keep it up!"
)
RAID = (
    "@badges=;display-name=TestChannel;id=n2;login=testchannel;msg-id=raid;msg-param-displayName=TestChannel;"
    "msg-param-login=testchannel;msg-param-viewerCount=15;room-id=1;"
    "system-msg=15\\sraiders\\sfrom\\sTestChannel\\shave\\sjoined!;user-id=88 :tmi.twitch.tv USERNOTICE #ronni"
)
MYSTERY = (
    "@badges=;display-name=Giver;id=n3;login=giver;msg-id=submysterygift;msg-param-mass-gift-count=5;"
    "system-msg=Giver\\sis\\sgifting\\s5\\sTier\\s1\\sSubs!;user-id=99 :tmi.twitch.tv USERNOTICE #ronni"
)
MYSTERY_PART = (
    "@badges=;display-name=Giver;id=n4;login=giver;msg-id=subgift;msg-param-community-gift-id=123;"
    "system-msg=Giver\\sgifted\\sa\\ssub;user-id=99 :tmi.twitch.tv USERNOTICE #ronni"
)
ANNOUNCE = (
    "@badges=broadcaster/1;display-name=Ronni;id=n5;login=ronni;msg-id=announcement;msg-param-color=PRIMARY;"
    "system-msg=;user-id=1337 :tmi.twitch.tv USERNOTICE #ronni :Giveaway at 9pm!"
)
CLEARMSG = (
    "@login=ronni;room-id=;target-msg-id=abc-123-def;tmi-sent-ts=1642720582342 :tmi.twitch.tv CLEARMSG #dallas :HeyGuys"
)
CLEARCHAT_USER = (
    "@ban-duration=350;room-id=12345678;target-user-id=87654321;tmi-sent-ts=1642719320727 "
    ":tmi.twitch.tv CLEARCHAT #dallas :ronni"
)
CLEARCHAT_ALL = "@room-id=12345678;tmi-sent-ts=1642715695392 :tmi.twitch.tv CLEARCHAT #dallas"
PING = "PING :tmi.twitch.tv"
RECONNECT = ":tmi.twitch.tv RECONNECT"
WELCOME = ":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!"
AUTH_FAIL = ":tmi.twitch.tv NOTICE * :Login authentication failed"

RECORDING = [
    WELCOME,
    ":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands",
    ":justinfan12345!justinfan12345@justinfan12345.tmi.twitch.tv JOIN #ronni",
    "@emote-only=0;followers-only=-1;r9k=0;room-id=1337;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #ronni",
    PRIVMSG,
    BITS,
    ACTION,
    REPLY,
    RESUB,
    RAID,
    MYSTERY,
    MYSTERY_PART,
    ANNOUNCE,
    CLEARMSG,
    CLEARCHAT_USER,
    CLEARCHAT_ALL,
    PING,
    RECONNECT,
]


def items(lines: list[str]) -> list[p.Item | None]:
    return [p.interpret(p.parse_line(line)) for line in lines]


def test_tag_unescaping() -> None:
    assert p.unescape_tag_value(r"a\sb\:c\\d\re\nf") == "a b;c\\d\re\nf"
    assert p.unescape_tag_value("trailing\\") == "trailing"
    assert p.unescape_tag_value(r"\x\q") == "xq"
    assert p.unescape_tag_value("plain") == "plain"


def test_parse_line_parts() -> None:
    m = p.parse_line(PRIVMSG + "\r\n")
    assert m.command == "PRIVMSG" and m.prefix == "ronni!ronni@ronni.tmi.twitch.tv" and m.nick == "ronni"
    assert m.params == ("#ronni", "Kappa Keepo Kappa hello there") and m.channel == "ronni"
    assert m.trailing == "Kappa Keepo Kappa hello there"
    assert m.tags["badges"] == "moderator/1,subscriber/12" and m.tags["flags"] == ""
    ping = p.parse_line("PING :tmi.twitch.tv")
    assert ping.command == "PING" and ping.params == ("tmi.twitch.tv",) and ping.prefix == "" and ping.tags == {}
    cap = p.parse_line(":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands")
    assert cap.params == ("*", "ACK", "twitch.tv/tags twitch.tv/commands")
    no_trailing = p.parse_line(":a!a@a JOIN #chan")
    assert no_trailing.trailing is None and no_trailing.params == ("#chan",)
    assert p.parse_line("@flag :x 001 me :hi").tags == {"flag": ""}


def test_privmsg_badges_emotes_and_ids() -> None:
    (event,) = items([PRIVMSG])
    assert isinstance(event, ChatEvent)
    assert event.platform == "twitch" and event.room == "ronni" and event.kind is EventKind.DANMAKU
    assert event.text == "hello there"  # Kappa (0-4, 12-16) and Keepo (6-10) removed
    assert event.user.id == "1337" and event.user.name == "Ronni" and event.user.moderator
    assert event.user.badges == ("moderator/1", "subscriber/12")
    assert event.msg_id == "b34ccfc7-4977-403a-8a94-33c6bac34fb8"
    assert event.timestamp == pytest.approx(1507246572.675)
    pm = p.parse_privmsg(p.parse_line(PRIVMSG))
    assert pm.text == "Kappa Keepo Kappa hello there"  # the original is kept
    assert [(e.id, e.start, e.end) for e in pm.emotes] == [("25", 0, 4), ("25", 12, 16), ("1902", 6, 10)]


def test_emote_positions_are_code_points() -> None:
    line = "@emotes=25:3-7;user-id=1;id=x :a!a@a PRIVMSG #c :😀😀 Kappa ok"
    event = p.interpret(p.parse_line(line))
    assert isinstance(event, ChatEvent) and event.text == "😀😀 ok"


def test_emote_only_messages() -> None:
    only = p.interpret(p.parse_line("@emotes=25:0-4,6-10;user-id=1;id=e :a!a@a PRIVMSG #c :Kappa Kappa"))
    assert isinstance(only, ChatEvent) and only.text == "" and only.emote_only
    tagged = p.interpret(p.parse_line("@emote-only=1;emotes=;user-id=1 :a!a@a PRIVMSG #c :xyz"))
    assert isinstance(tagged, ChatEvent) and tagged.emote_only
    (event,) = items([PRIVMSG])
    assert isinstance(event, ChatEvent) and not event.emote_only


def test_bits_action_and_reply() -> None:
    bits, action, reply = items([BITS, ACTION, REPLY])
    assert isinstance(bits, ChatEvent) and bits.kind is EventKind.SUPER_CHAT
    assert bits.amount == 150 and bits.currency == "BITS"
    assert bits.text == "great stream abc999"  # Cheer100 + Kappa50 = 150; abc999 exceeds what is left
    assert isinstance(action, ChatEvent) and action.text == "Dancer dances"
    assert action.user.badges == ("vip/1",) and not action.user.moderator
    assert isinstance(reply, ChatEvent) and reply.text == "@Alice welcome back"
    pm = p.parse_privmsg(p.parse_line(REPLY))
    assert pm.reply_parent_name == "Alice" and pm.reply_parent_msg_id == "p1"
    # a reply body that already starts with the mention is not prefixed twice
    already = REPLY.replace(":welcome back", ":@Alice welcome back")
    assert p.parse_privmsg(p.parse_line(already)).spoken == "@Alice welcome back"


def test_usernotices() -> None:
    resub, raid, mystery, part, announce = items([RESUB, RAID, MYSTERY, MYSTERY_PART, ANNOUNCE])
    assert isinstance(resub, ChatEvent) and resub.kind is EventKind.SUB
    assert resub.text == "subfan subscribed at Tier 1. They've subscribed for 3 months! Great stream -- keep it up!"
    assert resub.user.name == "Sub Fan" and resub.user.id == "77" and resub.msg_id == "n1"
    assert resub.count == 3 and resub.gift == "Channel Subscription (ronni)"
    assert isinstance(raid, ChatEvent) and raid.kind is EventKind.RAID
    assert raid.text == "15 raiders from TestChannel have joined!" and raid.count == 15
    assert isinstance(mystery, ChatEvent) and mystery.kind is EventKind.SUB and "5 Tier 1 Subs" in mystery.text
    assert mystery.count == 5
    assert part is None  # covered by the mystery gift announcement
    assert isinstance(announce, ChatEvent) and announce.kind is EventKind.SYSTEM
    assert announce.text == "Giveaway at 9pm!" and announce.user.moderator
    ritual = "@msg-id=ritual;login=x;user-id=1;system-msg=hi :tmi.twitch.tv USERNOTICE #c :hey"
    assert p.interpret(p.parse_line(ritual)) is None


def test_removals() -> None:
    one, user, everything = items([CLEARMSG, CLEARCHAT_USER, CLEARCHAT_ALL])
    assert one == Removal("twitch", msg_id="abc-123-def")
    assert user == Removal("twitch", user_id="87654321")
    assert everything == Removal("twitch")


def test_control_lines() -> None:
    ping, reconnect, welcome = items([PING, RECONNECT, WELCOME])
    assert isinstance(ping, p.Ping) and ping.reply() == "PONG :tmi.twitch.tv"
    assert isinstance(reconnect, p.Reconnect)
    assert welcome == p.Welcome("justinfan12345")
    with pytest.raises(p.TwitchAuthError, match="Login authentication failed"):
        p.interpret(p.parse_line(AUTH_FAIL))
    notice = p.interpret(p.parse_line("@msg-id=msg_banned :tmi.twitch.tv NOTICE #c :You are banned."))
    assert notice == p.Notice("msg_banned", "You are banned.")


def test_builders_and_channel_names() -> None:
    assert p.login_lines("ronni", "justinfan12345") == [
        "CAP REQ :twitch.tv/tags twitch.tv/commands",
        "NICK justinfan12345",
        "JOIN #ronni",
    ]
    assert p.login_lines("ronni", "bot", "abc")[1] == "PASS oauth:abc"
    assert p.pass_line("oauth:xyz") == "PASS oauth:xyz"
    assert p.pong_line() == "PONG :tmi.twitch.tv"
    for room in ("Ronni", "#ronni", "https://www.twitch.tv/ronni", "twitch.tv/ronni/videos?x=1"):
        assert p.normalize_channel(room) == "ronni"
    for bad in ("", "two words", "#", "x" * 26):
        with pytest.raises(ValueError, match="not a Twitch channel"):
            p.normalize_channel(bad)


def expected_items() -> list[p.Item | None]:
    return items(RECORDING)


def feed_all(buf: p.LineBuffer, chunks: list[str] | list[bytes]) -> list[str]:
    out: list[str] = []
    for chunk in chunks:
        out += buf.feed(chunk)
    return out


def strip_timestamps(values: list[p.Item | None]) -> list[object]:
    """Lines without tmi-sent-ts get 'now' as timestamp; compare everything else."""
    out: list[object] = []
    for v in values:
        out.append((v.platform, v.user, v.kind, v.text, v.msg_id) if isinstance(v, ChatEvent) else v)
    return out


def test_line_buffer_whole_byte_by_byte_and_with_garbage() -> None:
    data = "".join(line + "\r\n" for line in RECORDING)
    want = strip_timestamps(expected_items())
    assert feed_all(p.LineBuffer(), [data]) == RECORDING
    assert feed_all(p.LineBuffer(), list(data)) == RECORDING
    raw = data.encode()
    lines = feed_all(p.LineBuffer(), [raw[i : i + 1] for i in range(len(raw))])
    assert lines == RECORDING
    assert strip_timestamps(items(lines)) == want
    # several lines per frame, split at arbitrary points, LF-only endings accepted
    chunks = [data[i : i + 97] for i in range(0, len(data), 97)]
    assert feed_all(p.LineBuffer(), chunks) == RECORDING
    assert feed_all(p.LineBuffer(), ["PING :a\nPING :b\n\r\n"]) == ["PING :a", "PING :b"]
    # trailing garbage: a partial line stays pending; a complete garbage line is a ProtocolError, not a crash
    buf = p.LineBuffer()
    assert feed_all(buf, [data + "@@@ \x00garbage"]) == RECORDING
    assert buf.pending == "@@@ \x00garbage"
    (garbage,) = buf.feed("\r\n")
    with pytest.raises(ProtocolError, match="contains '\\\\x00'"):
        p.parse_line(garbage)


def test_overlong_line_is_cut_and_reported() -> None:
    buf = p.LineBuffer(max_line=100)
    assert buf.feed("PRIVMSG #c :" + "x" * 500) == []
    assert len(buf.pending) == 101
    (long_line, ping) = buf.feed("y" * 1000 + "\r\nPING :ok\r\n")
    assert len(long_line) == 101 and ping == "PING :ok"
    with pytest.raises(ProtocolError, match="longer than"):
        p.parse_line("PRIVMSG #c :" + "x" * p.MAX_LINE)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "empty IRC line"),
        ("@a=b", "tags but no command"),
        ("@ PING", "empty tag section"),
        (":prefix", "prefix but no command"),
        ("12 x", "neither letters nor a 3-digit"),
        ("PRIV-MSG #c :x", "neither letters"),
        ("PING :a\rb", "inside it"),
        ("@a=b;=c PING", "tag key"),
    ],
)
def test_malformed_lines_say_what_was_wrong(line: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        p.parse_line(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("@emotes=25:0-40;user-id=1 :a!a@a PRIVMSG #c :Kappa", "outside the 5-character"),
        ("@emotes=25:x-1;user-id=1 :a!a@a PRIVMSG #c :Kappa", "not 'start-end'"),
        ("@emotes=25;user-id=1 :a!a@a PRIVMSG #c :Kappa", "not 'id:start-end"),
        ("@bits=lots;user-id=1 :a!a@a PRIVMSG #c :hi", "bits='lots'"),
        (":a!a@a PRIVMSG #c", "expects '#channel :text'"),
        (":a!a@a PRIVMSG c :hi", "no #channel"),
        (":server PRIVMSG #c :hi", "neither a user-id tag nor a nick"),
        ("@login=x :tmi.twitch.tv USERNOTICE #c :hi", "no msg-id"),
        ("@login=x :tmi.twitch.tv CLEARMSG #c :hi", "no target-msg-id"),
        (":tmi.twitch.tv CLEARCHAT #c :someone", "no target-user-id"),
    ],
)
def test_lines_missing_what_they_need(line: str, expected: str) -> None:
    with pytest.raises(ProtocolError, match=expected):
        p.interpret(p.parse_line(line))


def check_only_protocol_errors(line: str) -> None:
    with contextlib.suppress(ProtocolError, p.TwitchAuthError):
        p.interpret(p.parse_line(line))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text(line: str) -> None:
    check_only_protocol_errors(line)


_tag = st.tuples(
    st.sampled_from(["emotes", "bits", "badges", "user-id", "id", "msg-id", "target-msg-id", "tmi-sent-ts", "x"]),
    st.text(alphabet="0123456789:-,/\\sab ;=", max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_tag, max_size=6),
    st.sampled_from(["PRIVMSG", "USERNOTICE", "CLEARMSG", "CLEARCHAT", "NOTICE", "PING", "001", "RECONNECT"]),
    st.sampled_from(["", ":a!a@a ", ":tmi.twitch.tv "]),
    st.text(max_size=40),
)
def test_fuzz_structured_lines(tags: list[tuple[str, str]], command: str, prefix: str, text: str) -> None:
    tag_part = "@" + ";".join(f"{k}={v}" for k, v in tags) + " " if tags else ""
    check_only_protocol_errors(f"{tag_part}{prefix}{command} #chan :{text}")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_fuzz_line_buffer(data: bytes, step: int) -> None:
    buf = p.LineBuffer(max_line=64)
    for i in range(0, len(data), step):
        for line in buf.feed(data[i : i + step]):
            assert "\n" not in line and line and len(line) <= 65
            check_only_protocol_errors(line)
