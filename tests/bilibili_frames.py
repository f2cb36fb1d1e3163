"""Bilibili danmaku frames written by hand from the documented wire format (shared by the bilibili tests).

The packer here is independent of ishow's own encoder on purpose.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import brotli


def pkt(op: int, body: bytes = b"", ver: int = 0, seq: int = 0) -> bytes:
    return struct.pack(">IHHII", 16 + len(body), 16, ver, op, seq) + body


def cmd(obj: dict[str, Any]) -> bytes:
    return pkt(5, json.dumps(obj, ensure_ascii=False).encode(), ver=0)


def zlib_frame(*packets: bytes) -> bytes:
    return pkt(5, zlib.compress(b"".join(packets)), ver=2)


def brotli_frame(*packets: bytes) -> bytes:
    return pkt(5, brotli.compress(b"".join(packets)), ver=3)


def auth_reply(code: int = 0) -> bytes:
    return pkt(8, json.dumps({"code": code}).encode(), ver=1, seq=1)


def heartbeat_reply(popularity: int) -> bytes:
    return pkt(3, struct.pack(">i", popularity), ver=1, seq=1)


DM_EXTRA = {
    "send_from_me": False,
    "mode": 0,
    "color": 16777215,
    "dm_type": 0,
    "font_size": 25,
    "content": "主播好",
    "emoticon_unique": "",
    "emots": None,
    "id_str": "a1b2c3d4",
    "reply_mid": 0,
    "reply_uname": "",
}


def danmu(
    text: str = "主播好",
    uid: int = 12345,
    name: str = "观众甲",
    *,
    cmd_name: str = "DANMU_MSG",
    admin: int = 0,
    guard: int = 3,
    sticker: bool = False,
    reply_uname: str = "",
    id_str: str = "a1b2c3d4",
    ts_ms: int = 1_700_000_000_123,
) -> dict[str, Any]:
    extra = {**DM_EXTRA, "content": text, "id_str": id_str, "reply_uname": reply_uname}
    meta: list[Any] = [0, 1, 25, 16777215, ts_ms, 1_700_000_000, 0, "5f3a9c1e", 0, 0, 0, "", 1 if sticker else 0,
                       {"emoticon_unique": "official_147", "url": "https://i0.hdslb.com/x.png"} if sticker else "{}",
                       "{}", {"mode": 0, "show_player_type": 0, "extra": json.dumps(extra, ensure_ascii=False)},
                       {"activity_identity": "", "activity_source": 0, "not_show": 0}, 0]  # fmt: skip
    return {
        "cmd": cmd_name,
        "info": [
            meta,
            text,
            [uid, name, admin, 0, 0, 10000, 1, ""],
            [21, "粉丝团", "主播", 1000, 398668, "", 0, 6809855, 398668, 6850801, 3, 1, 99999],
            [25, 0, 5805790, ">50000", 0],
            ["", ""],
            0,
            guard,
            None,
            {"ts": 1_700_000_000, "ct": "DEADBEEF"},
            0,
            0,
            None,
            None,
            0,
            105,
            [7],
            None,
        ],
    }


def send_gift(name: str = "辣条", num: int = 1, uid: int = 777, uname: str = "送礼人", *, price: int = 100,
              coin_type: str = "gold", tid: str = "1700000000110100001") -> dict[str, Any]:  # fmt: skip
    return {
        "cmd": "SEND_GIFT",
        "data": {
            "action": "投喂",
            "giftName": name,
            "giftId": 1,
            "num": num,
            "uname": uname,
            "uid": uid,
            "price": price,
            "total_coin": price * num,
            "coin_type": coin_type,
            "timestamp": 1_700_000_001,
            "tid": tid,
            "rnd": "1700000001",
            "guard_level": 0,
            "medal_info": {"medal_name": "粉丝团", "medal_level": 12, "anchor_roomid": 1000},
        },
    }


def super_chat(sc_id: int = 9001, message: str = "加油！", price: int = 30) -> dict[str, Any]:
    return {
        "cmd": "SUPER_CHAT_MESSAGE",
        "data": {
            "id": sc_id,
            "uid": 4242,
            "price": price,
            "rate": 1000,
            "message": message,
            "start_time": 1_700_000_002,
            "end_time": 1_700_000_062,
            "time": 60,
            "user_info": {"uname": "醒目的人", "guard_level": 2, "user_level": 30, "face": "https://x/y.jpg"},
            "medal_info": {"medal_name": "粉丝团", "medal_level": 20},
        },
    }


def sc_delete(*ids: int) -> dict[str, Any]:
    return {"cmd": "SUPER_CHAT_MESSAGE_DELETE", "data": {"ids": list(ids)}, "roomid": 1000}


def guard_buy(uid: int = 555, level: int = 3, num: int = 1, start: int = 1_700_000_003) -> dict[str, Any]:
    return {
        "cmd": "GUARD_BUY",
        "data": {"uid": uid, "username": "舰长甲", "guard_level": level, "num": num, "price": 198000,
                 "gift_id": 10003, "gift_name": "舰长", "start_time": start, "end_time": start},
    }  # fmt: skip


def user_toast(uid: int = 555, level: int = 3, num: int = 1, start: int = 1_700_000_003) -> dict[str, Any]:
    return {
        "cmd": "USER_TOAST_MSG",
        "data": {"uid": uid, "username": "舰长甲", "guard_level": level, "num": num, "price": 198000,
                 "role_name": "舰长", "unit": "月", "payflow_id": "2311150000000001", "start_time": start,
                 "end_time": start, "toast_msg": "<%舰长甲%> 开通了舰长"},
    }  # fmt: skip


def interact(msg_type: int = 1, uid: int = 99, uname: str = "路人") -> dict[str, Any]:
    return {
        "cmd": "INTERACT_WORD",
        "data": {"uid": uid, "uname": uname, "msg_type": msg_type, "roomid": 1000, "timestamp": 1_700_000_004},
    }
