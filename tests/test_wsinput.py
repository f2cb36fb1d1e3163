"""Websocket chat input: frame parsing, the route on its own, and the real daemon speaking what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from ishow.config import SourceConfig
from ishow.errors import ConfigError, InputError
from ishow.events import ChatEvent, EventKind, Removal
from ishow.sources.registry import create_source
from ishow.sources.wsinput import WebsocketInputSource, parse_frame
from tests.conftest import espeak_config
from tests.test_daemon_e2e import read_utterance

T = 10.0


def test_parse_chat_and_remove_frames() -> None:
    event = parse_frame(json.dumps({"user": "ann", "text": "hi", "id": "x1"}))
    assert isinstance(event, ChatEvent)
    assert (event.platform, event.user.name, event.user.id, event.kind, event.text, event.msg_id) == (
        "websocket",
        "ann",
        "ann",
        EventKind.DANMAKU,
        "hi",
        "x1",
    )
    paid = parse_frame(
        json.dumps(
            {
                "type": "chat",
                "user": "bob",
                "uid": "7",
                "text": "gg",
                "platform": "tiktok",
                "kind": "super_chat",
                "amount": 30,
                "currency": "CNY",
                "moderator": True,
            }
        )
    )
    assert isinstance(paid, ChatEvent) and paid.kind is EventKind.SUPER_CHAT
    assert (paid.amount, paid.currency, paid.platform, paid.user.id, paid.user.moderator) == (
        30.0,
        "CNY",
        "tiktok",
        "7",
        True,
    )
    assert paid.msg_id  # generated when not given
    gift = parse_frame('{"user": "c", "text": "", "kind": "gift", "gift": "辣条", "count": 10, "amount": 1}')
    assert isinstance(gift, ChatEvent) and (gift.kind, gift.gift, gift.count) == (EventKind.GIFT, "辣条", 10)
    assert parse_frame('{"type": "remove", "id": "x1"}') == Removal("websocket", msg_id="x1")
    assert parse_frame('{"type": "remove", "uid": "7", "platform": "tiktok"}') == Removal("tiktok", user_id="7")


BAD_FRAMES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ('{"text": "hi"}', "'user' is required"),
    ('{"user": "a"}', "'text' is required"),
    ('{"user": "a", "text": 5}', "'text' must be a string, got int"),
    ('{"user": "  ", "text": "hi"}', "'user' is empty"),
    ('{"user": "a", "text": "hi", "kind": "shout"}', "'kind' must be one of danmaku, super_chat"),
    ('{"user": "a", "text": "hi", "amount": -1}', "'amount' must be a non-negative number"),
    ('{"user": "a", "text": "hi", "amount": true}', "'amount' must be a non-negative number"),
    ('{"user": "a", "text": "hi", "moderator": "yes"}', "'moderator' must be true or false"),
    ('{"user": "a", "text": "hi", "count": 1.5}', "'count' must be a non-negative integer"),
    (json.dumps({"user": "a", "text": "x" * 3000}), "'text' is too long"),
    ('{"type": "remove"}', "needs 'id'"),
    ('{"type": "ban", "id": "1"}', '\'type\' must be "chat" or "remove"'),
]


@pytest.mark.parametrize(("frame", "expected"), BAD_FRAMES)
def test_bad_frames_say_what_is_wrong(frame: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected.replace("(", r"\(")):
        parse_frame(frame)


_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "user",
                "text",
                "kind",
                "amount",
                "id",
                "uid",
                "platform",
                "moderator",
                "currency",
                "gift",
                "count",
            ]
        ),
        _values,
    )
    | st.text(max_size=50)
)
def test_fuzz_frames_raise_only_input_errors(obj: Any) -> None:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    with contextlib.suppress(InputError):
        parse_frame(data)


def test_from_config_path_rules() -> None:
    src = create_source("in", SourceConfig(kind="websocket"))
    assert isinstance(src, WebsocketInputSource) and src.path == "/ws/input"
    assert [r.path for r in src.routes()] == ["/ws/input"]
    assert create_source("in", SourceConfig(kind="websocket", path="/ws/chat")).path == "/ws/chat"  # type: ignore[attr-defined]
    for bad in ("/input", "/ws/obs", "ws/input"):
        with pytest.raises(ConfigError, match=r"sources\.in\.path: the path must start with /ws/"):
            create_source("in", SourceConfig(kind="websocket", path=bad))


@contextlib.asynccontextmanager
async def serve(source: WebsocketInputSource) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_routes(source.routes())
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}{source.path}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def test_route_emits_events_and_removals_and_answers_errors() -> None:
    source = WebsocketInputSource("in")
    got: asyncio.Queue[ChatEvent | Removal] = asyncio.Queue()
    async with serve(source) as url, aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_str('{"user": "a", "text": "too early"}')
        reply = await ws.receive_json(timeout=T)
        assert reply == {"type": "error", "error": "the websocket input source is not running"}
        task = asyncio.create_task(source.run(got.put_nowait))
        try:
            await asyncio.sleep(0)
            assert source.state == "listening"
            await ws.send_str('{"user": "a", "text": "hello", "id": "m1"}')
            await ws.send_bytes(b"\x00\x01")
            reply = await ws.receive_json(timeout=T)
            assert reply["type"] == "error" and "binary frames" in reply["error"]
            await ws.send_str('{"type": "remove", "id": "m1"}')
            event = await asyncio.wait_for(got.get(), T)
            assert isinstance(event, ChatEvent) and event.text == "hello" and event.msg_id == "m1"
            assert await asyncio.wait_for(got.get(), T) == Removal("websocket", msg_id="m1")
            assert source.clients == 1 and source.bad_frames == 2 and not ws.closed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert task.cancelled() and source.state == "finished"


async def test_daemon_speaks_websocket_input_and_reports_bad_frames(start_daemon: Any) -> None:
    rd = await start_daemon(espeak_config(sources=(SourceConfig(kind="websocket", name="input", trusted=True),)))
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{rd.url}/ws/obs") as obs,
        http.ws_connect(f"{rd.url}/ws/input") as inp,
    ):
        for frame, expected in BAD_FRAMES[:4]:
            await inp.send_str(frame)
            reply = await inp.receive_json(timeout=T)
            assert reply["type"] == "error" and expected in reply["error"], (frame, reply)
        assert not inp.closed
        await inp.send_str(json.dumps({"user": "小明", "text": "主播晚上好，今天玩什么游戏？", "id": "w1"}))
        header, pcm = await read_utterance(obs)
        assert header["text"] == "主播晚上好，今天玩什么游戏？" and header["user"] == "小明" and len(pcm) > 24000
        await inp.send_str(json.dumps({"user": "Bob", "text": "great stream", "kind": "super_chat", "amount": 30}))
        header, _ = await read_utterance(obs)
        assert header["kind"] == "super_chat" and "great stream" in header["text"]
        health = await (await http.get(f"{rd.url}/healthz")).json()
        assert health["sources"] == [{"name": "input", "state": "listening"}]
        metrics = await (await http.get(f"{rd.url}/metrics")).text()
        assert 'ishow_messages_total{platform="websocket"} 2.0' in metrics


async def test_websocket_input_needs_the_server_token(start_daemon: Any) -> None:
    cfg = espeak_config(sources=(SourceConfig(kind="websocket"),))
    rd = await start_daemon(dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, token="s3cret")))
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{rd.url}/ws/input")).status == 401
        async with http.ws_connect(f"{rd.url}/ws/input", headers={"Authorization": "Bearer s3cret"}) as ws:
            await ws.send_str("{}")
            reply = await ws.receive_json(timeout=T)
            assert reply == {"type": "error", "error": "'user' is required"}
