"""Bilibili open platform (直播开放平台, 身份码) — pure: request signing, app start/heartbeat/end bodies, replies
and LIVE_OPEN_PLATFORM_* commands → events.

Signing: the six ``x-bili-*`` headers sorted by name as ``name:value`` lines joined by ``\\n`` (no trailing
newline), ``Authorization`` = hex HMAC-SHA256(access_key_secret, that string); ``x-bili-content-md5`` is the hex
MD5 of the exact request body. The websocket speaks the packet format of ``protocol`` with ``auth_body`` as op 7.
Amounts: gift ``price`` and guard ``price`` are in 1/1000 CNY, super chat ``rmb`` is CNY.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ishow.errors import ProtocolError, RemoteError
from ishow.events import ChatEvent, EventKind, Removal, User
from ishow.sources.bilibili import fields as f
from ishow.sources.bilibili.commands import GUARD_NAMES, when
from ishow.sources.bilibili.gifts import gift_text

OPEN_API = "https://live-open.biliapi.com"
PLATFORM = "bilibili"
START_PATH = "/v2/app/start"
HEARTBEAT_PATH = "/v2/app/heartbeat"
END_PATH = "/v2/app/end"


class OpenApiError(RemoteError):
    """The open platform answered with a non-zero ``code``."""

    def __init__(self, what: str, code: int, message: str) -> None:
        super().__init__(f"open platform {what}: code {code}: {message or '(no message)'}")
        self.what = what
        self.code = code


def content_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def signature(secret: str, sign_headers: dict[str, str]) -> str:
    """hex HMAC-SHA256 over the ``x-bili-*`` headers sorted by name, ``name:value`` joined by newlines."""
    text = "\n".join(f"{k}:{v}" for k, v in sorted(sign_headers.items()) if k.startswith("x-bili-"))
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def signed_headers(body: bytes, key_id: str, secret: str, timestamp: int, nonce: str) -> dict[str, str]:
    """All headers of one open-platform POST (``Authorization`` is derived from the secret: never log it)."""
    h = {
        "x-bili-accesskeyid": key_id,
        "x-bili-content-md5": content_md5(body),
        "x-bili-signature-method": "HMAC-SHA256",
        "x-bili-signature-nonce": nonce,
        "x-bili-signature-version": "1.0",
        "x-bili-timestamp": str(timestamp),
    }
    return {
        "Accept": "application/json",
        "Content-Type": "application/json",
        **h,
        "Authorization": signature(secret, h),
    }


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def start_body(code: str, app_id: int) -> bytes:
    return _body({"code": code, "app_id": app_id})


def heartbeat_body(game_id: str) -> bytes:
    return _body({"game_id": game_id})


def end_body(game_id: str, app_id: int) -> bytes:
    return _body({"game_id": game_id, "app_id": app_id})


@dataclass(frozen=True)
class OpenGame:
    """One started app session: ``auth_body`` is a credential (kept out of ``repr``)."""

    game_id: str
    wss_links: tuple[str, ...]
    auth_body: str
    room_id: int = 0
    anchor: str = ""

    def __repr__(self) -> str:
        return (
            f"OpenGame(game_id={self.game_id!r}, wss_links={self.wss_links!r}, auth_body=<{len(self.auth_body)} "
            f"chars>, room_id={self.room_id}, anchor={self.anchor!r})"
        )


def reply_json(raw: bytes, path: str) -> object:
    """An open-platform HTTP reply body as JSON; anything else (bad UTF-8, huge or absurdly nested numbers and
    arrays) raises ``ProtocolError`` naming the path and showing the body's start."""
    try:
        reply: object = json.loads(raw)
    except (ValueError, RecursionError) as e:  # ValueError covers JSONDecodeError, bad UTF-8 and huge ints
        raise ProtocolError(f"open platform {path}: expected a JSON body, got {raw[:120]!r}") from e
    return reply


def check_reply(reply: object, what: str) -> dict[str, Any]:
    o = f.obj(reply, what)
    code = f.integer(o.get("code"), f"{what}.code")
    if code != 0:
        msg = o.get("message", o.get("msg", ""))
        raise OpenApiError(what, code, msg if isinstance(msg, str) else f.show(msg))
    data = o.get("data", {})
    return f.obj(data if data is not None else {}, f"{what}.data")


def parse_start(reply: object) -> OpenGame:
    d = check_reply(reply, "app/start")
    game = f.obj(d.get("game_info"), "app/start.data.game_info")
    ws = f.obj(d.get("websocket_info"), "app/start.data.websocket_info")
    links = tuple(f.text(x, "app/start.data.websocket_info.wss_link[]") for x in f.arr(ws.get("wss_link"), "wss_link"))
    if not links:
        raise ProtocolError("app/start.data.websocket_info.wss_link is empty; expected at least one URL")
    anchor = d.get("anchor_info")
    anchor = anchor if isinstance(anchor, dict) else {}
    return OpenGame(
        game_id=f.text(game.get("game_id"), "app/start.data.game_info.game_id"),
        wss_links=links,
        auth_body=f.text(ws.get("auth_body"), "app/start.data.websocket_info.auth_body"),
        room_id=f.integer(anchor.get("room_id"), "anchor_info.room_id", 0),
        anchor=f.text(anchor.get("uname"), "anchor_info.uname", ""),
    )


def _badges(d: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    name = d.get("fans_medal_name")
    if isinstance(name, str) and name:
        out.append(f"medal:{name}:{f.integer(d.get('fans_medal_level'), 'fans_medal_level', 0)}")
    guard = f.integer(d.get("guard_level"), "guard_level", 0)
    if guard > 0:
        out.append(f"guard:{guard}")
    return tuple(out)


def _user(d: dict[str, Any], extra: tuple[str, ...] = (), moderator: bool = False) -> User:
    open_id = d.get("open_id")
    uid = open_id if isinstance(open_id, str) and open_id else f.text(d.get("uid"), "uid", "")
    return User(id=uid, name=f.text(d.get("uname"), "uname", ""), badges=extra, moderator=moderator)


def _dm(d: dict[str, Any], room: str) -> ChatEvent | None:
    badges = list(_badges(d))
    if f.integer(d.get("dm_type"), "DM.dm_type", 0) == 1:
        return None  # an emoticon/sticker: nothing to read aloud
    reply = d.get("reply_uname")
    if isinstance(reply, str) and reply:
        badges.append(f"reply_to:{reply}")
    admin = f.integer(d.get("is_admin"), "DM.is_admin", 0) == 1
    if admin:
        badges.append("admin")
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d, tuple(badges), moderator=admin),
        kind=EventKind.DANMAKU,
        text=f.text(d.get("msg"), "DM.msg"),
        timestamp=when(f.number(d.get("timestamp"), "DM.timestamp", 0.0)),
        msg_id=f"dm:{f.text(d.get('msg_id'), 'DM.msg_id', '')}",
    )


def _gift(d: dict[str, Any], room: str) -> ChatEvent:
    num = max(1, f.integer(d.get("gift_num"), "SEND_GIFT.gift_num", 1))
    paid = d.get("paid", True) is True
    price = f.number(d.get("price"), "SEND_GIFT.price", 0.0)
    name = f.text(d.get("gift_name"), "SEND_GIFT.gift_name")
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d, _badges(d)),
        kind=EventKind.GIFT,
        text=gift_text(name, num),
        gift=name,
        count=num,
        amount=price * num / 1000.0 if paid else 0.0,
        currency="CNY" if paid else "",
        timestamp=when(f.number(d.get("timestamp"), "SEND_GIFT.timestamp", 0.0)),
        msg_id=f"gift:{f.text(d.get('msg_id'), 'SEND_GIFT.msg_id', '')}",
    )


def _super_chat(d: dict[str, Any], room: str) -> ChatEvent:
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(d, _badges(d)),
        kind=EventKind.SUPER_CHAT,
        text=f.text(d.get("message"), "SUPER_CHAT.message"),
        amount=f.number(d.get("rmb"), "SUPER_CHAT.rmb"),
        currency="CNY",
        timestamp=when(f.number(d.get("start_time", d.get("timestamp")), "SUPER_CHAT.start_time", 0.0)),
        msg_id=f"sc:{f.text(d.get('message_id'), 'SUPER_CHAT.message_id')}",
    )


def _guard(d: dict[str, Any], room: str) -> ChatEvent:
    level = f.integer(d.get("guard_level"), "GUARD.guard_level")
    num = max(1, f.integer(d.get("guard_num"), "GUARD.guard_num", 1))
    unit = d.get("guard_unit") if isinstance(d.get("guard_unit"), str) else "月"
    role = GUARD_NAMES.get(level, "大航海")
    info = f.obj(d.get("user_info", {}), "GUARD.user_info")
    return ChatEvent(
        platform=PLATFORM,
        room=room,
        user=_user(info, (*_badges({**d, "guard_level": level}),)),
        kind=EventKind.GUARD,
        text=f"开通了{role}" if num == 1 else f"开通了{num}个{unit}{role}",
        gift=role,
        count=num,
        amount=f.number(d.get("price"), "GUARD.price", 0.0) * num / 1000.0,
        currency="CNY",
        timestamp=when(f.number(d.get("timestamp"), "GUARD.timestamp", 0.0)),
        msg_id=f"guard:{f.text(d.get('msg_id'), 'GUARD.msg_id', '')}",
    )


KNOWN_OPEN_CMDS = (
    "LIVE_OPEN_PLATFORM_DM",
    "LIVE_OPEN_PLATFORM_SEND_GIFT",
    "LIVE_OPEN_PLATFORM_SUPER_CHAT",
    "LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL",
    "LIVE_OPEN_PLATFORM_GUARD",
)


def decode_open_command(o: dict[str, Any], room: str = "") -> tuple[ChatEvent | Removal, ...] | None:
    """Events of one open-platform command; ``None`` for an unknown cmd. Raises only ``ProtocolError``."""
    cmd = o.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(f"command has cmd {f.show(cmd)}; expected a string")
    if cmd not in KNOWN_OPEN_CMDS:
        return None
    try:
        d = f.obj(o.get("data"), f"{cmd}.data")
        if cmd == "LIVE_OPEN_PLATFORM_DM":
            ev = _dm(d, room)
            return (ev,) if ev else ()
        if cmd == "LIVE_OPEN_PLATFORM_SEND_GIFT":
            return (_gift(d, room),)
        if cmd == "LIVE_OPEN_PLATFORM_SUPER_CHAT":
            return (_super_chat(d, room),)
        if cmd == "LIVE_OPEN_PLATFORM_SUPER_CHAT_DEL":
            ids = f.arr(d.get("message_ids"), f"{cmd}.data.message_ids")
            return tuple(Removal(PLATFORM, msg_id=f"sc:{f.text(i, f'{cmd}.message_ids[]')}") for i in ids)
        return (_guard(d, room),)
    except RecursionError as e:
        raise ProtocolError(f"{cmd}: nested too deeply") from e


@dataclass
class OpenCommandDecoder:
    room: str = ""
    unknown: Counter[str] = field(default_factory=Counter)

    def decode(self, o: dict[str, Any]) -> tuple[ChatEvent | Removal, ...]:
        out = decode_open_command(o, self.room)
        if out is None:
            self.unknown[str(o.get("cmd"))[:64]] += 1
            return ()
        return out
