"""Pure request/response helpers for the Bilibili web HTTP side: room id, buvid, WBI signing, danmu info.

Nothing here does I/O: URLs are built, JSON replies are checked and turned into frozen dataclasses, and every
unusable reply raises ``ApiError`` (a ``RemoteError``) or ``ProtocolError`` saying what came back.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ishow.errors import ProtocolError, RemoteError
from ishow.sources.bilibili import fields as f

LIVE_API = "https://api.live.bilibili.com"
MAIN_API = "https://api.bilibili.com"
FALLBACK_HOST = "broadcastlv.chat.bilibili.com"
ROOM_NOT_FOUND = 60004
WBI_REJECTED = -352  # risk control: usually stale WBI keys or a missing buvid

# The documented WBI mixin-key permutation: mixin_key = "".join(raw[i] for i in TABLE)[:32], raw = img_key+sub_key.
MIXIN_KEY_ENC_TAB = (
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49,
    33, 9, 42, 19, 29, 28, 14, 39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40,
    61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25, 54, 21, 56, 59, 6, 63, 57, 62, 11,
    36, 20, 34, 44, 52,
)  # fmt: skip
_WBI_STRIP = str.maketrans("", "", "!'()*")


class ApiError(RemoteError):
    """A Bilibili API answered with a non-zero ``code``."""

    def __init__(self, what: str, code: int, message: str) -> None:
        super().__init__(f"{what}: code {code}: {message or '(no message)'}")
        self.what = what
        self.code = code


@dataclass(frozen=True)
class Endpoints:
    live: str = LIVE_API  # api.live.bilibili.com: room_init, getDanmuInfo
    main: str = MAIN_API  # api.bilibili.com: finger/spi, web-interface/nav

    @classmethod
    def from_base(cls, api_base: str = "") -> Endpoints:
        """One override for both hosts (tests serve everything from one local server)."""
        base = api_base.rstrip("/")
        return cls(base, base) if base else cls()

    def room_init(self, room: int) -> str:
        return f"{self.live}/room/v1/Room/room_init?id={room}"

    def spi(self) -> str:
        return f"{self.main}/x/frontend/finger/spi"

    def nav(self) -> str:
        return f"{self.main}/x/web-interface/nav"

    def danmu_info(self, room_id: int, keys: WbiKeys, wts: int) -> str:
        """The signed getDanmuInfo URL; send it as is (already encoded)."""
        query = wbi_sign({"id": room_id, "type": 0, "web_location": "444.8"}, keys, wts)
        return f"{self.live}/xlive/web-room/v1/index/getDanmuInfo?{query}"


@dataclass(frozen=True)
class RoomInfo:
    room_id: int
    short_id: int = 0
    uid: int = 0
    live_status: int = 0


@dataclass(frozen=True)
class WbiKeys:
    img_key: str
    sub_key: str

    @property
    def mixin_key(self) -> str:
        return mixin_key(self.img_key + self.sub_key)


@dataclass(frozen=True)
class Host:
    host: str
    port: int = 2243
    wss_port: int = 443
    ws_port: int = 2244


@dataclass(frozen=True)
class DanmuInfo:
    token: str
    hosts: tuple[Host, ...]

    def __repr__(self) -> str:  # the token is a credential for this room: keep it out of logs
        return f"DanmuInfo(token=<{len(self.token)} chars>, hosts={self.hosts!r})"


def parse_room(room: str | int) -> int:
    """A room id from ``"12345"`` or a live.bilibili.com URL."""
    s = str(room).strip()
    m = re.fullmatch(r"(?:https?://)?live\.bilibili\.com/(?:h5/)?(\d+)(?:[/?#].*)?", s) or re.fullmatch(r"(\d+)", s)
    if not m or int(m.group(1)) <= 0:
        raise ProtocolError(f"room {s!r}: expected a positive room number or a live.bilibili.com/<room> URL")
    return int(m.group(1))


def reply_json(body: bytes, what: str) -> object:
    """An HTTP reply body as JSON; bad UTF-8, bad JSON, 4300+-digit numbers and absurd nesting → ProtocolError."""
    try:
        reply: object = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"{what}: expected a JSON body, got {body[:120]!r}") from e
    return reply


def check(reply: object, what: str, *, allow: tuple[int, ...] = ()) -> dict[str, Any]:
    """The ``data`` object of a ``{"code": 0, "data": ...}`` reply."""
    o = f.obj(reply, what)
    code = f.integer(o.get("code"), f"{what}.code")
    if code != 0 and code not in allow:
        msg = o.get("message", o.get("msg", ""))
        raise ApiError(what, code, msg if isinstance(msg, str) else f.show(msg))
    return f.obj(o.get("data"), f"{what}.data")


def parse_room_init(reply: object) -> RoomInfo:
    d = check(reply, "room_init")
    return RoomInfo(
        room_id=f.integer(d.get("room_id"), "room_init.data.room_id"),
        short_id=f.integer(d.get("short_id"), "room_init.data.short_id", 0),
        uid=f.integer(d.get("uid"), "room_init.data.uid", 0),
        live_status=f.integer(d.get("live_status"), "room_init.data.live_status", 0),
    )


def generated_buvid() -> str:
    """A buvid3 in the browser's format (a UUID, five digits, "infoc") for when finger/spi cannot give one."""
    return f"{str(uuid.uuid4()).upper()}{secrets.randbelow(100_000):05d}infoc"


def parse_buvid(reply: object) -> str:
    b3 = f.text(check(reply, "finger/spi").get("b_3"), "finger/spi.data.b_3")
    if not b3:
        raise ProtocolError("finger/spi.data.b_3 is empty; expected a buvid3")
    return b3


def _stem(url: object, path: str) -> str:
    name = f.text(url, path).rsplit("/", 1)[-1]
    stem = name.split(".", 1)[0]
    if not re.fullmatch(r"[0-9A-Za-z]{32}", stem):
        raise ProtocolError(f"{path}: {name!r} does not name a 32-character WBI key file")
    return stem


def parse_wbi_keys(reply: object) -> WbiKeys:
    """``data.wbi_img`` of web-interface/nav (present even when the reply is -101 "not logged in")."""
    d = check(reply, "nav", allow=(-101,))
    img = f.obj(d.get("wbi_img"), "nav.data.wbi_img")
    img_key = _stem(img.get("img_url"), "nav.data.wbi_img.img_url")
    return WbiKeys(img_key, _stem(img.get("sub_url"), "nav.data.wbi_img.sub_url"))


def mixin_key(raw: str) -> str:
    if len(raw) != 64:
        raise ProtocolError(f"WBI img_key+sub_key has {len(raw)} characters; expected 64")
    return "".join(raw[i] for i in MIXIN_KEY_ENC_TAB)[:32]


def wbi_query(params: Mapping[str, str | int | float]) -> str:
    """Sorted ``k=v&...``: values stripped of ``!'()*`` and percent-encoded like JS ``encodeURIComponent``."""
    items = sorted((str(k), str(v).translate(_WBI_STRIP)) for k, v in params.items())
    return "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in items)


def wbi_sign(params: Mapping[str, str | int | float], keys: WbiKeys, wts: int) -> str:
    """The query string with ``wts`` and ``w_rid = md5(query + mixin_key)`` appended."""
    query = wbi_query({**params, "wts": wts})
    w_rid = hashlib.md5((query + keys.mixin_key).encode(), usedforsecurity=False).hexdigest()
    return f"{query}&w_rid={w_rid}"


def parse_danmu_info(reply: object) -> DanmuInfo:
    d = check(reply, "getDanmuInfo")
    token = f.text(d.get("token"), "getDanmuInfo.data.token")
    hosts: list[Host] = []
    for i, h in enumerate(f.arr(d.get("host_list", []), "getDanmuInfo.data.host_list")):
        path = f"getDanmuInfo.data.host_list[{i}]"
        h = f.obj(h, path)
        hosts.append(
            Host(
                host=f.text(h.get("host"), f"{path}.host"),
                port=f.integer(h.get("port"), f"{path}.port", 2243),
                wss_port=f.integer(h.get("wss_port"), f"{path}.wss_port", 443),
                ws_port=f.integer(h.get("ws_port"), f"{path}.ws_port", 2244),
            )
        )
    return DanmuInfo(token, tuple(hosts))


def ws_urls(info: DanmuInfo, secure: bool = True) -> list[str]:
    """``wss://{host}:{wss_port}/sub`` per host (``ws://{host}:{ws_port}/sub`` when not ``secure``)."""
    hosts = info.hosts or (Host(FALLBACK_HOST),)
    if secure:
        return [f"wss://{h.host}:{h.wss_port}/sub" for h in hosts]
    return [f"ws://{h.host}:{h.ws_port}/sub" for h in hosts]


def cookie_value(cookie: str, name: str) -> str:
    """One value from a ``k=v; k2=v2`` cookie string ("" if absent)."""
    for part in cookie.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip()
    return ""


def mask(secret: str) -> str:
    """What logs show instead of a secret."""
    return f"<{len(secret)} chars>" if secret else "<none>"
