"""TwitchSource against a local websocket server on 127.0.0.1 that speaks Twitch's IRC."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from ishow.backoff import backoff_delay
from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError
from ishow.events import ChatEvent, Removal
from ishow.sources.registry import create_source
from ishow.sources.twitch.client import TwitchSource

T = 5.0  # generous per-step timeout; nothing asserts timing


class Conn:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def line(self) -> str:
        return await asyncio.wait_for(self.lines.get(), T)

    async def login(self) -> list[str]:
        """Read CAP/(PASS)/NICK/JOIN and accept."""
        lines = [await self.line() for _ in range(3)]
        if lines[1].startswith("PASS"):
            lines.append(await self.line())
        return lines

    async def send(self, *lines: str) -> None:
        await self.ws.send_str("".join(line + "\r\n" for line in lines))


class FakeTwitch:
    def __init__(self) -> None:
        self.conns: asyncio.Queue[Conn] = asyncio.Queue()
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Conn(ws)
        self.conns.put_nowait(conn)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                for line in msg.data.split("\r\n"):
                    if line:
                        conn.lines.put_nowait(line)
        conn.closed.set()
        return ws

    async def next_conn(self) -> Conn:
        return await asyncio.wait_for(self.conns.get(), T)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwitch]:
    server = FakeTwitch()
    app = web.Application()
    app.router.add_get("/", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"ws://127.0.0.1:{port}/"
    yield server
    await runner.cleanup()


class Collector:
    def __init__(self) -> None:
        self.items: asyncio.Queue[ChatEvent | Removal] = asyncio.Queue()

    def __call__(self, item: ChatEvent | Removal) -> None:
        self.items.put_nowait(item)

    async def next(self) -> ChatEvent | Removal:
        return await asyncio.wait_for(self.items.get(), T)


@contextlib.asynccontextmanager
async def running(source: TwitchSource) -> AsyncIterator[Collector]:
    collector = Collector()
    task = asyncio.create_task(source.run(collector))
    try:
        yield collector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, T)
        assert task.cancelled()


def fast(url: str, **kw: Any) -> TwitchSource:
    opts: dict[str, Any] = {"ws_url": url, "backoff_base_s": 0.01, "reconnect_max_s": 0.05, "stable_s": 0.0}
    opts.update(kw)
    return TwitchSource("tw", "#Ronni", **opts)


async def wait_state(source: TwitchSource, state: str) -> None:
    for _ in range(500):
        if source.state == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"state stayed {source.state!r}, expected {state!r}")


WELCOME = ":tmi.twitch.tv 001 justinfan12345 :Welcome, GLHF!"
MSG = "@badges=vip/1;display-name=Ann;emotes=;id={id};user-id=5 :ann!ann@ann.tmi.twitch.tv PRIVMSG #ronni :{text}"


async def test_login_messages_ping_malformed_and_reconnect_after_server_close(fake: FakeTwitch) -> None:
    source = fast(fake.url)
    async with running(source) as got:
        conn = await fake.next_conn()
        cap, nick, join = await conn.login()
        assert cap == "CAP REQ :twitch.tv/tags twitch.tv/commands"
        assert nick.startswith("NICK justinfan") and join == "JOIN #ronni"
        await conn.send(WELCOME)
        await wait_state(source, "connected")
        # two lines in one frame, then one line split over two frames
        await conn.send(MSG.format(id="m1", text="hello"), "@target-msg-id=m1 :tmi.twitch.tv CLEARMSG #ronni :hello")
        line = MSG.format(id="m2", text="second") + "\r\n"
        await conn.ws.send_str(line[:30])
        await conn.ws.send_str(line[30:])
        first, removal, second = [await got.next() for _ in range(3)]
        assert isinstance(first, ChatEvent) and first.text == "hello" and first.user.badges == ("vip/1",)
        assert removal == Removal("twitch", msg_id="m1")
        assert isinstance(second, ChatEvent) and second.text == "second"
        # a malformed line is counted and the connection kept
        await conn.send("@emotes=1:0-99;user-id=1 :a!a@a PRIVMSG #ronni :x", "PING :tmi.twitch.tv")
        assert await conn.line() == "PONG :tmi.twitch.tv"
        assert source.malformed_lines == 1 and not conn.closed.is_set()
        # the server hangs up → a new connection logs in again and chat continues
        await conn.ws.close()
        conn2 = await fake.next_conn()
        assert (await conn2.login())[2] == "JOIN #ronni"
        await conn2.send(WELCOME, MSG.format(id="m3", text="back again"))
        event = await got.next()
        assert isinstance(event, ChatEvent) and event.text == "back again"
        assert source.state == "connected" and source.connects == 2


async def test_reconnect_command_moves_to_a_new_connection(fake: FakeTwitch) -> None:
    source = fast(fake.url)
    async with running(source) as got:
        conn = await fake.next_conn()
        await conn.login()
        await conn.send(WELCOME, ":tmi.twitch.tv RECONNECT")
        conn2 = await fake.next_conn()
        await conn2.login()
        await asyncio.wait_for(conn.closed.wait(), T)  # the client closed the old one
        await conn2.send(WELCOME, MSG.format(id="x", text="on the new server"))
        event = await got.next()
        assert isinstance(event, ChatEvent) and event.text == "on the new server"


async def test_auth_failure_sets_state_and_retries_slowly_without_logging_the_token(fake: FakeTwitch) -> None:
    token = "oauth:s3cr3ttoken"
    source = fast(fake.url, token=token, nick="MyBot", auth_retry_s=60.0)
    with structlog.testing.capture_logs() as logs:
        async with running(source):
            conn = await fake.next_conn()
            _cap, pass_, nick, join = await conn.login()
            assert pass_ == f"PASS {token}" and nick == "NICK mybot" and join == "JOIN #ronni"
            await conn.send(":tmi.twitch.tv NOTICE * :Login authentication failed")
            await wait_state(source, "auth_failed")
            assert "Login authentication failed" in source.last_error
            await asyncio.wait_for(conn.closed.wait(), T)
            await asyncio.sleep(0.2)
            assert fake.conns.empty()  # waiting auth_retry_s, not hammering the server
    assert any(e["event"] == "twitch login refused" for e in logs)
    assert all("s3cr3t" not in str(e) for e in logs)
    assert "s3cr3t" not in repr(source)


async def test_auth_failure_retries_after_auth_retry_s(fake: FakeTwitch) -> None:
    source = fast(fake.url, token="abc", nick="bot", auth_retry_s=0.05)
    async with running(source):
        conn = await fake.next_conn()
        assert (await conn.login())[1] == "PASS oauth:abc"
        await conn.send(":tmi.twitch.tv NOTICE * :Login authentication failed")
        conn2 = await fake.next_conn()
        await conn2.login()
        await conn2.send(":tmi.twitch.tv 001 bot :Welcome, GLHF!")
        await wait_state(source, "connected")


async def test_idle_connection_is_pinged_then_replaced(fake: FakeTwitch) -> None:
    source = fast(fake.url, ping_idle_s=0.2, dead_s=0.5)
    async with running(source) as got:
        conn = await fake.next_conn()
        await conn.login()
        await conn.send(WELCOME)
        assert await conn.line() == "PING :tmi.twitch.tv"  # idle → our keepalive
        await conn.send(":tmi.twitch.tv PONG tmi.twitch.tv :tmi.twitch.tv")  # answered: stays up
        assert await conn.line() == "PING :tmi.twitch.tv"
        # unanswered this time → the connection is declared dead and replaced
        conn2 = await fake.next_conn()
        await conn2.login()
        await conn2.send(WELCOME, MSG.format(id="y", text="alive"))
        event = await got.next()
        assert isinstance(event, ChatEvent) and event.text == "alive"
        assert conn.closed.is_set() or await asyncio.wait_for(conn.closed.wait(), T)


async def test_connect_failure_backs_off_and_recovers(fake: FakeTwitch) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = fast(f"ws://127.0.0.1:{port}/")
    async with running(source):
        await wait_state(source, "reconnecting")
        for _ in range(200):
            if source.last_error:
                break
            await asyncio.sleep(0.01)
        assert source.last_error and source.connects == 0
    source.ws_url = fake.url  # the same source object recovers once the server is reachable
    async with running(source):
        conn = await fake.next_conn()
        await conn.login()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    assert backoff_delay(0, 30, 0.0) == 0.5 and backoff_delay(0, 30, 0.999) < 1.0
    assert backoff_delay(3, 30, 0.0) == 4.0
    assert backoff_delay(50, 30, 0.999) <= 30 and backoff_delay(50, 30, 0.0) == 15.0


def test_from_config() -> None:
    src = create_source("tw", SourceConfig(kind="twitch", room="https://twitch.tv/Ronni", reconnect_max_s=7))
    assert isinstance(src, TwitchSource)
    assert src.channel == "ronni" and src.nick.startswith("justinfan") and src.reconnect_max_s == 7
    assert src.ws_url == "wss://irc-ws.chat.twitch.tv:443"
    with pytest.raises(ConfigError, match=r"sources\.tw\.room"):
        create_source("tw", SourceConfig(kind="twitch"))
    with pytest.raises(ConfigError, match=r"sources\.tw\.room: 'bad name!'"):
        create_source("tw", SourceConfig(kind="twitch", room="bad name!"))
    with pytest.raises(ConfigError, match=r"sources\.tw\.nick"):
        create_source("tw", SourceConfig(kind="twitch", room="ronni", token="oauth:x"))
