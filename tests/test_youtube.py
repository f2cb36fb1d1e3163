"""YouTube live chat: watch-page and get_live_chat parsing, and the client against a local aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, ProtocolError
from ishow.events import ChatEvent, EventKind, Removal
from ishow.sources.registry import create_source
from ishow.sources.youtube import protocol as p
from ishow.sources.youtube.client import YoutubeSource

VIDEO = "jfKfPfyJRdk"
T = 5.0

INITIAL_DATA: dict[str, Any] = {
    "responseContext": {"serviceTrackingParams": []},
    "contents": {
        "twoColumnWatchNextResults": {
            "results": {"results": {"contents": []}},
            "conversationBar": {
                "liveChatRenderer": {
                    "continuations": [
                        {"reloadContinuationData": {"continuation": "TOP_CHAT_CONT", "clickTrackingParams": "x"}}
                    ],
                    "header": {
                        "liveChatHeaderRenderer": {
                            "viewSelector": {
                                "sortFilterSubMenuRenderer": {
                                    "subMenuItems": [
                                        {
                                            "title": "Top chat",
                                            "selected": True,
                                            "continuation": {
                                                "reloadContinuationData": {"continuation": "TOP_CHAT_CONT"}
                                            },
                                        },
                                        {
                                            "title": "Live chat",
                                            "selected": False,
                                            "continuation": {
                                                "reloadContinuationData": {"continuation": "LIVE_CHAT_CONT"}
                                            },
                                        },
                                    ]
                                }
                            }
                        }
                    },
                    "isReplay": False,
                }
            },
        }
    },
    "currentVideoEndpoint": {"watchEndpoint": {"videoId": VIDEO}},
}


def watch_page(
    data: dict[str, Any] | None = None, api_key: str | None = "AIzaSyTestKey_123", window: bool = False
) -> str:
    cfg: dict[str, Any] = {"INNERTUBE_CONTEXT_CLIENT_NAME": 1, "INNERTUBE_CONTEXT_CLIENT_VERSION": "2.20240411.09.00"}
    if api_key is not None:
        cfg["INNERTUBE_API_KEY"] = api_key
    blob = json.dumps(INITIAL_DATA if data is None else data)
    assign = f'window["ytInitialData"] = {blob};' if window else f"var ytInitialData = {blob};"
    return (
        "<!DOCTYPE html><html lang=en><head><title>lofi hip hop radio - YouTube</title>"
        f"<script nonce=abc>ytcfg.set({json.dumps(cfg)}); window.ytcfg.set('EMERGENCY_BASE_URL', '/error');</script>"
        "</head><body><div id=content></div>"
        f"<script nonce=abc>{assign}</script>"
        '<script nonce=abc>var ytInitialPlayerResponse = {"videoDetails": {"isLive": true}};</script>'
        "</body></html>"
    )


def text_msg(
    msg_id: str,
    text: str,
    *,
    user: str = "Alice",
    uid: str = "UCalice000000000000000001",
    badges: list[str] | None = None,
    usec: str = "1712345678901234",
) -> dict[str, Any]:
    badge_objs: list[dict[str, Any]] = []
    for b in badges or []:
        if b == "member":
            badge_objs.append(
                {"liveChatAuthorBadgeRenderer": {"customThumbnail": {"thumbnails": []}, "tooltip": "Member (2 months)"}}
            )
        else:
            badge_objs.append({"liveChatAuthorBadgeRenderer": {"icon": {"iconType": b}, "tooltip": b.title()}})
    renderer: dict[str, Any] = {
        "message": {
            "runs": [
                {"text": text},
                {"emoji": {"emojiId": "UCkszU/abc", "shortcuts": [":yt:"], "isCustomEmoji": True}},
                {"text": " !"},
            ]
        },
        "authorName": {"simpleText": user},
        "authorPhoto": {"thumbnails": [{"url": "https://yt4.ggpht.com/x", "width": 32, "height": 32}]},
        "id": msg_id,
        "timestampUsec": usec,
        "authorExternalChannelId": uid,
        "contextMenuEndpoint": {"liveChatItemContextMenuEndpoint": {"params": "zz"}},
    }
    if badge_objs:
        renderer["authorBadges"] = badge_objs
    return {"addChatItemAction": {"item": {"liveChatTextMessageRenderer": renderer}, "clientId": "c-" + msg_id}}


PAID = {
    "addChatItemAction": {
        "item": {
            "liveChatPaidMessageRenderer": {
                "id": "paid1",
                "timestampUsec": "1712345679000000",
                "authorName": {"simpleText": "Bob"},
                "authorExternalChannelId": "UCbob00000000000000000001",
                "purchaseAmountText": {"simpleText": "$5.00"},
                "message": {"runs": [{"text": "great stream"}]},
                "headerBackgroundColor": 4278239141,
            }
        }
    }
}
MEMBER = {
    "addChatItemAction": {
        "item": {
            "liveChatMembershipItemRenderer": {
                "id": "mem1",
                "timestampUsec": "1712345680000000",
                "authorExternalChannelId": "UCcat00000000000000000001",
                "headerSubtext": {"runs": [{"text": "Welcome to "}, {"text": "Lofi Girl"}, {"text": "!"}]},
                "authorName": {"simpleText": "Cat"},
                "authorBadges": [
                    {"liveChatAuthorBadgeRenderer": {"customThumbnail": {"thumbnails": []}, "tooltip": "New member"}}
                ],
            }
        }
    }
}
DELETED = {
    "markChatItemAsDeletedAction": {
        "deletedStateMessage": {"runs": [{"text": "[message deleted]"}]},
        "targetItemId": "m2",
    }
}
BANNED = {
    "markChatItemsByAuthorAsDeletedAction": {
        "deletedStateMessage": {"runs": []},
        "externalChannelId": "UCspam0000000000000000001",
    }
}
TICKER = {"addLiveChatTickerItemAction": {"item": {"liveChatTickerPaidMessageItemRenderer": {}}, "durationSec": "120"}}


def chat_response(
    actions: list[dict[str, Any]],
    cont: str | None = "NEXT",
    timeout_ms: int = 100,
    kind: str = "invalidationContinuationData",
) -> dict[str, Any]:
    lcc: dict[str, Any] = {"actions": actions}
    if cont is not None:
        lcc["continuations"] = [
            {kind: {"invalidationId": {"objectSource": 1000}, "timeoutMs": timeout_ms, "continuation": cont}}
        ]
    return {"responseContext": {"visitorData": "v"}, "continuationContents": {"liveChatContinuation": lcc}}


# ---------------------------------------------------------------------------------------------- protocol


def test_watch_page_gives_key_version_and_all_messages_continuation() -> None:
    for window in (False, True):
        page = p.parse_watch_page(watch_page(window=window))
        assert page == p.WatchPage("AIzaSyTestKey_123", "2.20240411.09.00", "LIVE_CHAT_CONT", VIDEO)
    data = copy.deepcopy(INITIAL_DATA)
    del data["contents"]["twoColumnWatchNextResults"]["conversationBar"]["liveChatRenderer"]["header"]
    assert p.parse_watch_page(watch_page(data)).continuation == "TOP_CHAT_CONT"


def test_layout_changes_name_the_missing_key() -> None:
    with pytest.raises(ProtocolError, match="YouTube page layout changed: no INNERTUBE_API_KEY"):
        p.parse_watch_page(watch_page(api_key=None))
    with pytest.raises(ProtocolError, match="no ytInitialData"):
        p.parse_watch_page(watch_page().replace("ytInitialData", "ytData"))
    with pytest.raises(ProtocolError, match="not JSON"):
        p.parse_watch_page(watch_page().replace('var ytInitialData = {"', "var ytInitialData = {oops"))
    data = copy.deepcopy(INITIAL_DATA)
    del data["contents"]["twoColumnWatchNextResults"]["conversationBar"]["liveChatRenderer"]["header"]
    data["contents"]["twoColumnWatchNextResults"]["conversationBar"]["liveChatRenderer"]["continuations"] = []
    with pytest.raises(ProtocolError, match=r"no liveChatRenderer\.continuations\[0\]\.reloadContinuationData"):
        p.parse_watch_page(watch_page(data))
    with pytest.raises(ProtocolError, match=r"no contents\.twoColumnWatchNextResults"):
        p.parse_watch_page(watch_page({"contents": {"somethingNew": {}}}))


def test_not_live_pages() -> None:
    data = copy.deepcopy(INITIAL_DATA)
    del data["contents"]["twoColumnWatchNextResults"]["conversationBar"]
    with pytest.raises(p.NotLiveError, match="has no live chat"):
        p.parse_watch_page(watch_page(data))
    data["contents"]["twoColumnWatchNextResults"]["conversationBar"] = {
        "conversationBarRenderer": {
            "availabilityMessage": {
                "messageRenderer": {"text": {"runs": [{"text": "Chat is disabled for this live stream."}]}}
            }
        }
    }
    with pytest.raises(p.NotLiveError, match="Chat is disabled"):
        p.parse_watch_page(watch_page(data))
    replay = copy.deepcopy(INITIAL_DATA)
    replay["contents"]["twoColumnWatchNextResults"]["conversationBar"]["liveChatRenderer"]["isReplay"] = True
    with pytest.raises(p.NotLiveError, match="recording"):
        p.parse_watch_page(watch_page(replay))
    with pytest.raises(p.NotLiveError, match="channel is not live"):
        p.parse_watch_page(watch_page({"contents": {"twoColumnBrowseResultsRenderer": {"tabs": []}}}))


def test_rooms_and_request() -> None:
    assert p.watch_path(VIDEO) == f"/watch?v={VIDEO}"
    assert p.watch_path(f"https://www.youtube.com/watch?v={VIDEO}&t=42s") == f"/watch?v={VIDEO}"
    assert p.watch_path(f"https://youtu.be/{VIDEO}") == f"/watch?v={VIDEO}"
    assert p.watch_path(f"youtube.com/live/{VIDEO}?si=x") == f"/watch?v={VIDEO}"
    assert p.watch_path("@LofiGirl") == "/@LofiGirl/live"
    assert p.watch_path("https://www.youtube.com/@LofiGirl/videos") == "/@LofiGirl/live"
    assert p.watch_path("UCSJ4gkVC6NrvII8umztf0Ow") == "/channel/UCSJ4gkVC6NrvII8umztf0Ow/live"
    for bad in ("", "hello world", "https://example.com/watch?v=jfKfPfyJRdk", "short"):
        with pytest.raises(ValueError, match="not a YouTube video id"):
            p.watch_path(bad)
    assert p.chat_url("http://x/", "K") == "http://x/youtubei/v1/live_chat/get_live_chat?key=K&prettyPrint=false"
    assert p.chat_request_body("2.1", "C") == {
        "context": {"client": {"clientName": "WEB", "clientVersion": "2.1"}},
        "continuation": "C",
    }


def test_chat_response_events_removals_and_continuation() -> None:
    response = chat_response(
        [
            text_msg("m1", "hello", badges=["MODERATOR"]),
            text_msg("m2", "hi", badges=["member"]),
            PAID,
            MEMBER,
            DELETED,
            BANNED,
            TICKER,
        ],
        cont="NEXT1",
        timeout_ms=6789,
    )
    chunk = p.parse_chat_response(response, VIDEO)
    assert chunk.continuation == "NEXT1" and chunk.timeout_ms == 6789 and chunk.errors == ()
    m1, m2, paid, member, deleted, banned = chunk.items
    assert isinstance(m1, ChatEvent) and m1.text == "hello !" and m1.msg_id == "m1" and m1.room == VIDEO
    assert m1.user.id == "UCalice000000000000000001" and m1.user.name == "Alice"
    assert m1.user.badges == ("moderator/1",) and m1.user.moderator and m1.platform == "youtube"
    assert m1.timestamp == pytest.approx(1712345678.901234)
    assert isinstance(m2, ChatEvent) and m2.user.badges == ("member/1",) and not m2.user.moderator
    assert isinstance(paid, ChatEvent) and paid.kind is EventKind.SUPER_CHAT
    assert (paid.amount, paid.currency, paid.text, paid.user.name) == (5.0, "USD", "great stream", "Bob")
    assert isinstance(member, ChatEvent) and member.kind is EventKind.SUB and member.text == "Welcome to Lofi Girl!"
    assert member.user.name == "Cat" and member.user.badges == ("member/1",)
    assert deleted == Removal("youtube", msg_id="m2")
    assert banned == Removal("youtube", user_id="UCspam0000000000000000001")
    timed = p.parse_chat_response(chat_response([], cont="T", timeout_ms=3000, kind="timedContinuationData"), VIDEO)
    assert (timed.continuation, timed.timeout_ms, timed.items) == ("T", 3000, ())
    ended = p.parse_chat_response(chat_response([text_msg("z", "bye")], cont=None), VIDEO)
    assert ended.continuation is None and len(ended.items) == 1


def test_milestones_gifts_and_emote_only() -> None:
    milestone = copy.deepcopy(MEMBER)
    r = milestone["addChatItemAction"]["item"]["liveChatMembershipItemRenderer"]
    r["headerPrimaryText"] = {"runs": [{"text": "Member for "}, {"text": "14"}, {"text": " months"}]}
    r["headerSubtext"] = {"simpleText": "Lofi Club"}
    r["message"] = {"runs": [{"text": "still here"}]}
    header = {
        "authorName": {"simpleText": "Dan"},
        "primaryText": {"runs": [{"text": "Gifted "}, {"text": "5"}, {"text": " Lofi Girl memberships"}]},
    }
    renderer = {
        "id": "g1",
        "timestampUsec": "1712345681000000",
        "authorExternalChannelId": "UCdan00000000000000000001",
        "header": {"liveChatSponsorshipsHeaderRenderer": header},
    }
    gift = {"addChatItemAction": {"item": {"liveChatSponsorshipsGiftPurchaseAnnouncementRenderer": renderer}}}
    emoji_only = text_msg("e1", "")
    runs = emoji_only["addChatItemAction"]["item"]["liveChatTextMessageRenderer"]["message"]["runs"]
    runs[:] = [{"emoji": {"emojiId": "😀", "shortcuts": [":grinning:"]}}]
    m, g, e = p.parse_chat_response(chat_response([milestone, gift, emoji_only]), VIDEO).items
    assert isinstance(m, ChatEvent) and (m.kind, m.text, m.count, m.gift) == (
        EventKind.SUB,
        "Member for 14 months still here",
        14,
        "Lofi Club",
    )
    assert isinstance(g, ChatEvent) and (g.kind, g.user.name, g.text, g.count) == (
        EventKind.SUB,
        "Dan",
        "Gifted 5 Lofi Girl memberships",
        5,
    )
    assert isinstance(e, ChatEvent) and e.text == "" and e.emote_only
    assert not m.emote_only


def test_one_bad_item_does_not_cost_the_others() -> None:
    bad = text_msg("b1", "x")
    del bad["addChatItemAction"]["item"]["liveChatTextMessageRenderer"]["authorExternalChannelId"]
    bad_paid = copy.deepcopy(PAID)
    bad_paid["addChatItemAction"]["item"]["liveChatPaidMessageRenderer"]["purchaseAmountText"] = {"simpleText": "free"}
    chunk = p.parse_chat_response(chat_response([bad, text_msg("ok", "fine"), bad_paid, "junk"]), VIDEO)  # type: ignore[list-item]
    assert [i.msg_id for i in chunk.items if isinstance(i, ChatEvent)] == ["ok"]
    assert len(chunk.errors) == 3 and "authorExternalChannelId" in chunk.errors[0] and "no number" in chunk.errors[1]
    with pytest.raises(ProtocolError, match=r"no continuationContents\.liveChatContinuation"):
        p.parse_chat_response({"responseContext": {}}, VIDEO)
    with pytest.raises(ProtocolError, match="not an object"):
        p.parse_chat_response([1], VIDEO)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$5.00", (5.0, "USD")),
        ("¥1,000", (1000.0, "JPY")),
        ("5,00 €", (5.0, "EUR")),
        ("PLN 20.00", (20.0, "PLN")),
        ("CA$10.00", (10.0, "CAD")),
        ("1.234,56 €", (1234.56, "EUR")),
        ("₫20.000", (20000.0, "VND")),
        ("NT$75.00", (75.0, "TWD")),
    ],
)
def test_amounts(text: str, expected: tuple[float, str]) -> None:
    assert p.parse_amount(text) == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "continuationContents",
                    "liveChatContinuation",
                    "actions",
                    "continuations",
                    "addChatItemAction",
                    "item",
                    "liveChatTextMessageRenderer",
                    "liveChatPaidMessageRenderer",
                    "purchaseAmountText",
                    "simpleText",
                    "runs",
                    "text",
                    "id",
                    "authorExternalChannelId",
                    "markChatItemAsDeletedAction",
                    "targetItemId",
                    "timeoutMs",
                    "continuation",
                    "invalidationContinuationData",
                    "timestampUsec",
                    "authorBadges",
                    "message",
                ]
            ),
            kids,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_fuzz_responses_raise_only_protocol_errors(obj: Any) -> None:
    with contextlib.suppress(ProtocolError):
        p.parse_chat_response(obj, VIDEO)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["", "var ytInitialData = ", '"INNERTUBE_API_KEY":"k"']))
def test_fuzz_pages_raise_only_typed_errors(text: str, prefix: str) -> None:
    with contextlib.suppress(ProtocolError, p.NotLiveError):
        p.parse_watch_page(prefix + text)


# ---------------------------------------------------------------------------------------------- client


class FakeYoutube:
    def __init__(self) -> None:
        self.page = watch_page()
        self.responses: asyncio.Queue[dict[str, Any] | int] = asyncio.Queue()
        self.requests: list[dict[str, Any]] = []
        self.page_loads = 0
        self.base = ""

    async def watch(self, request: web.Request) -> web.Response:
        self.page_loads += 1
        return web.Response(text=self.page, content_type="text/html")

    async def get_live_chat(self, request: web.Request) -> web.Response:
        assert request.query["key"] == "AIzaSyTestKey_123"
        self.requests.append(await request.json())
        try:
            reply = self.responses.get_nowait()
        except asyncio.QueueEmpty:
            reply = chat_response([], cont=self.requests[-1]["continuation"], timeout_ms=50)
        if isinstance(reply, int):
            return web.json_response({"error": {"code": reply}}, status=reply)
        return web.json_response(reply)


@pytest.fixture
async def fake() -> AsyncIterator[FakeYoutube]:
    server = FakeYoutube()
    app = web.Application()
    app.router.add_get("/watch", server.watch)
    app.router.add_get("/@lofi/live", server.watch)
    app.router.add_post("/youtubei/v1/live_chat/get_live_chat", server.get_live_chat)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield server
    await runner.cleanup()


def make(base: str, room: str = VIDEO, **kw: Any) -> YoutubeSource:
    opts: dict[str, Any] = {
        "api_base": base,
        "min_poll_s": 0.01,
        "max_poll_s": 0.05,
        "backoff_base_s": 0.01,
        "reconnect_max_s": 0.05,
        "offline_retry_s": 0.05,
    }
    opts.update(kw)
    return YoutubeSource("yt", room, **opts)


@contextlib.asynccontextmanager
async def running(source: YoutubeSource) -> AsyncIterator[asyncio.Queue[ChatEvent | Removal]]:
    got: asyncio.Queue[ChatEvent | Removal] = asyncio.Queue()
    task = asyncio.create_task(source.run(got.put_nowait))
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, T)
        assert task.cancelled()


async def until(cond: Any, what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_client_skips_history_then_reads_chat_and_removals(fake: FakeYoutube) -> None:
    fake.responses.put_nowait(
        chat_response([text_msg("old1", "history"), text_msg("old2", "more history")], cont="C1", timeout_ms=20)
    )
    fake.responses.put_nowait(chat_response([text_msg("m1", "first live"), PAID], cont="C2", timeout_ms=999_999))
    fake.responses.put_nowait(500)  # a failed poll is retried with the same continuation
    fake.responses.put_nowait(chat_response([text_msg("m2", "second"), DELETED], cont="C3", timeout_ms=0))
    source = make(fake.base, "@lofi")
    async with running(source) as got:
        items = [await asyncio.wait_for(got.get(), T) for _ in range(4)]
        assert [getattr(i, "msg_id", None) for i in items] == ["m1", "paid1", "m2", "m2"]
        assert isinstance(items[0], ChatEvent) and items[0].text == "first live !" and items[0].room == VIDEO
        assert items[3] == Removal("youtube", msg_id="m2")
        assert source.state == "connected" and source.video_id == VIDEO
        conts = [r["continuation"] for r in fake.requests]
        assert conts[:4] == ["LIVE_CHAT_CONT", "C1", "C2", "C2"]  # the failed C2 poll was retried
        await until(lambda: len(fake.requests) >= 5, "timeoutMs 999999 was not clamped to max_poll_s")
        assert fake.requests[4]["continuation"] == "C3"
        assert fake.requests[0]["context"]["client"] == {"clientName": "WEB", "clientVersion": "2.20240411.09.00"}


async def test_page_reload_reads_messages_missed_but_not_duplicates(fake: FakeYoutube) -> None:
    fake.responses.put_nowait(chat_response([text_msg("old", "history")], cont="C1"))
    fake.responses.put_nowait(chat_response([text_msg("m1", "one")], cont="C2"))
    for _ in range(4):
        fake.responses.put_nowait(503)  # poll_retries=3 exhausted → reload the page
    fake.responses.put_nowait(
        chat_response([text_msg("old", "history"), text_msg("m1", "one"), text_msg("m2", "two")], cont="C3")
    )
    source = make(fake.base)
    async with running(source) as got:
        first = await asyncio.wait_for(got.get(), T)
        second = await asyncio.wait_for(got.get(), T)
        assert (first.msg_id, second.msg_id) == ("m1", "m2")
        assert fake.page_loads == 2


async def test_layout_change_sets_state_and_error_then_recovers(fake: FakeYoutube) -> None:
    fake.page = watch_page(api_key=None)
    source = make(fake.base)
    async with running(source) as got:
        await until(lambda: source.state == "layout_changed", "no layout_changed state")
        assert source.last_error == "YouTube page layout changed: no INNERTUBE_API_KEY"
        fake.page = watch_page()
        fake.responses.put_nowait(chat_response([], cont="C1"))
        fake.responses.put_nowait(chat_response([text_msg("m1", "back")], cont="C2"))
        event = await asyncio.wait_for(got.get(), T)
        assert isinstance(event, ChatEvent) and event.text == "back !"
        assert source.state == "connected" and source.last_error == ""


async def test_not_live_and_ended_chat_go_offline(fake: FakeYoutube) -> None:
    data = copy.deepcopy(INITIAL_DATA)
    del data["contents"]["twoColumnWatchNextResults"]["conversationBar"]
    fake.page = watch_page(data)
    source = make(fake.base, offline_retry_s=60)
    async with running(source):
        await until(lambda: source.state == "offline", "not offline")
        assert "has no live chat" in source.last_error and fake.requests == []
    fake.page = watch_page()
    fake.responses.put_nowait(chat_response([], cont=None))
    source = make(fake.base, offline_retry_s=60)
    async with running(source):
        await until(lambda: source.state == "offline" and fake.requests, "ended chat did not go offline")


def test_from_config_and_poll_clamp() -> None:
    src = create_source("yt", SourceConfig(kind="youtube", room=f"https://youtu.be/{VIDEO}"))
    assert isinstance(src, YoutubeSource) and src.page_path == f"/watch?v={VIDEO}"
    assert src.api_base == "https://www.youtube.com"
    assert (src.poll_delay(0), src.poll_delay(3000), src.poll_delay(60_000), src.poll_delay(None)) == (
        0.5,
        3.0,
        10.0,
        5.0,
    )
    with pytest.raises(ConfigError, match=r"sources\.yt\.room: 'nope nope'"):
        create_source("yt", SourceConfig(kind="youtube", room="nope nope"))
    with pytest.raises(ConfigError, match=r"sources\.yt\.room"):
        create_source("yt", SourceConfig(kind="youtube"))
