"""Bilibili protocol, commands, WBI signing, gift merging and open-platform signing (all pure)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import struct
import urllib.parse
import zlib

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ishow.errors import ProtocolError, RemoteError
from ishow.events import ChatEvent, EventKind, Removal, User
from ishow.sources.bilibili import api
from ishow.sources.bilibili import open_protocol as op
from ishow.sources.bilibili.protocol import (
    CommandDecoder,
    DecodeOptions,
    FrameError,
    GiftMerger,
    Op,
    Packet,
    PacketReader,
    auth_packet,
    auth_reply_code,
    decode_command,
    heartbeat_packet,
    packet_json,
    parse_frame,
    popularity,
)
from tests.bilibili_frames import (
    auth_reply,
    brotli_frame,
    cmd,
    danmu,
    guard_buy,
    heartbeat_reply,
    interact,
    pkt,
    sc_delete,
    send_gift,
    super_chat,
    user_toast,
    zlib_frame,
)

# ---------------------------------------------------------------- recorded frames

MULTI = heartbeat_reply(12345) + cmd(danmu("一")) + cmd(danmu("二"))
ZLIB = zlib_frame(cmd(danmu("三")), cmd(send_gift()))
BROTLI = brotli_frame(cmd(danmu("四")), cmd(super_chat()), cmd(sc_delete(9001)))
FRAMES = [MULTI, ZLIB, BROTLI, auth_reply(0), auth_reply(-101), heartbeat_reply(1)]


def texts(packets: list[Packet]) -> list[str]:
    return [packet_json(p).get("cmd", "?") for p in packets if p.op == Op.COMMAND]


def test_multi_packet_frame() -> None:
    packets = parse_frame(MULTI)
    assert [p.op for p in packets] == [3, 5, 5]
    assert popularity(packets[0]) == 12345
    assert [packet_json(p)["info"][1] for p in packets[1:]] == ["一", "二"]


def test_zlib_and_brotli_nested() -> None:
    assert texts(parse_frame(ZLIB)) == ["DANMU_MSG", "SEND_GIFT"]
    assert texts(parse_frame(BROTLI)) == ["DANMU_MSG", "SUPER_CHAT_MESSAGE", "SUPER_CHAT_MESSAGE_DELETE"]
    assert all(p.ver == 0 for p in parse_frame(BROTLI))


def test_auth_reply() -> None:
    assert auth_reply_code(parse_frame(auth_reply(0))[0]) == 0
    assert auth_reply_code(parse_frame(auth_reply(-101))[0]) == -101
    assert auth_reply_code(Packet(1, 8, b"")) == 0
    with pytest.raises(ProtocolError, match="expected an auth reply"):
        auth_reply_code(parse_frame(heartbeat_reply(1))[0])
    with pytest.raises(ProtocolError, match="code 'x'"):
        auth_reply_code(Packet(0, 8, b'{"code":"x"}'))


def test_outgoing_packets() -> None:
    hb = heartbeat_packet()
    assert hb == struct.pack(">IHHII", 16, 16, 1, 2, 1)
    raw = auth_packet(1000, "tok", uid=7, buvid="B3")
    plen, hlen, ver, opcode, seq = struct.unpack(">IHHII", raw[:16])
    assert (plen, hlen, ver, opcode, seq) == (len(raw), 16, 1, 7, 1)
    body = json.loads(raw[16:])
    assert body == {"uid": 7, "roomid": 1000, "protover": 3, "platform": "web", "type": 2, "key": "tok", "buvid": "B3"}


@pytest.mark.parametrize("frame", FRAMES)
def test_byte_by_byte_equals_whole(frame: bytes) -> None:
    reader = PacketReader()
    got: list[Packet] = []
    for i in range(len(frame)):
        got += reader.feed(frame[i : i + 1])
    assert got == parse_frame(frame)
    assert reader.pending == 0


@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=5), st.lists(st.integers(0, 10_000), max_size=8))
@settings(max_examples=60, deadline=None)
def test_split_and_concatenated_stream(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    reader = PacketReader()
    got: list[Packet] = []
    prev = 0
    for c in [*points, len(stream)]:
        got += reader.feed(stream[prev:c])
        prev = c
    assert got == [p for f in frames for p in parse_frame(f)]


def test_trailing_garbage_keeps_good_packets() -> None:
    good = parse_frame(MULTI)
    with pytest.raises(FrameError) as e:
        parse_frame(MULTI + b"\x00\x01\x02")
    assert e.value.offset == len(MULTI)
    assert e.value.packets == good
    assert f"offset {len(MULTI)}: 3 trailing bytes" in str(e.value)


def test_declared_length_past_end() -> None:
    frame = cmd(danmu())
    with pytest.raises(FrameError, match=rf"offset 0: packet_len {len(frame)} but only {len(frame) - 1} bytes remain"):
        parse_frame(frame[:-1])
    bad_header = struct.pack(">IHHII", 8, 16, 0, 5, 0) + b"x" * 8
    with pytest.raises(FrameError, match="packet_len 8, header_len 16"):
        parse_frame(bad_header)


def test_bad_compressed_bodies() -> None:
    with pytest.raises(FrameError, match="bad zlib body"):
        parse_frame(pkt(5, b"not zlib", ver=2))
    with pytest.raises(FrameError, match="truncated"):
        parse_frame(pkt(5, zlib.compress(cmd(danmu()))[:-4], ver=2))
    with pytest.raises(FrameError, match="brotli"):
        parse_frame(pkt(5, b"\xff\xff\xff\xff", ver=3))
    with pytest.raises(FrameError, match="nested inside a compressed"):
        parse_frame(zlib_frame(zlib_frame(cmd(danmu()))))
    # inner garbage: offsets name the inflated body; the good inner packet is kept
    with pytest.raises(FrameError, match=r"offset 0 \(inflated\) offset \d+: 2 trailing bytes") as e:
        parse_frame(zlib_frame(cmd(danmu()), b"zz"))
    assert len(e.value.packets) == 1


def test_inflate_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (17 * 1024 * 1024), 9)
    with pytest.raises(FrameError, match="inflates past"):
        parse_frame(pkt(5, bomb, ver=2))
    bbomb = brotli.compress(b"\0" * (17 * 1024 * 1024))
    with pytest.raises(FrameError, match="inflates past"):
        parse_frame(pkt(5, bbomb, ver=3))


def test_reader_drops_buffer_on_bad_header() -> None:
    reader = PacketReader()
    with pytest.raises(FrameError, match="buffer dropped"):
        reader.feed(struct.pack(">IHHII", 4, 16, 0, 5, 0))
    assert reader.pending == 0
    assert reader.feed(heartbeat_packet()) == [Packet(1, 2, b"", 1)]


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_parse_frame_raw(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_frame(data)


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10), st.binary(max_size=40)), max_size=5),
       st.binary(max_size=20))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_fuzz_parse_frame_structured(parts: list[tuple[int, int, bytes]], tail: bytes) -> None:
    frame = b"".join(pkt(opc, body, ver=ver) for ver, opc, body in parts) + tail
    try:
        packets = parse_frame(frame)
    except ProtocolError:
        return
    assert len(packets) >= sum(1 for v, _, _ in parts if v not in (2, 3))


# ---------------------------------------------------------------- commands


def one(obj: dict[str, object], **kw: object) -> ChatEvent:
    out = decode_command(obj, "1000", DecodeOptions(**kw))  # type: ignore[arg-type]
    assert out is not None and len(out) == 1 and isinstance(out[0], ChatEvent)
    return out[0]


def test_danmaku() -> None:
    ev = one(danmu("你好", uid=12345, name="观众甲"))
    assert ev == ChatEvent(
        platform="bilibili",
        room="1000",
        user=User("12345", "观众甲", ("medal:粉丝团:21", "guard:3", "level:25"), False),
        kind=EventKind.DANMAKU,
        text="你好",
        timestamp=1_700_000_000.123,
        msg_id="dm:a1b2c3d4",
    )
    assert one(danmu(cmd_name="DANMU_MSG:4:0:2:2:2:0")).text == "主播好"
    admin = one(danmu(admin=1, guard=0))
    assert (
        admin.user.moderator
        and "admin" in admin.user.badges
        and not any(b.startswith("guard") for b in admin.user.badges)
    )
    assert "reply_to:另一人" in one(danmu(reply_uname="另一人")).user.badges
    assert one(danmu(id_str="")).msg_id == "dm:DEADBEEF"  # falls back to info[9].ct


def test_danmaku_sticker() -> None:
    assert decode_command(danmu("[dog]", sticker=True)) == ()
    assert "sticker" in one(danmu("[dog]", sticker=True), stickers=True).user.badges


def test_gift_and_super_chat() -> None:
    gift = one(send_gift("小花花", 3, price=100))
    assert (gift.kind, gift.text, gift.amount, gift.currency) == (EventKind.GIFT, "小花花 x 3", 0.3, "CNY")
    assert gift.msg_id == "gift:1700000000110100001" and gift.user == User("777", "送礼人", ("medal:粉丝团:12",))
    silver = one(send_gift("辣条", 5, coin_type="silver"))
    assert (silver.amount, silver.currency) == (0.0, "")
    sc = one(super_chat(9001, "加油！", 30))
    assert (sc.kind, sc.text, sc.amount, sc.currency, sc.msg_id) == (
        EventKind.SUPER_CHAT,
        "加油！",
        30.0,
        "CNY",
        "sc:9001",
    )
    assert sc.user == User("4242", "醒目的人", ("medal:粉丝团:20", "guard:2", "level:30"))
    assert decode_command(sc_delete(9001, 9002)) == (
        Removal("bilibili", msg_id="sc:9001"),
        Removal("bilibili", msg_id="sc:9002"),
    )


def test_guard_pair_is_spoken_once() -> None:
    dec = CommandDecoder(room="1000")
    first = dec.decode(guard_buy())
    assert len(first) == 1 and isinstance(first[0], ChatEvent)
    assert (first[0].kind, first[0].text, first[0].amount) == (EventKind.GUARD, "开通了舰长", 198.0)
    assert dec.decode(user_toast()) == ()  # the same purchase, announced twice
    again = dec.decode(user_toast(start=1_700_000_100))  # a later purchase speaks again
    assert len(again) == 1 and isinstance(again[0], ChatEvent) and again[0].msg_id == "guard:2311150000000001"
    three = one(guard_buy(num=3, level=2))
    assert three.text == "开通了3个月提督" and three.amount == 594.0


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_interact_word() -> None:
    assert decode_command(interact(1)) == ()  # off by default
    ev = one(interact(2), interact=True)
    assert (ev.kind, ev.text, ev.user.name) == (EventKind.SYSTEM, "关注了直播间", "路人")
    name = "新观众".encode()
    pb = (
        b"\x08"
        + _pb_varint(31337)
        + b"\x12"
        + _pb_varint(len(name))
        + name
        + b"\x28\x01"
        + b"\x38"
        + _pb_varint(1_700_000_000)
    )
    v2 = one({"cmd": "INTERACT_WORD_V2", "data": {"dmscore": 12, "pb": base64.b64encode(pb).decode()}}, interact=True)
    assert (v2.user.id, v2.user.name, v2.text, v2.timestamp) == ("31337", "新观众", "进入了直播间", 1_700_000_000.0)
    with pytest.raises(ProtocolError, match="pb"):
        decode_command({"cmd": "INTERACT_WORD_V2", "data": {"pb": "%%%"}}, options=DecodeOptions(interact=True))


def test_unknown_commands_are_counted() -> None:
    dec = CommandDecoder()
    assert dec.decode({"cmd": "SOMETHING_NEW", "data": {}}) == ()
    assert dec.decode({"cmd": "SOMETHING_NEW"}) == ()
    assert dec.decode({"cmd": "WATCHED_CHANGE", "data": {}}) == ()
    assert dec.unknown == {"SOMETHING_NEW": 2}


def test_bad_commands_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="cmd None"):
        decode_command({})
    with pytest.raises(ProtocolError, match=r"DANMU_MSG.info: expected an array, got str"):
        decode_command({"cmd": "DANMU_MSG", "info": "x"})
    with pytest.raises(ProtocolError, match=r"SEND_GIFT.giftName"):
        decode_command({"cmd": "SEND_GIFT", "data": {"giftName": {"a": 1}}})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)
CMDS = ["DANMU_MSG", "DANMU_MSG:4:0:2:2:2:0", "SEND_GIFT", "SUPER_CHAT_MESSAGE", "SUPER_CHAT_MESSAGE_DELETE",
        "GUARD_BUY", "USER_TOAST_MSG", "INTERACT_WORD", "INTERACT_WORD_V2", "NOPE"]  # fmt: skip
KEYS = ["info", "data", "cmd", "ids", "giftName", "num", "uid", "price", "user_info", "message", "id", "guard_level",
        "msg_type", "pb", "uname", "username"]  # fmt: skip


@given(st.sampled_from(CMDS), st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5), st.booleans())
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_decode_command(cmd_name: str, extra: dict[str, object], interact_on: bool) -> None:
    obj: dict[str, object] = {**extra, "cmd": cmd_name}
    with contextlib.suppress(ProtocolError):
        decode_command(obj, options=DecodeOptions(interact=interact_on, stickers=True))


@given(st.sampled_from([danmu(), send_gift(), super_chat(), guard_buy(), user_toast(), interact(), sc_delete(1)]),
       st.lists(st.tuples(st.integers(0, 20), json_values), max_size=3))  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_fuzz_decode_command_near_valid(base: dict[str, object], edits: list[tuple[int, object]]) -> None:
    """Real commands with a few fields (or array slots) replaced by arbitrary JSON."""
    obj = json.loads(json.dumps(base))
    for i, value in edits:
        target = obj.get("data") if "data" in obj else obj["info"]
        if isinstance(target, dict) and target:
            target[sorted(target)[i % len(target)]] = value
        elif isinstance(target, list) and target:
            target[i % len(target)] = value
    with contextlib.suppress(ProtocolError):
        decode_command(obj, options=DecodeOptions(interact=True, stickers=True))


# ---------------------------------------------------------------- gift merging


def gift_event(user: str, name: str, num: int = 1, amount: float = 0.1) -> ChatEvent:
    return ChatEvent("bilibili", "1", User(user, user), EventKind.GIFT, f"{name} x {num}", amount, "CNY", 0.0, "g")


def test_gift_merger_merges_repeats() -> None:
    m = GiftMerger(window_s=3.0, max_hold_s=10.0)
    for t in range(15):
        assert m.push(gift_event("a", "辣条"), now=t * 0.1) == []
    assert m.push(gift_event("b", "辣条", 2), now=1.5) == []
    assert m.poll(now=4.3) == []  # a's last gift at 1.4 → closes at 4.4
    out = m.poll(now=4.4)
    assert [(e.user.id, e.text, e.amount) for e in out] == [("a", "辣条 x 15", 1.5)]
    assert [(e.user.id, e.text) for e in m.poll(now=4.5)] == [("b", "辣条 x 2")]
    assert len(m) == 0 and m.next_deadline() is None


def test_gift_merger_max_hold_flush_and_passthrough() -> None:
    m = GiftMerger(window_s=3.0, max_hold_s=5.0)
    released: list[ChatEvent] = []
    for t in range(8):  # a steady stream every second never lets the window close
        released += m.push(gift_event("a", "小心心"), now=float(t))
    assert [e.text for e in released] == ["小心心 x 5"]  # released at t=5 (max hold): the gifts of t=0..4
    chat = ChatEvent("bilibili", "1", User("a", "a"), EventKind.DANMAKU, "hi")
    assert m.push(chat, now=8.0) == [chat]
    assert m.push(gift_event("a", "其他"), now=8.0) == []
    assert sorted(e.text for e in m.flush()) == ["其他 x 1", "小心心 x 3"]
    assert GiftMerger(window_s=0).push(gift_event("a", "x"), now=0) == [gift_event("a", "x")]


def test_gift_merger_is_bounded() -> None:
    m = GiftMerger(window_s=3.0, max_pending=2)
    assert m.push(gift_event("a", "x"), 0) == []
    assert m.push(gift_event("b", "x"), 0) == []
    assert [e.user.id for e in m.push(gift_event("c", "x"), 0)] == ["a"]


# ---------------------------------------------------------------- HTTP helpers and WBI


def test_wbi_documented_example() -> None:
    keys = api.WbiKeys("7cd084941338484aae1ad9425b84077c", "4932caff0ff746eab6f01bf08b70ac45")
    assert keys.mixin_key == "ea1db124af3c7062474693fa704f4ff8"
    signed = api.wbi_sign({"foo": "114", "bar": "514", "zab": 1919810}, keys, 1702204169)
    assert signed == "bar=514&foo=114&wts=1702204169&zab=1919810&w_rid=8f6f2b5b3d485fe1886cec6a0be8c5d4"


def test_wbi_danmu_info_by_hand() -> None:
    img, sub = "a" * 16 + "0123456789abcdef", "fedcba9876543210" + "b" * 16
    raw = img + sub
    mixin = "".join(raw[i] for i in api.MIXIN_KEY_ENC_TAB)[:32]
    assert sorted(api.MIXIN_KEY_ENC_TAB) == list(range(64))
    query = "id=1000&type=0&web_location=444.8&wts=1700000000"
    w_rid = hashlib.md5((query + mixin).encode()).hexdigest()
    url = api.Endpoints().danmu_info(1000, api.WbiKeys(img, sub), 1700000000)
    assert url == f"https://api.live.bilibili.com/xlive/web-room/v1/index/getDanmuInfo?{query}&w_rid={w_rid}"
    # values lose !'()* and are percent-encoded like encodeURIComponent
    assert api.wbi_query({"b": "a b(c)!", "a": "中"}) == "a=%E4%B8%AD&b=a%20bc"


def test_api_replies() -> None:
    assert api.parse_room("https://live.bilibili.com/21452505?x=1") == 21452505
    with pytest.raises(ProtocolError, match="expected a positive room number"):
        api.parse_room("abc")
    assert api.parse_room_init({"code": 0, "data": {"room_id": 5440, "short_id": 1, "live_status": 1}}).room_id == 5440
    with pytest.raises(api.ApiError, match="room_init: code 60004: 直播间不存在") as e:
        api.parse_room_init({"code": 60004, "msg": "直播间不存在", "message": "直播间不存在", "data": {}})
    assert e.value.code == 60004 and isinstance(e.value, RemoteError)
    assert api.parse_buvid({"code": 0, "data": {"b_3": "B3-XYZinfoc", "b_4": "x"}}) == "B3-XYZinfoc"
    nav = {"code": -101, "message": "账号未登录", "data": {"isLogin": False, "wbi_img": {
        "img_url": "https://i0.hdslb.com/bfs/wbi/7cd084941338484aae1ad9425b84077c.png",
        "sub_url": "https://i0.hdslb.com/bfs/wbi/4932caff0ff746eab6f01bf08b70ac45.png"}}}  # fmt: skip
    assert api.parse_wbi_keys(nav) == api.WbiKeys(
        "7cd084941338484aae1ad9425b84077c", "4932caff0ff746eab6f01bf08b70ac45"
    )
    with pytest.raises(ProtocolError, match=r"wbi_img\.img_url"):
        api.parse_wbi_keys({"code": 0, "data": {"wbi_img": {"img_url": "x.png", "sub_url": "y.png"}}})
    info = api.parse_danmu_info({"code": 0, "data": {"token": "T0K", "host_list": [
        {"host": "a.chat.bilibili.com", "port": 2243, "wss_port": 443, "ws_port": 2244},
        {"host": "b.chat.bilibili.com", "port": 2243, "wss_port": 443, "ws_port": 2244}]}})  # fmt: skip
    assert "T0K" not in repr(info)
    assert api.ws_urls(info) == ["wss://a.chat.bilibili.com:443/sub", "wss://b.chat.bilibili.com:443/sub"]
    assert api.ws_urls(info, secure=False)[0] == "ws://a.chat.bilibili.com:2244/sub"
    assert api.ws_urls(api.DanmuInfo("t", ())) == ["wss://broadcastlv.chat.bilibili.com:443/sub"]
    with pytest.raises(api.ApiError, match="-352"):
        api.parse_danmu_info({"code": -352, "message": "-352", "data": {}})
    assert api.cookie_value("SESSDATA=s3cr3t; DedeUserID=42; buvid3=b", "DedeUserID") == "42"
    assert api.mask("s3cr3t") == "<6 chars>"


# ---------------------------------------------------------------- open platform


def test_open_signature_by_hand() -> None:
    body = op.start_body("CODE123", 1650000000)
    assert json.loads(body) == {"code": "CODE123", "app_id": 1650000000}
    h = op.signed_headers(body, "KEYID", "SECRET", 1700000000, "nonce-1")
    md5 = hashlib.md5(body).hexdigest()
    text = (
        f"x-bili-accesskeyid:KEYID\nx-bili-content-md5:{md5}\nx-bili-signature-method:HMAC-SHA256\n"
        "x-bili-signature-nonce:nonce-1\nx-bili-signature-version:1.0\nx-bili-timestamp:1700000000"
    )
    assert h["x-bili-content-md5"] == md5
    assert h["Authorization"] == hmac.new(b"SECRET", text.encode(), hashlib.sha256).hexdigest()
    assert h["Content-Type"] == "application/json" and h["Accept"] == "application/json"


def test_open_start_reply() -> None:
    reply = {"code": 0, "message": "0", "data": {
        "game_info": {"game_id": "g-1"},
        "websocket_info": {"auth_body": '{"roomid":1,"key":"secret"}', "wss_link": ["wss://a/sub", "wss://b/sub"]},
        "anchor_info": {"room_id": 1000, "uname": "主播", "uid": 0, "open_id": "o-anchor"}}}  # fmt: skip
    game = op.parse_start(reply)
    assert (game.game_id, game.wss_links, game.room_id) == ("g-1", ("wss://a/sub", "wss://b/sub"), 1000)
    assert "secret" not in repr(game)
    with pytest.raises(op.OpenApiError, match="code 7007: 身份码错误"):
        op.parse_start({"code": 7007, "message": "身份码错误", "data": {}})
    with pytest.raises(ProtocolError, match="wss_link is empty"):
        op.parse_start(
            {"code": 0, "data": {"game_info": {"game_id": "g"}, "websocket_info": {"auth_body": "", "wss_link": []}}}
        )


def open_cmd(name: str, **data: object) -> dict[str, object]:
    return {"cmd": name, "data": data}


def test_open_commands() -> None:
    dm = op.decode_open_command(open_cmd("LIVE_OPEN_PLATFORM_DM", uid=0, open_id="o-1", uname="甲", msg="你好",
                                         msg_id="m1", timestamp=1700000000, fans_medal_name="团", fans_medal_level=5,
                                         guard_level=3, dm_type=0, is_admin=1, reply_uname="乙"), "1000")  # fmt: skip
    user = User("o-1", "甲", ("medal:团:5", "guard:3", "reply_to:乙", "admin"), True)
    assert dm == (
        ChatEvent("bilibili", "1000", user, EventKind.DANMAKU, "你好", timestamp=1_700_000_000.0, msg_id="dm:m1"),
    )
    assert op.decode_open_command(open_cmd("LIVE_OPEN_PLATFORM_DM", uname="甲", msg="[x]", dm_type=1)) == ()
    gift = op.decode_open_command(open_cmd("LIVE_OPEN_PLATFORM_SEND_GIFT", open_id="o-2", uname="乙", gift_name="牛哇",
                                           gift_num=2, price=100, paid=True, msg_id="m2", timestamp=1))  # fmt: skip
    assert gift is not None and isinstance(gift[0], ChatEvent)
    assert (gift[0].text, gift[0].amount, gift[0].msg_id) == ("牛哇 x 2", 0.2, "gift:m2")
    sc = op.decode_open_command(open_cmd("LIVE_OPEN_PLATFORM_SUPER_CHAT", open_id="o-3", uname="丙", message="SC!",
                                         message_id=77, rmb=50, msg_id="m3", start_time=5))  # fmt: skip
    assert sc is not None and isinstance(sc[0], ChatEvent) and (sc[0].amount, sc[0].msg_id) == (50.0, "sc:77")
    assert op.decode_open_command(open_cmd("LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL", message_ids=[77, 78])) == (
        Removal("bilibili", msg_id="sc:77"), Removal("bilibili", msg_id="sc:78"))  # fmt: skip
    guard = op.decode_open_command(
        open_cmd("LIVE_OPEN_PLATFORM_GUARD", user_info={"open_id": "o-4", "uname": "丁"}, guard_level=3, guard_num=1,
                 guard_unit="月", price=198000, msg_id="m4")
    )  # fmt: skip
    assert guard is not None and isinstance(guard[0], ChatEvent)
    assert (guard[0].kind, guard[0].text, guard[0].amount, guard[0].user.name) == (
        EventKind.GUARD,
        "开通了舰长",
        198.0,
        "丁",
    )
    dec = op.OpenCommandDecoder()
    assert (
        dec.decode({"cmd": "LIVE_OPEN_PLATFORM_LIKE", "data": {}}) == () and dec.unknown["LIVE_OPEN_PLATFORM_LIKE"] == 1
    )


@given(st.sampled_from([*op.KNOWN_OPEN_CMDS, "X"]), st.dictionaries(st.text(max_size=12), json_values, max_size=6),
       json_values)  # fmt: skip
@settings(max_examples=300, deadline=None)
def test_fuzz_open_commands(cmd_name: str, data: dict[str, object], other: object) -> None:
    for obj in ({"cmd": cmd_name, "data": data}, {"cmd": cmd_name, "data": other}):
        with contextlib.suppress(ProtocolError):
            op.decode_open_command(obj)


def test_query_encoding_matches_urllib_for_plain_values() -> None:
    params = {"id": "1000", "type": "0", "web_location": "444.8", "wts": "1"}
    assert api.wbi_query(params) == urllib.parse.urlencode(sorted(params.items()))
