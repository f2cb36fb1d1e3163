"""Bilibili web and open-platform clients against local servers that speak the real protocol (127.0.0.1 only).

Every wait is bounded (``asyncio.timeout``); no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
import re
import socket
import struct
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError
from ishow.events import ChatEvent, EventKind, Removal
from ishow.sources.bilibili import api
from ishow.sources.bilibili.client import BilibiliSource
from ishow.sources.bilibili.commands import CommandDecoder
from ishow.sources.bilibili.open_client import BilibiliOpenSource
from ishow.sources.bilibili.wsconn import Timeouts
from ishow.sources.registry import create_source
from tests.bilibili_frames import brotli_frame, cmd, danmu, pkt, sc_delete, send_gift, super_chat, zlib_frame

FAST = Timeouts(heartbeat_s=0.05, read_s=2.0, auth_s=2.0, connect_s=2.0, http_s=2.0)
IMG_KEY, SUB_KEY = "7cd084941338484aae1ad9425b84077c", "4932caff0ff746eab6f01bf08b70ac45"
MIXIN = "ea1db124af3c7062474693fa704f4ff8"  # the documented mixin key of these two keys
Script = Callable[[web.WebSocketResponse, "Conn"], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Conn:
    auth: dict[str, Any]
    heartbeats: int = 0


async def serve_heartbeats(ws: web.WebSocketResponse, conn: Conn, reply: bool = True) -> None:
    """Read until the client goes away, counting (and answering) op 2 heartbeats."""
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY and struct.unpack(">IHHII", msg.data[:16])[3] == 2:
            conn.heartbeats += 1
            if reply:
                await ws.send_bytes(pkt(3, struct.pack(">i", 4321), ver=1))


class FakeBilibili:
    """room_init, finger/spi, nav, getDanmuInfo and the /sub websocket, all on one local server."""

    def __init__(self, scripts: list[Script], tokens: list[str], valid: set[str]) -> None:
        self.scripts = scripts
        self.tokens = tokens
        self.valid = valid
        self.conns: list[Conn] = []
        self.rejected: list[dict[str, Any]] = []
        self.danmu_info_calls = 0
        self.cookies: list[str] = []
        self.room_code = 0
        self.spi_broken = False
        self.auth_buvids: list[str] = []
        self.port = 0
        self.dead_port = free_port()
        app = web.Application()
        app.router.add_get("/room/v1/Room/room_init", self.room_init)
        app.router.add_get("/x/frontend/finger/spi", self.spi)
        app.router.add_get("/x/web-interface/nav", self.nav)
        app.router.add_get("/xlive/web-room/v1/index/getDanmuInfo", self.danmu_info)
        app.router.add_get("/sub", self.sub)
        self.runner = web.AppRunner(app)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def room_init(self, request: web.Request) -> web.Response:
        self.cookies.append(request.headers.get("Cookie", ""))
        if self.room_code:
            return web.json_response(
                {"code": self.room_code, "msg": "直播间不存在", "message": "直播间不存在", "data": {}}
            )
        assert request.query["id"] == "1"
        return web.json_response({"code": 0, "msg": "ok", "data": {"room_id": 1000, "short_id": 1, "live_status": 1}})

    async def spi(self, request: web.Request) -> web.Response:
        if self.spi_broken:
            return web.Response(status=404, text="not here any more")
        return web.json_response({"code": 0, "message": "ok", "data": {"b_3": "BUVID3-TEST", "b_4": "B4"}})

    async def nav(self, request: web.Request) -> web.Response:
        img = {"img_url": f"https://i0.hdslb.com/bfs/wbi/{IMG_KEY}.png",
               "sub_url": f"https://i0.hdslb.com/bfs/wbi/{SUB_KEY}.png"}  # fmt: skip
        return web.json_response({"code": -101, "message": "账号未登录", "data": {"isLogin": False, "wbi_img": img}})

    async def danmu_info(self, request: web.Request) -> web.Response:
        self.cookies.append(request.headers.get("Cookie", ""))
        raw = request.rel_url.raw_query_string
        signed, _, w_rid = raw.rpartition("&w_rid=")
        q = dict(urllib.parse.parse_qsl(signed))
        assert list(q) == sorted(q) and q["id"] == "1000" and q["type"] == "0" and q["web_location"] == "444.8"
        if hashlib.md5((signed + MIXIN).encode()).hexdigest() != w_rid:
            return web.json_response({"code": -352, "message": "-352", "data": {}})
        token = self.tokens[min(self.danmu_info_calls, len(self.tokens) - 1)]
        self.danmu_info_calls += 1
        hosts = [{"host": "127.0.0.1", "port": 0, "wss_port": 0, "ws_port": p} for p in (self.port, self.dead_port)]
        return web.json_response({"code": 0, "message": "0", "data": {"token": token, "host_list": hosts}})

    async def sub(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        first = await ws.receive(timeout=5)
        assert first.type is aiohttp.WSMsgType.BINARY
        plen, hlen, _ver, op, _seq = struct.unpack(">IHHII", first.data[:16])
        assert (plen, hlen, op) == (len(first.data), 16, 7)
        auth = json.loads(first.data[16:])
        assert (auth["roomid"], auth["protover"], auth["platform"], auth["type"]) == (1000, 3, "web", 2)
        self.auth_buvids.append(auth["buvid"])
        assert auth["buvid"] == "BUVID3-TEST" or self.spi_broken
        if auth.get("key") not in self.valid:
            self.rejected.append(auth)
            await ws.send_bytes(pkt(8, b'{"code":-101}', ver=1))
            await ws.close()
            return ws
        conn = Conn(auth)
        self.conns.append(conn)
        await ws.send_bytes(pkt(8, b'{"code":0}', ver=1))
        script = self.scripts[min(len(self.conns) - 1, len(self.scripts) - 1)]
        await script(ws, conn)
        return ws


@pytest.fixture
async def bili() -> AsyncIterator[Callable[..., Awaitable[FakeBilibili]]]:
    servers: list[FakeBilibili] = []

    async def make(
        scripts: list[Script], tokens: tuple[str, ...] = ("tok",), valid: tuple[str, ...] = ("tok",)
    ) -> FakeBilibili:
        s = FakeBilibili(scripts, list(tokens), set(valid))
        await s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.runner.cleanup()


class Collector:
    def __init__(self) -> None:
        self.events: list[ChatEvent | Removal] = []
        self.changed = asyncio.Event()

    def __call__(self, ev: ChatEvent | Removal) -> None:
        self.events.append(ev)
        self.changed.set()

    async def wait_for(self, pred: Callable[[list[ChatEvent | Removal]], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self.events):
                self.changed.clear()
                await self.changed.wait()

    def texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, ChatEvent)]


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110 - polls plain attributes of the source/server under test
            await asyncio.sleep(0.01)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


def web_source(server: FakeBilibili, **kw: Any) -> BilibiliSource:
    args: dict[str, Any] = {"api_base": server.base, "timeouts": FAST, "backoff_initial_s": 0.01,
                            "reconnect_max_s": 0.05, "gift_merge_s": 0.2, "rng": random.Random(1)}  # fmt: skip
    return BilibiliSource("bili", "1", **{**args, **kw})


# ---------------------------------------------------------------- web client


async def test_events_disconnect_reconnect_and_continue(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def first(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(danmu("第一条")), cmd(send_gift("辣条", 1)), cmd(send_gift("辣条", 2))))
        await ws.send_bytes(zlib_frame(cmd(super_chat(9001, "醒目", 30))))
        await ws.close()  # server-initiated disconnect

    async def second(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(zlib_frame(cmd(danmu("第二条")), cmd(sc_delete(9001))))
        await serve_heartbeats(ws, conn)

    server = await bili([first, second])
    src = web_source(server)
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "第二条" in out.texts() and "辣条 x 3" in out.texts() and len(evs) >= 5)
        await wait_until(lambda: server.conns[-1].heartbeats >= 2)
        assert src.state == "connected"
    finally:
        await stop(task)
    assert out.texts()[:2] == ["第一条", "醒目"]
    assert set(out.texts()[2:]) == {"第二条", "辣条 x 3"}
    gift = next(e for e in out.events if isinstance(e, ChatEvent) and e.kind is EventKind.GIFT)
    assert (gift.amount, gift.currency, gift.room) == (0.3, "CNY", "1000")
    assert Removal("bilibili", msg_id="sc:9001") in out.events
    assert len(server.conns) == 2 and src.stats.sessions == 2
    # the second round was asked of the dead host first (host rotation), then of the live one
    assert server.danmu_info_calls == 3 and "Cannot connect" in src.stats.last_error
    assert src.stats.popularity == 4321


async def test_buvid_fetch_failure_is_not_fatal(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def chat(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(zlib_frame(cmd(danmu("还在"))))
        await serve_heartbeats(ws, conn)

    server = await bili([chat])
    server.spi_broken = True  # finger/spi answers 404 (it moved)
    src = web_source(server)
    out = Collector()
    with capture_logs() as logs:
        task = asyncio.create_task(src.run(out))
        try:
            await out.wait_for(lambda evs: "还在" in out.texts())
        finally:
            await stop(task)
    assert len(server.conns) == 1  # connected on the first attempt, not retrying forever
    (buvid,) = server.auth_buvids
    assert re.fullmatch(r"[0-9A-F-]{36}\d{5}infoc", buvid)
    (line,) = [e for e in logs if e["event"] == "bilibili buvid fetch failed; using a generated buvid3"]
    assert "HTTP 404" in line["error"]


async def test_auth_rejected_refetches_token(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def chat(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(danmu("令牌已更新"))))
        await serve_heartbeats(ws, conn)

    server = await bili([chat], tokens=("stale", "fresh"), valid=("fresh",))
    src = web_source(server)
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "令牌已更新" in out.texts())
    finally:
        await stop(task)
    assert [a["key"] for a in server.rejected] == ["stale"]
    assert server.conns[0].auth["key"] == "fresh" and server.danmu_info_calls == 2
    assert "-101" in src.stats.last_error


async def test_heartbeat_timeout_reconnects(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def silent(ws: web.WebSocketResponse, conn: Conn) -> None:
        await serve_heartbeats(ws, conn, reply=False)  # accepts heartbeats, never answers: a dead peer

    async def chat(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(danmu("又连上了"))))
        await serve_heartbeats(ws, conn)

    server = await bili([silent, chat])
    src = web_source(server, timeouts=dataclasses.replace(FAST, read_s=0.3), ws_url=f"ws://127.0.0.1:{0}/sub")
    src.ws_url = f"ws://127.0.0.1:{server.port}/sub"  # ws_url override: no host rotation
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "又连上了" in out.texts())
    finally:
        await stop(task)
    assert len(server.conns) == 2 and server.conns[0].heartbeats >= 1
    assert "HeartbeatTimeout" in src.stats.last_error


async def test_bad_frames_are_survived(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def messy(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(b"\x00\x01\x02")  # shorter than a header
        await ws.send_bytes(cmd(danmu("垃圾之前")) + b"garbage")  # a good packet, then trailing garbage
        await ws.send_str("not binary")
        await ws.send_bytes(pkt(5, b"{not json", ver=0))
        await ws.send_bytes(cmd({"cmd": "DANMU_MSG", "info": "broken"}))
        await ws.send_bytes(pkt(5, b"\x00garbage", ver=2))  # bad zlib
        await ws.send_bytes(cmd({"cmd": "BRAND_NEW_CMD", "data": {}}))
        await ws.send_bytes(brotli_frame(cmd(danmu("还活着"))))
        await serve_heartbeats(ws, conn)

    server = await bili([messy])
    src = web_source(server)
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "还活着" in out.texts())
    finally:
        await stop(task)
    assert out.texts() == ["垃圾之前", "还活着"]
    assert (src.stats.bad_frames, src.stats.bad_commands, src.stats.sessions) == (3 + 1, 2, 1)
    assert isinstance(src.decoder, CommandDecoder)
    assert src.decoder.unknown == {"BRAND_NEW_CMD": 1} and len(server.conns) == 1


async def test_pending_gifts_flushed_on_stop_and_cookie_used(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    async def gifts(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(cmd(send_gift("小心心", 1)), cmd(send_gift("小心心", 1))))
        await serve_heartbeats(ws, conn)

    server = await bili([gifts])
    cookie = "SESSDATA=very-secret; DedeUserID=4242"
    src = web_source(server, gift_merge_s=30.0, cookie=cookie)
    assert "very-secret" not in repr(src)
    out = Collector()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(src.run(out))
        try:
            await wait_until(lambda: len(src.merger) == 1 and src.stats.packets >= 2)
        finally:
            await stop(task)
    assert logs and not [e for e in logs if "very-secret" in repr(e) or "'tok'" in repr(e)]
    assert out.texts() == ["小心心 x 2"]  # paid events are never dropped on shutdown
    assert server.conns[0].auth["uid"] == 4242
    assert all(c.startswith(cookie) for c in server.cookies) and "buvid3=BUVID3-TEST" in server.cookies[-1]


async def test_missing_room_fails(bili: Callable[..., Awaitable[FakeBilibili]]) -> None:
    server = await bili([serve_heartbeats])
    server.room_code = api.ROOM_NOT_FOUND
    src = web_source(server)
    with pytest.raises(api.ApiError, match="60004"):
        await asyncio.wait_for(src.run(Collector()), 5)
    assert src.state == "failed"


def test_from_config_and_registry() -> None:
    cfg = SourceConfig(kind="bilibili", room="https://live.bilibili.com/22", cookie="SESSDATA=x", gift_merge_s=1.0)
    src = create_source("b", cfg)
    assert isinstance(src, BilibiliSource) and src.room == 22 and src.secure_ws and src.merger.window_s == 1.0
    with pytest.raises(ConfigError, match=r"sources\.b: room 'nope'"):
        create_source("b", dataclasses.replace(cfg, room="nope"))
    open_cfg = SourceConfig(kind="bilibili_open", app_id=1, access_key_id="k", access_key_secret="s", code="c")
    assert isinstance(create_source("o", open_cfg), BilibiliOpenSource)
    with pytest.raises(ConfigError, match="needs access_key_secret, code"):
        create_source("o", dataclasses.replace(open_cfg, access_key_secret="", code=""))


# ---------------------------------------------------------------- open platform

KEY_ID, SECRET, CODE, APP_ID = "test-key-id", "test-secret", "ID-CODE-1", 1650000000


def check_signature(request: web.Request, body: bytes) -> str:
    """The test server's own reading of the documented signature; returns what is wrong ('' if nothing)."""
    h = request.headers
    names = ["x-bili-accesskeyid", "x-bili-content-md5", "x-bili-signature-method", "x-bili-signature-nonce",
             "x-bili-signature-version", "x-bili-timestamp"]  # fmt: skip
    if h.get("x-bili-content-md5") != hashlib.md5(body).hexdigest():
        return "content md5"
    if h.get("x-bili-accesskeyid") != KEY_ID or h.get("x-bili-signature-method") != "HMAC-SHA256":
        return "key id / method"
    text = "\n".join(f"{n}:{h.get(n, '')}" for n in names)
    if h.get("Authorization") != hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest():
        return "signature"
    return ""


class FakeOpen:
    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.games = 0
        self.heartbeats: list[str] = []
        self.ended: list[str] = []
        self.conns: list[Conn] = []
        self.bad: list[str] = []
        self.expire_heartbeat = False
        app = web.Application()
        app.router.add_post("/v2/app/start", self.start_game)
        app.router.add_post("/v2/app/heartbeat", self.heartbeat)
        app.router.add_post("/v2/app/end", self.end)
        app.router.add_get("/sub", self.sub)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]

    async def _signed(self, request: web.Request) -> dict[str, Any] | web.Response:
        body = await request.read()
        problem = check_signature(request, body)
        if problem:
            self.bad.append(problem)
            return web.json_response({"code": 4002, "message": f"签名错误: {problem}", "data": {}})
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    async def start_game(self, request: web.Request) -> web.Response:
        body = await self._signed(request)
        if isinstance(body, web.Response):
            return body
        assert body == {"code": CODE, "app_id": APP_ID}
        self.games += 1
        return web.json_response({"code": 0, "message": "0", "data": {
            "anchor_info": {"room_id": 1000, "uname": "主播", "uid": 0, "open_id": "o-anchor"},
            "game_info": {"game_id": f"game-{self.games}"},
            "websocket_info": {"auth_body": json.dumps({"roomid": 1000, "key": f"auth-{self.games}"}),
                               "wss_link": [f"ws://127.0.0.1:{self.port}/sub"]}}})  # fmt: skip

    async def heartbeat(self, request: web.Request) -> web.Response:
        body = await self._signed(request)
        if isinstance(body, web.Response):
            return body
        self.heartbeats.append(body["game_id"])
        if self.expire_heartbeat and body["game_id"] == "game-1":
            return web.json_response({"code": 7003, "message": "心跳过期或GameId错误", "data": {}})
        return web.json_response({"code": 0, "message": "0", "data": {}})

    async def end(self, request: web.Request) -> web.Response:
        body = await self._signed(request)
        if isinstance(body, web.Response):
            return body
        assert body["app_id"] == APP_ID
        self.ended.append(body["game_id"])
        return web.json_response({"code": 0, "message": "0", "data": {}})

    async def sub(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        first = await ws.receive(timeout=5)
        assert struct.unpack(">IHHII", first.data[:16])[3] == 7
        assert json.loads(first.data[16:]) == {"roomid": 1000, "key": f"auth-{self.games}"}  # auth_body, verbatim
        conn = Conn(json.loads(first.data[16:]))
        self.conns.append(conn)
        await ws.send_bytes(pkt(8, b'{"code":0}', ver=0))
        await self.scripts[min(len(self.conns) - 1, len(self.scripts) - 1)](ws, conn)
        return ws


@pytest.fixture
async def open_server() -> AsyncIterator[Callable[[list[Script]], Awaitable[FakeOpen]]]:
    servers: list[FakeOpen] = []

    async def make(scripts: list[Script]) -> FakeOpen:
        s = FakeOpen(scripts)
        await s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.runner.cleanup()


def open_cmd(name: str, **data: object) -> bytes:
    return cmd({"cmd": name, "data": data})


def open_source(server: FakeOpen, **kw: Any) -> BilibiliOpenSource:
    args: dict[str, Any] = {"app_id": APP_ID, "access_key_id": KEY_ID, "access_key_secret": SECRET, "code": CODE,
                            "api_base": f"http://127.0.0.1:{server.port}", "timeouts": FAST, "app_heartbeat_s": 0.05,
                            "backoff_initial_s": 0.01, "reconnect_max_s": 0.05, "gift_merge_s": 0.1}  # fmt: skip
    return BilibiliOpenSource("open", **{**args, **kw})


async def test_open_platform_events_reconnect_and_end(
    open_server: Callable[[list[Script]], Awaitable[FakeOpen]],
) -> None:
    async def first(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(zlib_frame(
            open_cmd("LIVE_OPEN_PLATFORM_DM", open_id="o-1", uname="甲", msg="开放平台你好", msg_id="m1", dm_type=0),
            open_cmd("LIVE_OPEN_PLATFORM_SUPER_CHAT", open_id="o-2", uname="乙", message="SC", message_id=5, rmb=30),
        ))  # fmt: skip
        await ws.close()

    async def second(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(brotli_frame(
            open_cmd("LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL", message_ids=[5]),
            open_cmd("LIVE_OPEN_PLATFORM_SEND_GIFT", open_id="o-3", uname="丙", gift_name="牛哇", gift_num=1,
                     price=100, paid=True, msg_id="g1"),
            open_cmd("LIVE_OPEN_PLATFORM_GUARD", user_info={"open_id": "o-4", "uname": "丁"}, guard_level=3,
                     guard_num=1, guard_unit="月", price=198000, msg_id="gd1"),
        ))  # fmt: skip
        await serve_heartbeats(ws, conn)

    server = await open_server([first, second])
    src = open_source(server)
    assert SECRET not in repr(src) and CODE not in repr(src)
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "牛哇 x 1" in out.texts() and len(evs) >= 5)
        await wait_until(lambda: "game-2" in server.heartbeats and server.conns[-1].heartbeats >= 1)
    finally:
        await stop(task)
    assert out.texts() == ["开放平台你好", "SC", "开通了舰长", "牛哇 x 1"]
    assert Removal("bilibili", msg_id="sc:5") in out.events
    assert server.games == 2 and server.ended == ["game-1", "game-2"] and not server.bad
    first_dm = out.events[0]
    assert isinstance(first_dm, ChatEvent) and first_dm.user.id == "o-1" and first_dm.room == "1000"


async def test_open_platform_expired_game_restarts(open_server: Callable[[list[Script]], Awaitable[FakeOpen]]) -> None:
    async def chat(ws: web.WebSocketResponse, conn: Conn) -> None:
        await ws.send_bytes(
            zlib_frame(open_cmd("LIVE_OPEN_PLATFORM_DM", open_id="o", uname="u", msg=f"第{len(server.conns)}局"))
        )
        await serve_heartbeats(ws, conn)

    server = await open_server([chat])
    server.expire_heartbeat = True  # heartbeats of game-1 are refused with 7003 → a new game
    src = open_source(server)
    out = Collector()
    task = asyncio.create_task(src.run(out))
    try:
        await out.wait_for(lambda evs: "第2局" in out.texts())
    finally:
        await stop(task)
    assert out.texts()[:2] == ["第1局", "第2局"] and server.ended[:1] == ["game-1"]
    assert "7003" in src.stats.last_error


async def test_open_platform_bad_secret_keeps_retrying(
    open_server: Callable[[list[Script]], Awaitable[FakeOpen]],
) -> None:
    server = await open_server([serve_heartbeats])
    src = open_source(server, access_key_secret="wrong")
    task = asyncio.create_task(src.run(Collector()))
    try:
        await wait_until(lambda: len(server.bad) >= 2)
        assert src.state == "reconnecting" and "4002" in src.stats.last_error
    finally:
        await stop(task)
    assert server.games == 0 and set(server.bad) == {"signature"}
