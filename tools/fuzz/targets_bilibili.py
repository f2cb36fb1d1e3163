"""Bilibili targets: web danmaku packets (plain, zlib, brotli) with JSON commands, and the open platform.

Seeds are the hand-written frames of ``tests/bilibili_frames.py`` and the open-platform commands and replies the
tests use. Inputs reach the parsers the way ``wsconn`` feeds them: ``PacketReader.feed`` / ``parse_frame``, then
``packet_json`` and the command decoder for op 5, ``popularity`` for op 3, ``auth_reply_code`` for op 8.
"""

from __future__ import annotations

import base64
import contextlib
import json
import zlib
from typing import Any

import brotli

from ishow.errors import ProtocolError
from ishow.sources.bilibili import api
from ishow.sources.bilibili import open_protocol as op
from ishow.sources.bilibili.commands import CommandDecoder, DecodeOptions
from ishow.sources.bilibili.protocol import (
    FrameError,
    Op,
    Packet,
    PacketReader,
    auth_reply_code,
    packet_json,
    parse_frame,
    popularity,
)
from tests import bilibili_frames as bf
from tools.fuzz.mutate import Mutator, dumps, json_keys, pooled, tweak_bytes
from tools.fuzz.runner import Target


def _pb(*fields: tuple[int, int | bytes]) -> str:
    out = bytearray()
    for num, value in fields:
        if isinstance(value, int):
            out += _varint(num << 3) + _varint(value)
        else:
            out += _varint(num << 3 | 2) + _varint(len(value)) + value
    return base64.b64encode(bytes(out)).decode()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


WEB_COMMANDS: tuple[dict[str, Any], ...] = (
    bf.danmu(),
    bf.danmu("回复", reply_uname="主播", admin=1, guard=1),
    bf.danmu("[sticker]", sticker=True),
    bf.danmu(cmd_name="DANMU_MSG:4:0:2:2:2:0"),
    bf.send_gift(),
    bf.send_gift("小心心", 5, coin_type="silver"),
    bf.super_chat(),
    bf.sc_delete(9001, 9002),
    bf.guard_buy(),
    bf.user_toast(),
    bf.interact(1),
    bf.interact(2),
    {"cmd": "INTERACT_WORD_V2", "data": {"pb": _pb((1, 99), (2, "路人".encode()), (5, 1), (7, 1_700_000_004))}},
    {"cmd": "WATCHED_CHANGE", "data": {"num": 1}},
    {"cmd": "SOMETHING_NEW", "data": {}},
)

OPEN_COMMANDS: tuple[dict[str, Any], ...] = (
    {
        "cmd": "LIVE_OPEN_PLATFORM_DM",
        "data": {
            "uid": 0,
            "open_id": "o-1",
            "uname": "甲",
            "msg": "你好",
            "msg_id": "m1",
            "fans_medal_name": "粉丝团",
            "fans_medal_level": 3,
            "guard_level": 3,
            "dm_type": 0,
            "timestamp": 1_700_000_000,
            "reply_uname": "",
            "is_admin": 0,
        },
    },
    {
        "cmd": "LIVE_OPEN_PLATFORM_SEND_GIFT",
        "data": {
            "open_id": "o-2",
            "uname": "乙",
            "gift_name": "牛哇",
            "gift_num": 3,
            "price": 100,
            "paid": True,
            "msg_id": "g1",
            "timestamp": 1_700_000_001,
        },
    },
    {
        "cmd": "LIVE_OPEN_PLATFORM_SUPER_CHAT",
        "data": {
            "open_id": "o-3",
            "uname": "丙",
            "message": "SC!",
            "message_id": 5,
            "rmb": 30,
            "start_time": 1_700_000_002,
        },
    },
    {"cmd": "LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL", "data": {"message_ids": [77, 78]}},
    {
        "cmd": "LIVE_OPEN_PLATFORM_GUARD",
        "data": {
            "user_info": {"open_id": "o-4", "uname": "丁"},
            "guard_level": 3,
            "guard_num": 1,
            "guard_unit": "月",
            "price": 198000,
            "msg_id": "gd1",
            "timestamp": 1_700_000_003,
        },
    },
    {"cmd": "LIVE_OPEN_PLATFORM_LIKE", "data": {}},
)

START_REPLY: dict[str, Any] = {
    "code": 0,
    "message": "0",
    "data": {
        "anchor_info": {"room_id": 1000, "uname": "主播", "uid": 0, "open_id": "o-anchor"},
        "game_info": {"game_id": "game-1"},
        "websocket_info": {
            "auth_body": json.dumps({"roomid": 1000, "key": "auth-1"}),
            "wss_link": ["wss://example.invalid/sub"],
        },
    },
}
REPLIES: tuple[dict[str, Any], ...] = (START_REPLY, {"code": 0, "message": "0", "data": {}}, {"code": 7003, "msg": "x"})


WEB_KEYS = json_keys(*WEB_COMMANDS)
OPEN_KEYS = json_keys(*OPEN_COMMANDS, *REPLIES)


# ---------------------------------------------------------------------------------------------- web: packets


def _command_packet(m: Mutator, seeds: tuple[dict[str, Any], ...]) -> bytes:
    obj = m.rng.choice(seeds)
    if m.rng.random() < 0.7:
        obj = m.json(obj)
    return bf.pkt(5, dumps(obj, m.rng), ver=m.rng.choice((0, 0, 0, 1)), seq=m.rng.choice((0, 1)))


def _control_packet(m: Mutator) -> bytes:
    r = m.rng
    kind = r.randrange(4)
    if kind == 0:
        return bf.heartbeat_reply(r.choice((0, 1, -1, 2**31 - 1, -(2**31))))
    if kind == 1:
        return bf.auth_reply(r.choice((0, -101, 1)))
    if kind == 2:
        return bf.pkt(8, dumps(m.json({"code": 0}), r), ver=1)
    return bf.pkt(3, r.randbytes(r.randint(0, 6)), ver=1)


def _inner(m: Mutator, seeds: tuple[dict[str, Any], ...]) -> bytes:
    packets = [_command_packet(m, seeds) for _ in range(m.rng.randint(1, 4))]
    inner = b"".join(packets)
    if m.rng.random() < 0.2:
        inner = m.bytes(inner)
    return inner


def _header_edit(m: Mutator, frame: bytes) -> bytes:
    """Rewrite one header field of the first packet (length, header length, version, op)."""
    r = m.rng
    if len(frame) < 16:
        return frame
    field = r.randrange(4)
    value = r.choice((0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 0xFFFF, 0xFFFFFFFF, len(frame) + r.randint(-20, 20)))
    if field == 0:
        return (value & 0xFFFFFFFF).to_bytes(4, "big") + frame[4:]
    if field == 1:
        return frame[:4] + (value & 0xFFFF).to_bytes(2, "big") + frame[6:]
    if field == 2:
        return frame[:6] + (value & 0xFFFF).to_bytes(2, "big") + frame[8:]
    return frame[:8] + (value & 0xFFFFFFFF).to_bytes(4, "big") + frame[12:]


def web_frame(m: Mutator, seeds: tuple[dict[str, Any], ...] = WEB_COMMANDS) -> bytes:
    """One websocket frame: plain, zlib or brotli packets of (mutated) commands, then maybe byte mutations."""
    r = m.rng
    parts: list[bytes] = []
    for _ in range(r.randint(1, 3)):
        kind = r.randrange(6)
        if kind in (0, 1):
            parts.append(_command_packet(m, seeds))
        elif kind == 2:
            parts.append(_control_packet(m))
        elif kind == 3:
            parts.append(bf.pkt(5, zlib.compress(_inner(m, seeds), r.choice((1, 6))), ver=2))
        elif kind == 4:
            parts.append(bf.pkt(5, brotli.compress(_inner(m, seeds), quality=r.choice((0, 1, 4))), ver=3))
        else:  # compressed packets nested twice, or a compressed body of garbage
            nested = bf.pkt(5, zlib.compress(_inner(m, seeds)), ver=2)
            body = zlib.compress(nested) if r.random() < 0.5 else r.randbytes(r.randint(0, 40))
            parts.append(bf.pkt(5, body, ver=r.choice((2, 3))))
    frame = b"".join(parts)
    if r.random() < 0.2:
        frame = _header_edit(m, frame)
    if r.random() < 0.35:
        frame = m.bytes(frame)
    return frame


def _use_packets(packets: list[Packet], decoder: Any) -> None:
    for p in packets:
        if p.op == Op.COMMAND:
            with contextlib.suppress(ProtocolError):
                decoder.decode(packet_json(p))
        elif p.op == Op.HEARTBEAT_REPLY:
            with contextlib.suppress(ProtocolError):
                popularity(p)
        elif p.op == Op.AUTH_REPLY:
            with contextlib.suppress(ProtocolError):
                auth_reply_code(p)


def _feed_all(data: bytes, decoder: Any) -> None:
    """``parse_frame`` (what a websocket frame gets), or (odd lengths) ``PacketReader`` fed in three cuts."""
    if len(data) % 2 == 0:
        try:
            packets = parse_frame(data)
        except FrameError as e:
            packets = e.packets
        _use_packets(packets, decoder)
        return
    reader = PacketReader()
    n = len(data)
    for a, b in ((0, n // 3), (n // 3, n // 3 + 1), (n // 3 + 1, n)):
        try:
            got = reader.feed(data[a:b])
        except FrameError as e:
            got = e.packets
        _use_packets(got, decoder)


def run_web_frame(data: bytes) -> None:
    _feed_all(data, CommandDecoder(room="1000", options=DecodeOptions(interact=True, stickers=True)))


def run_web_command(obj: Any) -> None:
    """One command object as its op 5 packet body, decoded with every option on and off."""
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass") if _dumpable(obj) else b"[]"
    packet = Packet(0, Op.COMMAND, body)
    for options in (DecodeOptions(interact=True, stickers=True), DecodeOptions()):
        CommandDecoder(room="1000", options=options).decode(packet_json(packet))
    if isinstance(obj, dict):  # deep values that JSON text cannot carry still must not crash the decoder
        CommandDecoder(options=DecodeOptions(interact=True, stickers=True)).decode(obj)


def _dumpable(obj: Any) -> bool:
    try:
        json.dumps(obj)
    except (ValueError, RecursionError):
        return False
    return True


# ---------------------------------------------------------------------------------------------- web: HTTP API

API_REPLIES: tuple[dict[str, Any], ...] = (
    {"code": 0, "data": {"room_id": 5440, "short_id": 1, "uid": 9, "live_status": 1}},
    {"code": 60004, "msg": "直播间不存在", "message": "直播间不存在", "data": {}},
    {"code": 0, "data": {"b_3": "B3-XYZinfoc", "b_4": "x"}},
    {"code": -101, "message": "账号未登录", "data": {"isLogin": False, "wbi_img": {
        "img_url": "https://i0.hdslb.com/bfs/wbi/7cd084941338484aae1ad9425b84077c.png",
        "sub_url": "https://i0.hdslb.com/bfs/wbi/4932caff0ff746eab6f01bf08b70ac45.png"}}},
    {"code": 0, "data": {"token": "T0K", "host_list": [
        {"host": "a.chat.bilibili.com", "port": 2243, "wss_port": 443, "ws_port": 2244}]}},
)  # fmt: skip
API_KEYS = json_keys(*API_REPLIES)


def api_reply(m: Mutator) -> bytes:
    body = dumps(m.json(m.rng.choice(API_REPLIES)), m.rng)
    return m.bytes(body) if m.rng.random() < 0.3 else body


def run_api_reply(body: bytes) -> None:
    """One HTTP reply body as ``get_json`` reads it, given to every reply parser of the web client."""
    reply = api.reply_json(body, "api")
    for parse in (api.parse_room_init, api.parse_buvid, api.parse_wbi_keys, api.parse_danmu_info):
        with contextlib.suppress(ProtocolError, api.ApiError):
            parse(reply)
    info = api.parse_danmu_info({"code": 0, "data": reply}) if isinstance(reply, dict) else None
    if info is not None:
        api.ws_urls(info)


# ---------------------------------------------------------------------------------------------- open platform


def open_frame(m: Mutator) -> bytes:
    return web_frame(m, OPEN_COMMANDS)


def run_open_frame(data: bytes) -> None:
    _feed_all(data, op.OpenCommandDecoder(room="1000"))


def run_open_command(obj: Any) -> None:
    if isinstance(obj, dict):
        op.OpenCommandDecoder(room="1000").decode(obj)
    if _dumpable(obj):
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")
        op.OpenCommandDecoder().decode(packet_json(Packet(0, Op.COMMAND, body)))


def open_reply(m: Mutator) -> bytes:
    r = m.rng
    body = dumps(m.json(r.choice(REPLIES)), r)
    return m.bytes(body) if r.random() < 0.3 else body


def run_open_reply(raw: bytes) -> None:
    """An app/start (and app/end, heartbeat) HTTP reply body as the open client reads it."""
    reply = op.reply_json(raw, op.START_PATH)
    try:
        op.parse_start(reply)
    finally:
        op.check_reply(reply, "app/heartbeat")


OPEN_ALLOWED = (ProtocolError, op.OpenApiError)

TARGETS = [
    Target("bilibili.frame", "bilibili", pooled(web_frame, tweak_bytes), run_web_frame, (ProtocolError,), WEB_KEYS),
    Target("bilibili.api", "bilibili", api_reply, run_api_reply, (ProtocolError, api.ApiError), API_KEYS),
    Target(
        "bilibili.command",
        "bilibili",
        lambda m: m.json(m.rng.choice(WEB_COMMANDS)),
        run_web_command,
        (ProtocolError,),
        WEB_KEYS,
    ),
    Target(
        "bilibili_open.frame",
        "bilibili_open",
        pooled(open_frame, tweak_bytes),
        run_open_frame,
        (ProtocolError,),
        OPEN_KEYS,
    ),
    Target(
        "bilibili_open.command",
        "bilibili_open",
        lambda m: m.json(m.rng.choice(OPEN_COMMANDS)),
        run_open_command,
        (ProtocolError,),
        OPEN_KEYS,
    ),
    Target("bilibili_open.reply", "bilibili_open", open_reply, run_open_reply, OPEN_ALLOWED, OPEN_KEYS),
]
