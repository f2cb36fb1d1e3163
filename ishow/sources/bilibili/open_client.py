"""Bilibili open platform (身份码) live chat: app start → websocket (same packets) + app heartbeat → app end.

Only moves bytes and time; signing and parsing live in ``open_protocol`` and ``protocol``. The access key
secret, the 身份码 and the websocket ``auth_body`` are secrets: logs never show them.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import Self

import aiohttp
import structlog

from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, RemoteError
from ishow.sources.base import Emit, Source
from ishow.sources.bilibili import open_protocol as op
from ishow.sources.bilibili.api import mask
from ishow.sources.bilibili.protocol import GiftMerger, raw_auth_packet
from ishow.sources.bilibili.wsconn import (
    USER_AGENT,
    AuthRejected,
    Backoff,
    PacketDelivery,
    Stats,
    Timeouts,
    ws_session,
)

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUTS = Timeouts()
APP_HEARTBEAT_S = 20.0
APP_HEARTBEAT_MAX_MISSES = 2  # the platform expires a game after about a minute without heartbeats


class BilibiliOpenSource(Source, PacketDelivery):
    """Chat of the room whose streamer gave us their 身份码. ``state`` as ``BilibiliSource``."""

    def __init__(
        self,
        name: str,
        *,
        app_id: int,
        access_key_id: str,
        access_key_secret: str,
        code: str,
        api_base: str = "",
        ws_url: str = "",
        gift_merge_s: float = 3.0,
        reconnect_max_s: float = 30.0,
        backoff_initial_s: float = 1.0,
        app_heartbeat_s: float = APP_HEARTBEAT_S,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        super().__init__(name)
        missing = [k for k, v in (("app_id", app_id), ("access_key_id", access_key_id),
                                  ("access_key_secret", access_key_secret), ("code", code)) if not v]  # fmt: skip
        if missing:
            raise ValueError(f"the open platform needs {', '.join(missing)}")
        self.app_id = app_id
        self._key_id = access_key_id
        self._secret = access_key_secret
        self._code = code
        self.api_base = (api_base or op.OPEN_API).rstrip("/")
        self.ws_url = ws_url
        self.app_heartbeat_s = app_heartbeat_s
        self.timeouts = timeouts
        self.backoff = Backoff(backoff_initial_s, max(backoff_initial_s, reconnect_max_s), rng or random.Random())
        self.merger = GiftMerger(window_s=gift_merge_s, max_hold_s=max(10.0, 3 * gift_merge_s))
        self.decoder = op.OpenCommandDecoder()
        self.stats = Stats()
        self.game: op.OpenGame | None = None
        self._clock = clock
        self._wall = wall
        self._nonce = nonce
        self._rotation = 0
        self._emit: Emit | None = None

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> Self:
        try:
            return cls(
                name,
                app_id=cfg.app_id,
                access_key_id=cfg.access_key_id,
                access_key_secret=cfg.access_key_secret,
                code=cfg.code,
                api_base=cfg.api_base,
                ws_url=cfg.ws_url,
                gift_merge_s=cfg.gift_merge_s,
                reconnect_max_s=cfg.reconnect_max_s,
            )
        except ValueError as e:
            raise ConfigError(f"sources.{name}: {e}") from e

    def __repr__(self) -> str:
        return (
            f"BilibiliOpenSource(name={self.name!r}, app_id={self.app_id}, access_key_id={mask(self._key_id)}, "
            f"access_key_secret={mask(self._secret)}, code={mask(self._code)})"
        )

    # ------------------------------------------------------------------ HTTP

    async def _post(self, http: aiohttp.ClientSession, path: str, body: bytes) -> object:
        """POST a signed JSON body; returns the parsed JSON reply (non-200 or non-JSON → ``RemoteError``)."""
        headers = op.signed_headers(body, self._key_id, self._secret, int(self._wall()), self._nonce())
        timeout = aiohttp.ClientTimeout(total=self.timeouts.http_s)
        async with http.post(self.api_base + path, data=body, headers=headers, timeout=timeout) as r:
            raw = await r.read()
            if r.status != 200:
                raise RemoteError(f"open platform {path}: HTTP {r.status}; body {raw[:120]!r}")
        return op.reply_json(raw, path)

    async def _start(self, http: aiohttp.ClientSession) -> op.OpenGame:
        game = op.parse_start(await self._post(http, op.START_PATH, op.start_body(self._code, self.app_id)))
        self.decoder.room = str(game.room_id) if game.room_id else ""
        log.info("bilibili open platform game started", source=self.name, game_id=game.game_id,
                 room_id=game.room_id, anchor=game.anchor)  # fmt: skip
        return game

    async def _end(self, http: aiohttp.ClientSession, game: op.OpenGame) -> None:
        """Tell the platform we are done (bounded; failures are logged, the game then simply expires)."""
        try:
            async with asyncio.timeout(self.timeouts.http_s):
                op.check_reply(await self._post(http, op.END_PATH, op.end_body(game.game_id, self.app_id)), "app/end")
        except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:
            log.warning("bilibili open platform app/end failed", source=self.name, game_id=game.game_id, error=str(e))
        else:
            log.info("bilibili open platform game ended", source=self.name, game_id=game.game_id)

    async def _app_heartbeat(self, http: aiohttp.ClientSession, game: op.OpenGame) -> None:
        """Every ``app_heartbeat_s``; returns (ending the session) on a refusal or too many misses in a row."""
        misses = 0
        while True:
            await asyncio.sleep(self.app_heartbeat_s)
            try:
                op.check_reply(await self._post(http, op.HEARTBEAT_PATH, op.heartbeat_body(game.game_id)),
                               "app/heartbeat")  # fmt: skip
                misses = 0
            except op.OpenApiError:
                raise  # the game is gone (expired or ended elsewhere): start a new one
            except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:
                misses += 1
                log.warning("bilibili open platform heartbeat failed", source=self.name, misses=misses, error=str(e))
                if misses >= APP_HEARTBEAT_MAX_MISSES:
                    raise

    # ------------------------------------------------------------------ websocket

    def _on_connected(self, url: str) -> None:
        self.state = "connected"
        self.backoff.reset()
        log.info("bilibili open platform connected", source=self.name, url=url)

    async def _attempt(self, http: aiohttp.ClientSession) -> str:
        game = self.game = await self._start(http)
        try:
            urls = [self.ws_url] if self.ws_url else list(game.wss_links)
            url = urls[self._rotation % len(urls)]
            session = asyncio.create_task(
                ws_session(http, url, raw_auth_packet(game.auth_body), self._on_packet,
                           lambda: self._on_connected(url), timeouts=self.timeouts, stats=self.stats,
                           headers={"User-Agent": USER_AGENT}),
                name=f"bilibili-open-ws:{self.name}",
            )  # fmt: skip
            beat = asyncio.create_task(self._app_heartbeat(http, game), name=f"bilibili-open-hb:{self.name}")
            try:
                await asyncio.wait([session, beat], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (session, beat):
                    t.cancel()
                await asyncio.wait([session, beat])
            failure = None if beat.cancelled() else beat.exception()
            if failure is not None:
                raise failure
            return session.result()
        finally:
            self.game = None
            await self._end(http, game)

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self.state = "connecting"
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as http:
            ticker = asyncio.create_task(self._tick_gifts(), name=f"bilibili-open-gifts:{self.name}")
            try:
                await self._reconnect_loop(http)
            finally:
                ticker.cancel()
                await asyncio.wait([ticker])
                for ev in self.merger.flush():  # pending merged gifts are paid events: emit, never drop
                    emit(ev)

    async def _reconnect_loop(self, http: aiohttp.ClientSession) -> None:
        while True:
            try:
                reason = await self._attempt(http)
                log.info("bilibili open platform connection ended", source=self.name, reason=reason)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:  # network or peer trouble
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.warning("bilibili open platform attempt failed", source=self.name, error=self.stats.last_error,
                            auth_rejected=isinstance(e, AuthRejected))  # fmt: skip
            except Exception:  # the reconnect boundary: a bug must not end the source; log it with its trace
                self.stats.last_error = "unexpected error (see log)"
                log.exception("bilibili open platform attempt crashed", source=self.name)
            self._rotation += 1
            self.state = "reconnecting"
            delay = self.backoff.next()
            log.info("bilibili open platform reconnecting", source=self.name, delay_s=round(delay, 2))
            await asyncio.sleep(delay)
