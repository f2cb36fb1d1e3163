"""Bilibili web live commands (op 5 JSON bodies) → ``ChatEvent`` / ``Removal``. Pure, no I/O.

Extra user facts ride in ``User.badges``: ``"medal:<name>:<level>"``, ``"guard:<1|2|3>"`` (1 总督, 2 提督,
3 舰长), ``"level:<n>"``, ``"admin"``; danmaku may add ``"reply_to:<name>"`` and ``"sticker"``.
Paid amounts are CNY: gift ``price`` is in gold coins (1/1000 CNY), super chat ``price`` is already CNY.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ishow.errors import ProtocolError
from ishow.events import ChatEvent, EventKind, Removal, User
from ishow.sources.bilibili import fields as f
from ishow.sources.bilibili.gifts import gift_text

PLATFORM = "bilibili"
GUARD_NAMES = {1: "总督", 2: "提督", 3: "舰长"}
INTERACT_TEXT = {1: "进入了直播间", 2: "关注了直播间", 3: "分享了直播间", 4: "特别关注了直播间", 5: "互相关注了"}

# Frequent commands we know and deliberately ignore; anything else is counted in ``CommandDecoder.unknown``.
IGNORED_CMDS = frozenset(
    {
        "SUPER_CHAT_MESSAGE_JPN",  # a translated duplicate of SUPER_CHAT_MESSAGE
        "COMBO_SEND",  # combo summary of gifts already delivered as SEND_GIFT
        "WATCHED_CHANGE",
        "ONLINE_RANK_COUNT",
        "ONLINE_RANK_V2",
        "ONLINE_RANK_TOP3",
        "STOP_LIVE_ROOM_LIST",
        "LIKE_INFO_V3_UPDATE",
        "LIKE_INFO_V3_CLICK",
        "ENTRY_EFFECT",
        "NOTICE_MSG",
        "WIDGET_BANNER",
        "ROOM_REAL_TIME_MESSAGE_UPDATE",
        "HOT_RANK_CHANGED",
        "HOT_RANK_CHANGED_V2",
        "DANMU_AGGREGATION",
        "POPULARITY_RED_POCKET_NEW",
        "GUARD_HONOR_THOUSAND",
    }
)


@dataclass(frozen=True)
class DecodeOptions:
    interact: bool = False  # INTERACT_WORD(_V2): enter/follow/share as SYSTEM events
    stickers: bool = False  # emoticon danmaku (info[0][12] == 1): emitted with the "sticker" badge, else skipped


def when(seconds: float) -> float:
    """A payload's Unix time, or now when the payload had none (as ``ChatEvent``'s own default)."""
    return seconds if seconds > 0 else time.time()


def _user(uid: object, name: object, badges: list[str], moderator: bool = False) -> User:
    return User(id=f.text(uid, "uid", ""), name=f.text(name, "uname", ""), badges=tuple(badges), moderator=moderator)


def _medal_badge(name: object, level: object) -> list[str]:
    if isinstance(name, str) and name:
        return [f"medal:{name}:{f.integer(level, 'medal level', 0)}"]
    return []


def _guard_badge(level: object) -> list[str]:
    g = f.integer(level, "guard_level", 0)
    return [f"guard:{g}"] if g > 0 else []


def _level_badge(level: object) -> list[str]:
    lv = f.integer(level, "user_level", 0)
    return [f"level:{lv}"] if lv > 0 else []


def _danmaku(o: dict[str, Any], room: str, opts: DecodeOptions) -> ChatEvent | None:
    info = f.arr(o.get("info"), "DANMU_MSG.info")
    meta = f.arr(f.at(info, 0, []), "DANMU_MSG.info[0]")
    message = f.text(f.at(info, 1), "DANMU_MSG.info[1]")
    who = f.arr(f.at(info, 2), "DANMU_MSG.info[2]")
    medal = f.at(info, 3, [])
    badges: list[str] = []
    if isinstance(medal, list) and len(medal) >= 2:
        badges += _medal_badge(medal[1], medal[0])
    badges += _guard_badge(f.at(info, 7, 0))
    ul = f.at(info, 4, [])
    if isinstance(ul, list) and ul:
        badges += _level_badge(ul[0])
    admin = f.integer(f.at(who, 2, 0), "DANMU_MSG.info[2][2]", 0) == 1
    if admin:
        badges.append("admin")
    msg_id = ""
    extra_raw = f.at(meta, 15)
    if isinstance(extra_raw, dict) and isinstance(extra_raw.get("extra"), str):
        try:
            extra = json.loads(extra_raw["extra"])
        except (ValueError, RecursionError):
            extra = None
        if isinstance(extra, dict):
            reply = extra.get("reply_uname")
            if isinstance(reply, str) and reply:
                badges.append(f"reply_to:{reply}")
            if isinstance(extra.get("id_str"), str):
                msg_id = extra["id_str"]
    if f.integer(f.at(meta, 12, 0), "DANMU_MSG.info[0][12]", 0) == 1:
        if not opts.stickers:
            return None
        badges.append("sticker")
    ts_ms = f.integer(f.at(meta, 4, 0), "DANMU_MSG.info[0][4]", 0)
    uid = f.at(who, 0, 0)
    if not msg_id:
        ct = f.at(info, 9)
        ct_id = ct.get("ct") if isinstance(ct, dict) else None
        msg_id = ct_id if isinstance(ct_id, str) and ct_id else f"{ts_ms}:{f.text(uid, 'uid', '0')}"
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(uid, f.at(who, 1, ""), badges, moderator=admin),
        kind=EventKind.DANMAKU,
        text=message,
        timestamp=when(ts_ms / 1000.0),
        msg_id=f"dm:{msg_id}",
    )


def _gift(d: dict[str, Any], room: str) -> ChatEvent:
    name = f.text(d.get("giftName"), "SEND_GIFT.giftName")
    num = max(1, f.integer(d.get("num"), "SEND_GIFT.num", 1))
    price = f.number(d.get("price"), "SEND_GIFT.price", 0.0)
    paid = d.get("coin_type", "gold") == "gold"
    badges: list[str] = []
    medal = d.get("medal_info")
    if isinstance(medal, dict):
        badges += _medal_badge(medal.get("medal_name"), medal.get("medal_level"))
    badges += _guard_badge(d.get("guard_level", 0))
    ts = f.number(d.get("timestamp"), "SEND_GIFT.timestamp", 0.0)
    tid = f.text(d.get("tid", d.get("rnd")), "SEND_GIFT.tid", "")
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d.get("uid"), d.get("uname"), badges),
        kind=EventKind.GIFT,
        text=gift_text(name, num),
        gift=name,
        count=num,
        amount=price * num / 1000.0 if paid else 0.0,
        currency="CNY" if paid else "",
        timestamp=when(ts),
        msg_id=f"gift:{tid}" if tid else "",
    )


def _super_chat(d: dict[str, Any], room: str) -> ChatEvent:
    sc_id = f.text(d.get("id"), "SUPER_CHAT_MESSAGE.id")
    info = f.obj(d.get("user_info", {}), "SUPER_CHAT_MESSAGE.user_info")
    badges: list[str] = []
    medal = d.get("medal_info")
    if isinstance(medal, dict):
        badges += _medal_badge(medal.get("medal_name"), medal.get("medal_level"))
    badges += _guard_badge(info.get("guard_level", 0))
    badges += _level_badge(info.get("user_level", 0))
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d.get("uid"), info.get("uname"), badges),
        kind=EventKind.SUPER_CHAT,
        text=f.text(d.get("message"), "SUPER_CHAT_MESSAGE.message"),
        amount=f.number(d.get("price"), "SUPER_CHAT_MESSAGE.price"),
        currency="CNY",
        timestamp=when(f.number(d.get("start_time", d.get("ts")), "SUPER_CHAT_MESSAGE.start_time", 0.0)),
        msg_id=f"sc:{sc_id}",
    )


def _guard(cmd: str, d: dict[str, Any], room: str) -> ChatEvent:
    level = f.integer(d.get("guard_level"), f"{cmd}.guard_level")
    num = max(1, f.integer(d.get("num"), f"{cmd}.num", 1))
    unit = d.get("unit") if isinstance(d.get("unit"), str) else "月"
    role = GUARD_NAMES.get(level) or f.text(d.get("role_name", d.get("gift_name")), f"{cmd}.role_name", "大航海")
    what = f"开通了{role}" if num == 1 else f"开通了{num}个{unit}{role}"
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d.get("uid"), d.get("username"), _guard_badge(level)),
        kind=EventKind.GUARD,
        text=what,
        gift=role,
        count=num,
        amount=f.number(d.get("price"), f"{cmd}.price", 0.0) * (num if cmd == "GUARD_BUY" else 1) / 1000.0,
        currency="CNY",
        timestamp=when(f.number(d.get("start_time"), f"{cmd}.start_time", 0.0)),
        msg_id=f"guard:{f.text(d.get('payflow_id', ''), 'payflow_id', '')}" if d.get("payflow_id") else "",
    )


def _read_varint(b: bytes, pos: int) -> tuple[int, int]:
    val = shift = 0
    while True:
        if pos >= len(b) or shift > 63:
            raise ProtocolError(f"INTERACT_WORD_V2.pb: truncated varint at byte {pos}")
        byte = b[pos]
        pos += 1
        val |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return val, pos


def _pb_fields(b: bytes) -> dict[int, int | bytes]:
    """The top-level scalar/bytes fields of a protobuf message (last one wins); groups are refused."""
    out: dict[int, int | bytes] = {}
    pos = 0
    while pos < len(b):
        key, pos = _read_varint(b, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], pos = _read_varint(b, pos)
        elif wire == 2:
            ln, pos = _read_varint(b, pos)
            if pos + ln > len(b):
                raise ProtocolError(f"INTERACT_WORD_V2.pb: field {num} wants {ln} bytes at {pos}, {len(b)} total")
            out[num], pos = b[pos : pos + ln], pos + ln
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ProtocolError(f"INTERACT_WORD_V2.pb: unsupported wire type {wire} at byte {pos}")
    return out


def _interact(cmd: str, d: dict[str, Any], room: str) -> ChatEvent | None:
    if cmd == "INTERACT_WORD_V2" and "pb" in d:
        # Protobuf of the old JSON fields in order: uid=1, uname=2, msg_type=5, timestamp=7 (unverified).
        try:
            raw = base64.b64decode(f.text(d["pb"], f"{cmd}.pb"), validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProtocolError(f"{cmd}.pb is not base64: {e}") from e
        pb = _pb_fields(raw)
        name = pb.get(2, b"")
        d = {
            "uid": pb.get(1, 0),
            "uname": name.decode("utf-8", "replace") if isinstance(name, bytes) else "",
            "msg_type": pb.get(5, 0),
            "timestamp": pb.get(7, 0),
        }
    what = INTERACT_TEXT.get(f.integer(d.get("msg_type"), f"{cmd}.msg_type", 0))
    if what is None:
        return None
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d.get("uid"), d.get("uname"), []),
        kind=EventKind.SYSTEM,
        text=what,
        timestamp=when(f.number(d.get("timestamp"), f"{cmd}.timestamp", 0.0)),
    )


def decode_command(
    o: dict[str, Any], room: str = "", options: DecodeOptions = DecodeOptions()
) -> tuple[ChatEvent | Removal, ...] | None:
    """Events of one command object; ``()`` for a known command with nothing to say, ``None`` for an unknown cmd.

    A tuple because one SUPER_CHAT_MESSAGE_DELETE removes several super chats. Raises only ``ProtocolError``.
    """
    cmd_raw = o.get("cmd")
    if not isinstance(cmd_raw, str):
        raise ProtocolError(f"command has cmd {f.show(cmd_raw)}; expected a string")
    cmd = cmd_raw.split(":", 1)[0]  # "DANMU_MSG:4:0:2:2:2:0" → "DANMU_MSG"
    try:
        if cmd == "DANMU_MSG":
            ev = _danmaku(o, room, options)
            return (ev,) if ev else ()
        if cmd in IGNORED_CMDS:
            return ()
        if cmd not in ("SEND_GIFT", "SUPER_CHAT_MESSAGE", "SUPER_CHAT_MESSAGE_DELETE", "GUARD_BUY", "USER_TOAST_MSG",
                       "INTERACT_WORD", "INTERACT_WORD_V2"):  # fmt: skip
            return None
        d = f.obj(o.get("data"), f"{cmd}.data")
        if cmd == "SEND_GIFT":
            return (_gift(d, room),)
        if cmd == "SUPER_CHAT_MESSAGE":
            return (_super_chat(d, room),)
        if cmd == "SUPER_CHAT_MESSAGE_DELETE":
            ids = f.arr(d.get("ids"), f"{cmd}.data.ids")
            return tuple(Removal(PLATFORM, msg_id=f"sc:{f.text(i, f'{cmd}.data.ids[]')}") for i in ids)
        if cmd in ("GUARD_BUY", "USER_TOAST_MSG"):
            return (_guard(cmd, d, room),)
        if not options.interact:
            return ()
        ev = _interact(cmd, d, room)
        return (ev,) if ev else ()
    except RecursionError as e:  # absurdly nested JSON
        raise ProtocolError(f"{cmd}: nested too deeply") from e


@dataclass
class CommandDecoder:
    """Stateful wrapper: counts unknown cmds, drops the duplicate of a guard purchase.

    One purchase arrives as both GUARD_BUY and USER_TOAST_MSG; the second of the pair (same uid and guard
    level, start times within ``guard_dedup_s``) is dropped. At most ``max_recent_guards`` purchases are kept.
    """

    room: str = ""
    options: DecodeOptions = DecodeOptions()
    guard_dedup_s: float = 10.0
    max_recent_guards: int = 64
    unknown: Counter[str] = field(default_factory=Counter)
    _recent_guards: list[tuple[str, str, float]] = field(default_factory=list)

    def decode(self, o: dict[str, Any]) -> tuple[ChatEvent | Removal, ...]:
        out = decode_command(o, self.room, self.options)
        if out is None:
            self.unknown[str(o.get("cmd"))[:64]] += 1
            return ()
        return tuple(ev for ev in out if not self._duplicate_guard(ev))

    def _duplicate_guard(self, ev: ChatEvent | Removal) -> bool:
        if not isinstance(ev, ChatEvent) or ev.kind is not EventKind.GUARD:
            return False
        level = next((b for b in ev.user.badges if b.startswith("guard:")), "")
        for i, (uid, lv, ts) in enumerate(self._recent_guards):
            if uid == ev.user.id and lv == level and abs(ts - ev.timestamp) <= self.guard_dedup_s:
                del self._recent_guards[i]  # a pair is deduplicated once; a later purchase speaks again
                return True
        self._recent_guards.append((ev.user.id, level, ev.timestamp))
        del self._recent_guards[: -self.max_recent_guards]
        return False
