"""YouTube live chat client: loads the watch page, then polls ``get_live_chat`` around the pure ``protocol``.

States: ``connecting`` → ``connected`` (polling) → on errors ``reconnecting`` (jittered exponential backoff up
to ``reconnect_max_s``); ``offline`` when there is no live chat (not live yet, ended, chat disabled; checked
again every ``offline_retry_s``); ``layout_changed`` when YouTube's page or response no longer has the keys we
rely on (``last_error`` names the key; retried at the backoff ceiling in case it was a temporary variant).

Polls honour YouTube's ``timeoutMs`` clamped to [``min_poll_s``, ``max_poll_s``]. The first response of a run
carries the recent history: it is skipped (not read aloud). After a page reload, messages already seen are
skipped by id and the rest (those sent while we were away) are read.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable

import aiohttp
import structlog

from ishow.backoff import backoff_delay
from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, ProtocolError, RemoteError
from ishow.events import ChatEvent
from ishow.sources.base import Emit, Source
from ishow.sources.youtube import protocol as p

log = structlog.get_logger(__name__)

HEADERS = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Accept-Language": "en-US,en;q=0.9",
}
CONSENT_COOKIES = {"SOCS": "CAI", "CONSENT": "YES+1"}  # skip the EU cookie-consent interstitial
SEEN_IDS = 10_000


class YoutubeSource(Source):
    def __init__(
        self,
        name: str,
        room: str,
        *,
        api_base: str = p.DEFAULT_API_BASE,
        reconnect_max_s: float = 30.0,
        min_poll_s: float = 0.5,
        max_poll_s: float = 10.0,
        offline_retry_s: float = 60.0,
        request_timeout_s: float = 15.0,
        poll_retries: int = 3,
        backoff_base_s: float = 1.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(name)
        self.room = room
        self.page_path = p.watch_path(room)  # ValueError for a room that is none of the accepted forms
        self.api_base = api_base.rstrip("/")
        self.reconnect_max_s = reconnect_max_s
        self.min_poll_s = min_poll_s
        self.max_poll_s = max(max_poll_s, min_poll_s)
        self.offline_retry_s = offline_retry_s
        self.request_timeout_s = request_timeout_s
        self.poll_retries = poll_retries
        self.backoff_base_s = backoff_base_s
        self._rand = rand
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._history_skipped = False
        self.video_id = ""
        self.last_error = ""
        self.malformed_items = 0
        self.polls = 0

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> YoutubeSource:
        key = f"sources.{name}"
        if not cfg.room:
            raise ConfigError(f"{key}.room: a YouTube video id, watch URL or @handle is required")
        try:
            return cls(name, cfg.room, api_base=cfg.api_base or p.DEFAULT_API_BASE, reconnect_max_s=cfg.reconnect_max_s)
        except ValueError as e:
            raise ConfigError(f"{key}.room: {e}") from e

    def poll_delay(self, timeout_ms: int | None) -> float:
        wanted = 5.0 if timeout_ms is None else timeout_ms / 1000.0
        return min(max(wanted, self.min_poll_s), self.max_poll_s)

    async def run(self, emit: Emit) -> None:
        blog = log.bind(source=self.name, room=self.room)
        attempt = 0
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        async with aiohttp.ClientSession(headers=HEADERS, cookies=CONSENT_COOKIES, timeout=timeout) as http:
            while True:
                self.state = "connecting" if attempt == 0 and not self._history_skipped else "reconnecting"
                try:
                    await self._follow(http, emit)
                    self.state, attempt = "offline", 0
                    delay = self.offline_retry_s
                    blog.info("youtube live chat ended", video=self.video_id, retry_in_s=delay)
                except p.NotLiveError as e:
                    self.state, self.last_error, attempt = "offline", str(e), 0
                    delay = self.offline_retry_s
                    blog.info("youtube live chat not available", reason=str(e), retry_in_s=delay)
                except ProtocolError as e:
                    self.state, self.last_error = "layout_changed", str(e)
                    delay = max(self._backoff(attempt), self.reconnect_max_s / 2)
                    attempt += 1
                    blog.error("youtube chat cannot be read", error=str(e), retry_in_s=round(delay, 1))
                except (aiohttp.ClientError, TimeoutError, RemoteError) as e:
                    self.state, self.last_error = "reconnecting", f"{type(e).__name__}: {e}"
                    delay = self._backoff(attempt)
                    attempt += 1
                    blog.warning("youtube chat request failed", error=self.last_error, retry_in_s=round(delay, 1))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the one supervisor boundary of this source
                    self.state, self.last_error = "reconnecting", f"{type(e).__name__}: {e}"
                    delay = self._backoff(attempt)
                    attempt += 1
                    log.exception("youtube chat crashed", source=self.name, retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.reconnect_max_s, self._rand(), self.backoff_base_s)

    async def _follow(self, http: aiohttp.ClientSession, emit: Emit) -> None:
        """Load the page, then poll until the chat ends (returns) or requests keep failing (raises)."""
        async with http.get(self.api_base + self.page_path) as resp:
            resp.raise_for_status()
            html = await resp.text(errors="replace")
        page = p.parse_watch_page(html)
        self.video_id = page.video_id or self.video_id
        room = self.video_id or self.room
        url = p.chat_url(self.api_base, page.api_key)
        continuation, failures = page.continuation, 0
        self.state, self.last_error = "connected", ""
        log.info("youtube live chat found", source=self.name, video=room)
        while True:
            try:
                chunk = await self._poll(http, url, page.client_version, continuation, room)
            except (aiohttp.ClientError, TimeoutError) as e:
                failures += 1
                if failures > self.poll_retries:
                    raise
                delay = self._backoff(failures - 1)
                log.warning("youtube poll failed; retrying", source=self.name, error=repr(e), retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self._deliver(chunk, emit)
            if chunk.continuation is None:
                return
            continuation = chunk.continuation
            await asyncio.sleep(self.poll_delay(chunk.timeout_ms))

    async def _poll(
        self, http: aiohttp.ClientSession, url: str, version: str, continuation: str, room: str
    ) -> p.ChatChunk:
        async with http.post(url, json=p.chat_request_body(version, continuation)) as resp:
            resp.raise_for_status()
            body = await resp.read()
        self.polls += 1
        return p.parse_chat_body(body, room)

    def _deliver(self, chunk: p.ChatChunk, emit: Emit) -> None:
        for error in chunk.errors:
            self.malformed_items += 1
            log.warning("malformed youtube chat item skipped", source=self.name, error=error[:300])
        history = not self._history_skipped
        skipped = 0
        for item in chunk.items:
            if isinstance(item, ChatEvent):
                if item.msg_id in self._seen:
                    continue
                self._seen[item.msg_id] = None
                if len(self._seen) > SEEN_IDS:
                    self._seen.popitem(last=False)
            if history:
                skipped += 1
                continue
            emit(item)
        if history:
            self._history_skipped = True
            log.info("youtube chat history skipped", source=self.name, messages=skipped)
