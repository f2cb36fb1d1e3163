"""Bilibili web live chat over the danmaku websocket: resolve the room, fetch a token, read, reconnect.

Only moves bytes and time; URLs, signing and parsing live in ``api`` and ``protocol``. The login cookie and the
danmaku token are secrets: they never reach a log line (``api.mask`` shows their length only).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, Self

import aiohttp
import structlog
import yarl

from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, IshowError, ProtocolError, RemoteError
from ishow.sources.base import Emit, Source
from ishow.sources.bilibili import api
from ishow.sources.bilibili.protocol import CommandDecoder, DecodeOptions, GiftMerger, auth_packet
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

WBI_KEYS_MAX_AGE_S = 3600.0
DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_OPTIONS = DecodeOptions()


async def get_json(http: aiohttp.ClientSession, url: str, what: str, timeout_s: float, **kw: Any) -> object:
    """GET ``url`` (already encoded) and return its JSON body; non-200 or non-JSON → ``RemoteError``."""
    async with http.get(yarl.URL(url, encoded=True), timeout=aiohttp.ClientTimeout(total=timeout_s), **kw) as r:
        body = await r.read()
        if r.status != 200:
            raise RemoteError(f"{what}: HTTP {r.status} from {r.url.host}; body {body[:120]!r}")
    return api.reply_json(body, what)


class BilibiliSource(Source, PacketDelivery):
    """Chat of one Bilibili live room. ``state``: connecting → connected ⇄ reconnecting; failed (room missing)."""

    def __init__(
        self,
        name: str,
        room: str | int,
        *,
        cookie: str = "",
        api_base: str = "",
        ws_url: str = "",
        gift_merge_s: float = 3.0,
        reconnect_max_s: float = 30.0,
        backoff_initial_s: float = 1.0,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        options: DecodeOptions = DEFAULT_OPTIONS,
        secure_ws: bool | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        self.room = api.parse_room(room)
        self._cookie = cookie.strip()
        self.endpoints = api.Endpoints.from_base(api_base)
        self.ws_url = ws_url
        # Real hosts use wss; a plain-http API override (a local test server) gets plain ws hosts.
        self.secure_ws = secure_ws if secure_ws is not None else not api_base.startswith("http://")
        self.timeouts = timeouts
        self.backoff = Backoff(backoff_initial_s, max(backoff_initial_s, reconnect_max_s), rng or random.Random())
        self.merger = GiftMerger(window_s=gift_merge_s, max_hold_s=max(10.0, 3 * gift_merge_s))
        self.decoder = CommandDecoder(options=options)
        self.stats = Stats()
        self._clock = clock
        self._wall = wall
        self.uid = int(api.cookie_value(self._cookie, "DedeUserID") or 0)
        self.room_id = 0  # the real (long) id, once resolved
        self._buvid = api.cookie_value(self._cookie, "buvid3")
        self._keys: api.WbiKeys | None = None
        self._keys_at = 0.0
        self._rotation = 0
        self.danmu_info_fetches = 0
        self._emit: Emit | None = None

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> Self:
        try:
            return cls(
                name,
                cfg.room,
                cookie=cfg.cookie,
                api_base=cfg.api_base,
                ws_url=cfg.ws_url,
                gift_merge_s=cfg.gift_merge_s,
                reconnect_max_s=cfg.reconnect_max_s,
            )
        except (ProtocolError, ValueError) as e:
            raise ConfigError(f"sources.{name}: {e}") from e

    def __repr__(self) -> str:
        return f"BilibiliSource(name={self.name!r}, room={self.room}, cookie={api.mask(self._cookie)})"

    # ------------------------------------------------------------------ HTTP

    def _cookie_header(self) -> dict[str, str]:
        parts = [self._cookie] if self._cookie else []
        if self._buvid and not api.cookie_value(self._cookie, "buvid3"):
            parts.append(f"buvid3={self._buvid}")
        return {"Cookie": "; ".join(parts)} if parts else {}

    async def _get(self, http: aiohttp.ClientSession, url: str, what: str) -> object:
        return await get_json(http, url, what, self.timeouts.http_s, headers=self._cookie_header())

    async def _danmu_info(self, http: aiohttp.ClientSession) -> api.DanmuInfo:
        if not self.room_id:
            info = api.parse_room_init(await self._get(http, self.endpoints.room_init(self.room), "room_init"))
            self.room_id = info.room_id
            self.decoder.room = str(info.room_id)
            log.info("bilibili room resolved", source=self.name, room=self.room, room_id=info.room_id,
                     live=info.live_status == 1)  # fmt: skip
        if not self._buvid:
            self._buvid = await self._fetch_buvid(http)
        if self._keys is None or self._clock() - self._keys_at > WBI_KEYS_MAX_AGE_S:
            self._keys = api.parse_wbi_keys(await self._get(http, self.endpoints.nav(), "nav"))
            self._keys_at = self._clock()
        url = self.endpoints.danmu_info(self.room_id, self._keys, int(self._wall()))
        self.danmu_info_fetches += 1
        try:
            return api.parse_danmu_info(await self._get(http, url, "getDanmuInfo"))
        except api.ApiError as e:
            if e.code == api.WBI_REJECTED:
                self._keys = None  # refetch the keys next time
            raise

    async def _fetch_buvid(self, http: aiohttp.ClientSession) -> str:
        """buvid3 from finger/spi; it is a best-effort cookie, so when that fails (404, a new layout, a timeout)
        one line says so and a generated one is used instead — the source connects either way."""
        try:
            return api.parse_buvid(await self._get(http, self.endpoints.spi(), "finger/spi"))
        except (IshowError, aiohttp.ClientError, TimeoutError) as e:
            buvid = api.generated_buvid()
            log.warning("bilibili buvid fetch failed; using a generated buvid3", source=self.name, error=str(e))
            return buvid

    # ------------------------------------------------------------------ websocket

    def _on_connected(self, url: str) -> None:
        self.state = "connected"
        self.backoff.reset()
        log.info("bilibili danmaku connected", source=self.name, room_id=self.room_id, url=url)

    async def _attempt(self, http: aiohttp.ClientSession) -> str:
        info = await self._danmu_info(http)
        urls = [self.ws_url] if self.ws_url else api.ws_urls(info, self.secure_ws)
        url = urls[self._rotation % len(urls)]
        auth = auth_packet(self.room_id, info.token, uid=self.uid, buvid=self._buvid)
        headers = {"User-Agent": USER_AGENT, "Origin": "https://live.bilibili.com"}
        return await ws_session(
            http, url, auth, self._on_packet, lambda: self._on_connected(url),
            timeouts=self.timeouts, stats=self.stats, headers=headers,
        )  # fmt: skip

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self.state = "connecting"
        headers = {"User-Agent": USER_AGENT, "Referer": "https://live.bilibili.com/"}
        async with aiohttp.ClientSession(headers=headers) as http:
            ticker = asyncio.create_task(self._tick_gifts(), name=f"bilibili-gifts:{self.name}")
            try:
                await self._reconnect_loop(http)
            finally:
                ticker.cancel()
                await asyncio.wait([ticker])
                for ev in self.merger.flush():  # merged gifts still pending are paid events: emit, never drop
                    emit(ev)

    async def _reconnect_loop(self, http: aiohttp.ClientSession) -> None:
        while True:
            rotate = True  # the next attempt asks the next host, unless the host was not at fault
            try:
                reason = await self._attempt(http)
                log.info("bilibili danmaku connection ended", source=self.name, reason=reason)
            except asyncio.CancelledError:
                raise
            except api.ApiError as e:
                if e.what == "room_init" and e.code == api.ROOM_NOT_FOUND:
                    self.state = "failed"
                    raise
                self._note_failure(e)
                rotate = False
            except AuthRejected as e:
                self._note_failure(e, "token rejected; fetching a new one" if e.bad_token else "")
                rotate = False
            except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:  # network or peer trouble
                self._note_failure(e)
            except Exception:  # the reconnect boundary: a bug must not end the source; log it with its trace
                self.stats.last_error = "unexpected error (see log)"
                log.exception("bilibili connection attempt crashed", source=self.name, room_id=self.room_id)
            self._rotation += rotate
            self.state = "reconnecting"
            delay = self.backoff.next()
            log.info("bilibili reconnecting", source=self.name, delay_s=round(delay, 2), attempt=self.backoff.attempt)
            await asyncio.sleep(delay)

    def _note_failure(self, e: BaseException, note: str = "") -> None:
        self.stats.last_error = f"{type(e).__name__}: {e}"
        log.warning("bilibili connection attempt failed", source=self.name, room=self.room, room_id=self.room_id,
                    error=self.stats.last_error, note=note or None)  # fmt: skip
