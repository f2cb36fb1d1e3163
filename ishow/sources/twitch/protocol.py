"""Twitch chat protocol, sans-I/O: IRC lines with IRCv3 tags in, ChatEvents/Removals and lines to send out.

Twitch speaks IRC over a websocket (``wss://irc-ws.chat.twitch.tv:443``). Each websocket frame carries one or
more CRLF-terminated lines (or, in principle, part of one); ``LineBuffer`` splits them. Every line is
``[@tags] [:prefix] COMMAND [params...] [:trailing]``; ``parse_line`` turns it into an ``IrcMessage`` and
``interpret`` turns that into what the client acts on. Nothing here does I/O; the clock is read only for
the timestamp of a line without a ``tmi-sent-ts`` tag.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from ishow.errors import ProtocolError, RemoteError
from ishow.events import ChatEvent, EventKind, Removal, User
from ishow.sources.twitch.irc import MAX_LINE as MAX_LINE
from ishow.sources.twitch.irc import IrcMessage as IrcMessage
from ishow.sources.twitch.irc import LineBuffer as LineBuffer
from ishow.sources.twitch.irc import parse_line as parse_line
from ishow.sources.twitch.irc import show
from ishow.sources.twitch.irc import unescape_tag_value as unescape_tag_value

PLATFORM = "twitch"
DEFAULT_WS_URL = "wss://irc-ws.chat.twitch.tv:443"
CAPABILITIES = "twitch.tv/tags twitch.tv/commands"

_CHANNEL = re.compile(r"[a-z0-9_]{1,25}")
_CHEER = re.compile(r"[A-Za-z0-9]*[A-Za-z](\d+)")
MAX_DIGITS = 18  # integer tags (bits, months, tmi-sent-ts in ms) fit in int64
_AUTH_FAILURES = ("Login authentication failed", "Improperly formatted auth", "Login unsuccessful", "Invalid NICK")

SUB_NOTICES = frozenset(
    [
        "sub",
        "resub",
        "subgift",
        "submysterygift",
        "giftpaidupgrade",
        "primepaidupgrade",
        "anongiftpaidupgrade",
        "standardpayforward",
        "communitypayforward",
    ]
)
# what ChatEvent.count holds per notice kind: months subscribed, subs gifted, raiders
_COUNT_TAGS = {
    "sub": "msg-param-cumulative-months",
    "resub": "msg-param-cumulative-months",
    "subgift": "msg-param-gift-months",
    "submysterygift": "msg-param-mass-gift-count",
    "raid": "msg-param-viewerCount",
}


class TwitchAuthError(RemoteError):
    """Twitch refused the login (bad or expired OAuth token, or a nick that does not match it)."""


# ---------------------------------------------------------------------------------------------- lines to send


def cap_req() -> str:
    return f"CAP REQ :{CAPABILITIES}"


def pass_line(token: str) -> str:
    """``PASS oauth:<token>``; a token given without the ``oauth:`` prefix gets it. Never log the result."""
    return f"PASS {token if token.startswith('oauth:') else 'oauth:' + token}"


def nick_line(nick: str) -> str:
    return f"NICK {nick}"


def anonymous_nick(number: int = 12345) -> str:
    """Twitch lets ``justinfan<digits>`` read chat without a token."""
    return f"justinfan{number}"


def join_line(channel: str) -> str:
    return f"JOIN #{channel}"


def pong_line(param: str = "tmi.twitch.tv") -> str:
    return f"PONG :{param}"


def ping_line() -> str:
    return "PING :tmi.twitch.tv"


def login_lines(channel: str, nick: str, token: str = "") -> list[str]:
    """What a client sends after the websocket opens: CAP REQ, PASS (with a token), NICK, JOIN."""
    return [cap_req(), *([pass_line(token)] if token else []), nick_line(nick), join_line(channel)]


def normalize_channel(room: str) -> str:
    """``#Foo``, ``foo`` or ``https://www.twitch.tv/foo`` → ``foo``. Raises ValueError when it cannot be one."""
    name = room.strip().rstrip("/")
    if "twitch.tv/" in name:
        name = name.rsplit("twitch.tv/", 1)[1].split("/", 1)[0].split("?", 1)[0]
    name = name.removeprefix("#").lower()
    if not _CHANNEL.fullmatch(name):
        raise ValueError(f"{room!r} is not a Twitch channel login (1–25 letters, digits or '_')")
    return name


# ---------------------------------------------------------------------------------------------- interpretation


@dataclass(frozen=True)
class Ping:
    param: str = "tmi.twitch.tv"

    def reply(self) -> str:
        return pong_line(self.param)


@dataclass(frozen=True)
class Reconnect:
    """The server is going away: reconnect now."""


@dataclass(frozen=True)
class Welcome:
    """``001``: the login was accepted."""

    nick: str


@dataclass(frozen=True)
class Notice:
    msg_id: str
    text: str


Item = ChatEvent | Removal | Ping | Reconnect | Welcome | Notice


@dataclass(frozen=True)
class Emote:
    id: str
    start: int  # code point index into the message text
    end: int  # inclusive


def parse_emotes(tag: str, text: str, line: str = "") -> tuple[Emote, ...]:
    """``25:0-4,12-16/1902:6-10`` → emotes; positions are code points of ``text``, ends inclusive."""
    out: list[Emote] = []
    for group in filter(None, tag.split("/")):
        emote_id, sep, ranges = group.partition(":")
        if not sep or not emote_id:
            raise ProtocolError(f"emotes tag group {group[:40]!r} is not 'id:start-end,...': {show(line)}")
        for span in ranges.split(","):
            a, dash, b = span.partition("-")
            if not (dash and a.isdigit() and b.isdigit() and a.isascii() and b.isascii()):
                raise ProtocolError(f"emote range {span[:40]!r} is not 'start-end': {show(line)}")
            if len(a) > MAX_DIGITS or len(b) > MAX_DIGITS:  # past any line length (and slow to convert)
                raise ProtocolError(f"emote range {span[:40]!r} is outside the message: {show(line)}")
            start, end = int(a), int(b)
            if not start <= end < len(text):
                raise ProtocolError(
                    f"emote range {start}-{end} is outside the {len(text)}-character message: {show(line)}"
                )
            out.append(Emote(emote_id, start, end))
    return tuple(out)


def strip_emotes(text: str, emotes: tuple[Emote, ...]) -> str:
    if not emotes:
        return text
    gone = {i for e in emotes for i in range(e.start, e.end + 1)}
    return " ".join("".join(ch for i, ch in enumerate(text) if i not in gone).split())


def strip_cheers(text: str, bits: int) -> str:
    """Drop cheermote words (``Cheer100``, ``Kappa50``) whose amounts add up to at most ``bits``."""
    if bits <= 0:
        return text
    words, left = [], bits
    for word in text.split():
        m = _CHEER.fullmatch(word)
        if m and len(m.group(1)) <= MAX_DIGITS and int(m.group(1)) <= left:  # more digits: more than any bits
            left -= int(m.group(1))
            continue
        words.append(word)
    return " ".join(words)


def _int_tag(msg: IrcMessage, key: str, default: int = 0) -> int:
    value = msg.tags.get(key, "")
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        raise ProtocolError(
            f"tag {key}={value[:40]!r} is not a non-negative integer of at most {MAX_DIGITS} digits: {show(msg.raw)}"
        )
    return int(value)


def _user(msg: IrcMessage) -> User:
    login = msg.tags.get("login") or msg.nick
    uid = msg.tags.get("user-id") or login
    if not uid:
        raise ProtocolError(f"{msg.command} has neither a user-id tag nor a nick prefix: {show(msg.raw)}")
    badges = tuple(b for b in msg.tags.get("badges", "").split(",") if b)
    moderator = msg.tags.get("mod") == "1" or any(b.startswith(("moderator/", "broadcaster/")) for b in badges)
    return User(id=uid, name=msg.tags.get("display-name") or login or uid, badges=badges, moderator=moderator)


def _timestamp(msg: IrcMessage) -> float:
    """``tmi-sent-ts`` (ms) in seconds; now when the tag is absent."""
    ms = _int_tag(msg, "tmi-sent-ts", -1)
    return ms / 1000.0 if ms >= 0 else time.time()


def _channel(msg: IrcMessage) -> str:
    if not msg.channel:
        raise ProtocolError(f"{msg.command} has no #channel parameter: {show(msg.raw)}")
    return msg.channel


@dataclass(frozen=True)
class Privmsg:
    """A chat message with everything Twitch said about it; ``spoken`` is what goes into the ChatEvent."""

    channel: str
    user: User
    text: str  # as sent (without the /me wrapper)
    spoken: str  # emotes and cheermotes removed, /me and reply prefixes applied
    msg_id: str = ""
    bits: int = 0
    action: bool = False
    emotes: tuple[Emote, ...] = ()
    reply_parent_name: str = ""
    reply_parent_msg_id: str = ""
    timestamp: float = 0.0
    emote_only: bool = False  # Twitch's emote-only tag, or nothing left once emotes are removed

    def event(self) -> ChatEvent:
        paid = self.bits > 0
        return ChatEvent(
            platform=PLATFORM,
            room=self.channel,
            user=self.user,
            kind=EventKind.SUPER_CHAT if paid else EventKind.DANMAKU,
            text=self.spoken,
            amount=float(self.bits),
            currency="BITS" if paid else "",
            msg_id=self.msg_id,
            timestamp=self.timestamp,
            emote_only=self.emote_only,
        )


def parse_privmsg(msg: IrcMessage) -> Privmsg:
    channel = _channel(msg)
    if msg.trailing is None or len(msg.params) != 2:
        raise ProtocolError(f"PRIVMSG expects '#channel :text', got {len(msg.params)} parameters: {show(msg.raw)}")
    text = msg.trailing
    action = text.startswith("\x01ACTION ") and text.endswith("\x01") and len(text) >= 9
    if action:
        text = text[8:-1]
    user = _user(msg)
    emotes = parse_emotes(msg.tags.get("emotes", ""), text, msg.raw)
    bits = _int_tag(msg, "bits")
    spoken = strip_cheers(strip_emotes(text, emotes), bits)
    if action and spoken:
        spoken = f"{user.name} {spoken}"
    parent = msg.tags.get("reply-parent-display-name") or msg.tags.get("reply-parent-user-login", "")
    if parent and spoken and not spoken.startswith("@"):
        spoken = f"@{parent} {spoken}"
    return Privmsg(
        channel=channel,
        user=user,
        text=text,
        spoken=spoken,
        msg_id=msg.tags.get("id", ""),
        bits=bits,
        action=action,
        emotes=emotes,
        reply_parent_name=parent,
        reply_parent_msg_id=msg.tags.get("reply-parent-msg-id", ""),
        timestamp=_timestamp(msg),
        emote_only=msg.tags.get("emote-only") == "1" or bool(emotes and not spoken),
    )


def usernotice_event(msg: IrcMessage) -> ChatEvent | None:
    """Subs, gifts, raids and announcements; other notice kinds (rituals, milestones...) → None.

    ``text`` is Twitch's system message followed by the viewer's own (an announcement: just the message);
    ``count`` is months (sub/resub/subgift), gifted subs (submysterygift) or raiders (raid); ``gift`` the plan.
    """
    channel = _channel(msg)
    kind_id = msg.tags.get("msg-id", "")
    if not kind_id:
        raise ProtocolError(f"USERNOTICE has no msg-id tag: {show(msg.raw)}")
    if kind_id in SUB_NOTICES:
        kind = EventKind.SUB
    elif kind_id == "raid":
        kind = EventKind.RAID
    elif kind_id == "announcement":
        kind = EventKind.SYSTEM
    else:
        return None
    if kind_id == "subgift" and msg.tags.get("msg-param-community-gift-id"):
        return None  # one of a mystery gift's N notices: the submysterygift notice already announced them
    user_text = ""
    if msg.trailing is not None:
        user_text = strip_emotes(msg.trailing, parse_emotes(msg.tags.get("emotes", ""), msg.trailing, msg.raw))
    system = " ".join(msg.tags.get("system-msg", "").split())
    text = (user_text or system) if kind is EventKind.SYSTEM else " ".join(p for p in (system, user_text) if p)
    count_tag = _COUNT_TAGS.get(kind_id)
    return ChatEvent(
        platform=PLATFORM,
        room=channel,
        user=_user(msg),
        kind=kind,
        text=text,
        msg_id=msg.tags.get("id", ""),
        timestamp=_timestamp(msg),
        gift=msg.tags.get("msg-param-sub-plan-name", "").strip() if kind is EventKind.SUB else "",
        count=_int_tag(msg, count_tag) if count_tag else 0,
    )


def interpret(msg: IrcMessage) -> Item | None:
    """What a parsed line means to the client; None for lines it can ignore (JOIN echoes, ROOMSTATE, CAP...).

    Raises TwitchAuthError for a login-failure NOTICE and ProtocolError for lines missing what they need.
    """
    cmd = msg.command
    if cmd == "PING":
        return Ping(msg.params[-1] if msg.params else "tmi.twitch.tv")
    if cmd == "RECONNECT":
        return Reconnect()
    if cmd == "001":
        return Welcome(msg.params[0] if msg.params else "")
    if cmd == "NOTICE":
        text = msg.trailing or ""
        if any(f in text for f in _AUTH_FAILURES):
            raise TwitchAuthError(f"Twitch refused the login: {text[:200]!r}; check the OAuth token and nick")
        return Notice(msg.tags.get("msg-id", ""), text)
    if cmd == "PRIVMSG":
        return parse_privmsg(msg).event()
    if cmd == "USERNOTICE":
        return usernotice_event(msg)
    if cmd == "CLEARMSG":
        _channel(msg)
        target = msg.tags.get("target-msg-id", "")
        if not target:
            raise ProtocolError(f"CLEARMSG has no target-msg-id tag: {show(msg.raw)}")
        return Removal(PLATFORM, msg_id=target)
    if cmd == "CLEARCHAT":
        _channel(msg)
        target_user = msg.tags.get("target-user-id", "")
        if msg.trailing and not target_user:
            raise ProtocolError(f"CLEARCHAT names a user but has no target-user-id tag: {show(msg.raw)}")
        return Removal(PLATFORM, user_id=target_user)
    return None
