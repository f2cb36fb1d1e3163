"""Websocket chat input: other tools connect to ``path`` (default ``/ws/input``) on the daemon's own server.

Each text frame is one JSON object:

- chat: ``{"user": str, "text": str, "platform"?: str, "kind"?: "danmaku"|"super_chat"|"gift"|...,
  "amount"?: number, "currency"?: str, "gift"?: str, "count"?: int, "id"?: str, "uid"?: str,
  "moderator"?: bool}`` (``"type": "chat"`` optional) → a ChatEvent;
- removal: ``{"type": "remove", "id"?: str, "uid"?: str, "platform"?: str}`` → a Removal of that message or of
  every message of that user (one of ``id``/``uid`` is required).

Trust: unless the source is configured ``trusted = true``, a frame's paid fields (``kind``, ``amount``, ``currency``,
``gift``, ``count``) and ``moderator`` are ignored (the frame is ordinary chat: any web page or local tool could
otherwise buy priority), and a platform name of a real platform source (bilibili, twitch, youtube) is refused, so an
untrusted tool can neither speak nor remove chat in that platform's name. Frames follow the same rules as the HTTP
API: JSON depth and integer size bounded, no control characters in any string, text valid Unicode.

A bad frame gets ``{"type": "error", "error": "..."}`` back and the connection stays open; good frames get no
reply (fire-and-forget senders never fill their receive buffer). Auth is the server's token middleware, which
guards every ``/ws/*`` path; the configured path must therefore start with ``/ws/``. Parsing is pure
(``parse_frame``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from ishow.boundary import control_problem, loads_limited, valid_text
from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, InputError
from ishow.events import ChatEvent, EventKind, Removal, User, new_id
from ishow.sources.base import Emit, Source

log = structlog.get_logger(__name__)

DEFAULT_PATH = "/ws/input"
DEFAULT_PLATFORM = "websocket"
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 2000
YIELD_EVERY = 32  # frames handled between yields to the event loop during a burst
_KINDS = ", ".join(k.value for k in EventKind)
RESERVED_PLATFORMS = frozenset({"bilibili", "bilibili_open", "twitch", "youtube"})


def _str(obj: dict[str, Any], key: str, *, required: bool = False, max_len: int = 64, blank_ok: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"'{key}' is required")
        return ""
    if not isinstance(value, str):
        raise InputError(f"'{key}' must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InputError(f"'{key}' is too long: {len(value)} characters, the limit is {max_len}")
    if required and not blank_ok and not value.strip():
        raise InputError(f"'{key}' is empty")
    problem = control_problem(key, value)
    if problem:
        raise InputError(problem)
    return valid_text(value)


def untrusted(item: ChatEvent | Removal) -> ChatEvent | Removal:
    """What an untrusted input may say: ordinary chat, in no real platform's name. Raises InputError for a
    reserved platform name."""
    if item.platform in RESERVED_PLATFORMS:
        raise InputError(
            f"'platform' {item.platform!r} is reserved for the {item.platform} source; an input configured "
            "`trusted = true` may relay platform chat"
        )
    if isinstance(item, Removal):
        return item
    return dataclasses.replace(
        item,
        kind=EventKind.DANMAKU,
        amount=0.0,
        currency="",
        gift="",
        count=0,
        user=dataclasses.replace(item.user, moderator=False),
    )


def parse_frame(data: str, default_platform: str = DEFAULT_PLATFORM) -> ChatEvent | Removal:
    """One text frame → ChatEvent or Removal. Raises InputError naming the field and what was wrong."""
    obj = loads_limited(data, "frame")
    if not isinstance(obj, dict):
        raise InputError(f"frame must be a JSON object, got {type(obj).__name__}")
    frame_type = obj.get("type", "chat")
    platform = _str(obj, "platform", max_len=32) or default_platform
    if frame_type == "remove":
        msg_id, uid = _str(obj, "id", max_len=128), _str(obj, "uid", max_len=128)
        if not msg_id and not uid:
            raise InputError("a 'remove' frame needs 'id' (one message) or 'uid' (all of a user's messages)")
        return Removal(platform, msg_id=msg_id, user_id="" if msg_id else uid)
    if frame_type != "chat":
        raise InputError(f'\'type\' must be "chat" or "remove", got {json.dumps(frame_type)[:40]}')
    user = _str(obj, "user", required=True)
    text = _str(obj, "text", required=True, max_len=MAX_TEXT_CHARS, blank_ok=True)  # gifts may have no text
    kind_value = obj.get("kind", "danmaku")
    try:
        kind = EventKind(kind_value)
    except ValueError as e:
        raise InputError(f"'kind' must be one of {_KINDS}; got {json.dumps(kind_value)[:40]}") from e
    amount = obj.get("amount", 0)
    if isinstance(amount, int) and abs(amount) > 2**63:  # math.isfinite and float() would overflow
        raise InputError(f"'amount' is too large: a {len(str(abs(amount)))}-digit integer")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        raise InputError(f"'amount' must be a non-negative number, got {json.dumps(amount)[:40]}")
    count = obj.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError(f"'count' must be a non-negative integer, got {json.dumps(count)[:40]}")
    moderator = obj.get("moderator", False)
    if not isinstance(moderator, bool):
        raise InputError(f"'moderator' must be true or false, got {json.dumps(moderator)[:40]}")
    return ChatEvent(
        platform=platform,
        room=platform,
        user=User(id=_str(obj, "uid", max_len=128) or user, name=user, moderator=moderator),
        kind=kind,
        text=text,
        amount=float(amount),
        currency=_str(obj, "currency", max_len=16),
        msg_id=_str(obj, "id", max_len=128) or new_id("ws"),
        gift=_str(obj, "gift", max_len=64),
        count=count,
    )


class WebsocketInputSource(Source):
    def __init__(
        self, name: str, path: str = DEFAULT_PATH, platform: str = DEFAULT_PLATFORM, *, trusted: bool = False
    ) -> None:
        super().__init__(name)
        if not path.startswith("/ws/") or path == "/ws/obs":
            raise ValueError(
                f"the path must start with /ws/ (so the server's token guards it) and not be /ws/obs; got {path!r}"
            )
        self.path = path
        self.platform = platform
        self.trusted = trusted
        self._emit: Emit | None = None
        self.clients = 0
        self.frames = 0
        self.bad_frames = 0

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> WebsocketInputSource:
        try:
            return cls(name, cfg.path or DEFAULT_PATH, trusted=cfg.trusted)
        except ValueError as e:
            raise ConfigError(f"sources.{name}.path: {e}") from e

    def routes(self) -> list[web.RouteDef]:
        return [web.get(self.path, self.handle)]

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self.state = "listening"
        try:
            await asyncio.Event().wait()  # the handler emits; this task only marks the source as running
        finally:
            self._emit = None
            self.state = "finished"

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
        await ws.prepare(request)
        self.clients += 1
        peer = request.remote or "?"
        log.info("websocket input client connected", source=self.name, peer=peer)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    error = self._frame(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    error = "binary frames are not accepted; send JSON text frames"
                else:  # ERROR (e.g. a frame over the size limit): aiohttp closes the connection itself
                    break
                if error:
                    self.bad_frames += 1
                    await ws.send_json({"type": "error", "error": error})
                if self.frames % YIELD_EVERY == 0:
                    # buffered frames are read without suspending: let other requests (/healthz, OBS) run
                    await asyncio.sleep(0)
        finally:
            self.clients -= 1
            log.info("websocket input client left", source=self.name, peer=peer)
        return ws

    def _frame(self, data: str) -> str:
        """Emit one frame's event; return an error message for the sender, or "" when it was taken."""
        self.frames += 1
        try:
            item = parse_frame(data, self.platform)
            if not self.trusted:
                item = untrusted(item)
        except InputError as e:
            return str(e)
        if self._emit is None:
            return "the websocket input source is not running"
        self._emit(item)
        return ""
