"""Twitch and YouTube targets. Seeds are the recorded lines and responses of the protocol tests.

Twitch: one IRC line (``parse_line`` + ``interpret``) and a byte stream through ``LineBuffer`` as the client reads
websocket frames. YouTube: get_live_chat responses as JSON values and as HTTP bodies, and watch pages as the
bytes the client decodes with ``errors="replace"``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ishow.errors import ProtocolError
from ishow.sources.twitch import protocol as tw
from ishow.sources.youtube import protocol as yt
from tests import test_twitch_protocol as twt
from tests import test_youtube as ytt
from tools.fuzz.mutate import Mutator, dumps, json_keys, pooled, surrogate_bytes, tweak_bytes
from tools.fuzz.runner import Target

# ---------------------------------------------------------------------------------------------- Twitch

LINES: tuple[str, ...] = (*twt.RECORDING, twt.AUTH_FAIL, "@badges=;bits=0;emotes=25:0-4 :a!a@a PRIVMSG #c :Kappa")
TAG_KEYS = (
    "bits",
    "emotes",
    "tmi-sent-ts",
    "msg-id",
    "user-id",
    "login",
    "display-name",
    "badges",
    "mod",
    "id",
    "target-msg-id",
    "target-user-id",
    "msg-param-cumulative-months",
    "msg-param-gift-months",
    "msg-param-mass-gift-count",
    "msg-param-viewerCount",
    "msg-param-community-gift-id",
    "msg-param-sub-plan-name",
    "system-msg",
    "reply-parent-display-name",
    "reply-parent-user-login",
    "emote-only",
)
TAG_VALUES = ("", "0", "1", "9" * 5000, "-1", "25:0-4", "25:0-999999", "1:" + "9" * 5000 + "-1", "x:1-0",
              "resub", "raid", "subgift", "announcement", "\\s\\:\\\\", "\\", "a/b,c/d")  # fmt: skip


def _split_line(line: str) -> tuple[dict[str, str], str]:
    if not line.startswith("@"):
        return {}, line
    tag_text, _, rest = line[1:].partition(" ")
    tags = dict(item.partition("=")[::2] for item in tag_text.split(";"))
    return tags, rest


def twitch_line(m: Mutator) -> str:
    """A recorded line with its tags edited (values replaced, keys dropped or added), then maybe text edits."""
    r = m.rng
    tags, rest = _split_line(r.choice(LINES))
    for _ in range(r.randint(0, 3)):
        op = r.randrange(3)
        if op == 0 and tags:
            del tags[r.choice(list(tags))]
        elif op == 1:
            tags[r.choice(TAG_KEYS)] = r.choice(TAG_VALUES) if r.random() < 0.7 else m.string()
        elif tags:
            key = r.choice(list(tags))
            tags[key] = m.text(tags[key]) if tags[key] else m.string()
    if r.random() < 0.2:
        words = rest.split(" ")
        i = r.randrange(len(words))
        words[i] = r.choice(("PRIVMSG", "USERNOTICE", "CLEARMSG", "CLEARCHAT", "NOTICE", "PING", "001", "#c", ":", ""))
        rest = " ".join(words)
    line = ("@" + ";".join(f"{k}={v}" if v else k for k, v in tags.items()) + " " + rest) if tags else rest
    return m.text(line) if r.random() < 0.4 else line


def run_twitch_line(line: str) -> None:
    tw.interpret(tw.parse_line(line))


def twitch_stream(m: Mutator) -> bytes:
    data = b"".join(surrogate_bytes(twitch_line(m)) + b"\r\n" for _ in range(m.rng.randint(1, 3)))
    return m.bytes(data) if m.rng.random() < 0.3 else data


def run_twitch_stream(data: bytes) -> None:
    """Lines as the client gets them: ``LineBuffer`` over two cuts of the bytes; a bad line is skipped."""
    buf = tw.LineBuffer()
    cut = len(data) // 2
    for chunk in (data[:cut], data[cut:]):
        for line in buf.feed(chunk):
            with contextlib.suppress(ProtocolError):
                tw.interpret(tw.parse_line(line))


# ---------------------------------------------------------------------------------------------- YouTube

ACTIONS: tuple[dict[str, Any], ...] = (
    ytt.text_msg("m1", "hello", badges=["moderator", "member"]),
    ytt.text_msg("m2", "", badges=["owner"]),
    ytt.PAID,
    ytt.MEMBER,
    ytt.DELETED,
    ytt.BANNED,
    ytt.TICKER,
    {
        "addChatItemAction": {
            "item": {
                "liveChatSponsorshipsGiftPurchaseAnnouncementRenderer": {
                    "id": "gift1",
                    "authorExternalChannelId": "UCgift0000000000000000001",
                    "header": {
                        "liveChatSponsorshipsHeaderRenderer": {
                            "authorName": {"simpleText": "Giver"},
                            "primaryText": {"runs": [{"text": "Gifted "}, {"text": "5"}, {"text": " memberships"}]},
                        }
                    },
                }
            }
        }
    },
    {"removeChatItemAction": {"targetItemId": "m1"}},
    {"removeChatItemByAuthorAction": {"externalChannelId": "UCspam0000000000000000001"}},
)
RESPONSES: tuple[dict[str, Any], ...] = (
    ytt.chat_response(list(ACTIONS)),
    ytt.chat_response(list(ACTIONS[:3]), kind="timedContinuationData"),
    ytt.chat_response([], cont=None),
)
PAGE_DATA: tuple[dict[str, Any], ...] = (
    ytt.INITIAL_DATA,
    {"contents": {"twoColumnBrowseResultsRenderer": {}}},
)


YT_KEYS = json_keys(*RESPONSES, *PAGE_DATA)


def chat_value(m: Mutator) -> Any:
    """A response with 1–3 of the recorded actions (or a seed response whole), mutated."""
    r = m.rng
    if r.random() < 0.2:
        return m.json(r.choice(RESPONSES))
    actions = r.sample(ACTIONS, r.randint(1, 3))
    seed = ytt.chat_response(actions, kind=r.choice(("invalidationContinuationData", "timedContinuationData")))
    return m.json(seed)


def run_chat_value(obj: Any) -> None:
    yt.parse_chat_response(obj, "room")


def chat_body(m: Mutator) -> bytes:
    body = dumps(chat_value(m), m.rng)
    return m.bytes(body) if m.rng.random() < 0.3 else body


def run_chat_body(body: bytes) -> None:
    yt.parse_chat_body(body, "room")


def watch_page(m: Mutator) -> bytes:
    r = m.rng
    data = m.json(r.choice(PAGE_DATA)) if r.random() < 0.8 else r.choice(PAGE_DATA)
    try:
        html = ytt.watch_page(data, api_key=r.choice(("AIzaSyTestKey_123", None, "")), window=r.random() < 0.5)
    except (ValueError, RecursionError):
        html = ytt.watch_page()
    page = surrogate_bytes(html)
    return m.bytes(page) if r.random() < 0.4 else page


def run_watch_page(page: bytes) -> None:
    """The page as the client reads it (``resp.text(errors="replace")``)."""
    yt.parse_watch_page(page.decode("utf-8", "replace"))


TARGETS = [
    Target("twitch.line", "twitch", twitch_line, run_twitch_line, (ProtocolError, tw.TwitchAuthError), TAG_KEYS),
    Target("twitch.stream", "twitch", twitch_stream, run_twitch_stream, (ProtocolError, tw.TwitchAuthError), TAG_KEYS),
    Target("youtube.chat", "youtube", chat_value, run_chat_value, (ProtocolError,), YT_KEYS),
    Target("youtube.body", "youtube", pooled(chat_body, tweak_bytes), run_chat_body, (ProtocolError,), YT_KEYS),
    Target(
        "youtube.page",
        "youtube",
        pooled(watch_page, tweak_bytes),
        run_watch_page,
        (ProtocolError, yt.NotLiveError),
        YT_KEYS,
    ),
]
