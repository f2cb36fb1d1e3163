"""Twitch chat client: websocket I/O, login, keepalive and reconnects around the pure ``protocol`` module.

Connection life: open the websocket → send CAP REQ, PASS (only with a token), NICK, JOIN → read lines.
``PING`` is answered with ``PONG``; after ``ping_idle_s`` without data we send our own PING, and after
``dead_s`` without data the connection is considered dead and replaced. ``RECONNECT`` on a connection that
was up for ``stable_s`` → reconnect at once; anything else (server close, dead connection, connect failure)
→ jittered exponential backoff (``backoff_base_s`` doubling up to ``reconnect_max_s``), reset by a connection
that stayed up for ``stable_s``. A refused login → state ``auth_failed`` and retries no faster than ``auth_retry_s``.
Malformed lines are logged (truncated) and counted in ``malformed_lines``; the connection is kept.
The OAuth token is never logged.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Literal

import aiohttp
import structlog

from ishow.backoff import backoff_delay
from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError, ProtocolError, RemoteError
from ishow.events import ChatEvent, Removal
from ishow.sources.base import Emit, Source
from ishow.sources.twitch import protocol as p

log = structlog.get_logger(__name__)

Ending = Literal["reconnect", "closed", "dead"]


class TwitchSource(Source):
    def __init__(
        self,
        name: str,
        channel: str,
        *,
        token: str = "",
        nick: str = "",
        ws_url: str = p.DEFAULT_WS_URL,
        reconnect_max_s: float = 30.0,
        auth_retry_s: float = 300.0,
        ping_idle_s: float = 240.0,
        dead_s: float = 300.0,
        connect_timeout_s: float = 15.0,
        backoff_base_s: float = 1.0,
        stable_s: float = 10.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(name)
        self.channel = p.normalize_channel(channel)
        self._token = token  # secret: never logged, never in repr
        self.nick = nick.lower() if nick else p.anonymous_nick(10_000 + int(rand() * 89_999))
        self.ws_url = ws_url
        self.reconnect_max_s = reconnect_max_s
        self.auth_retry_s = auth_retry_s
        self.ping_idle_s = ping_idle_s
        self.dead_s = max(dead_s, ping_idle_s)
        self.connect_timeout_s = connect_timeout_s
        self.backoff_base_s = backoff_base_s
        self.stable_s = stable_s
        self._rand = rand
        self.malformed_lines = 0
        self.connects = 0
        self.last_error = ""

    def __repr__(self) -> str:
        return f"TwitchSource(name={self.name!r}, channel={self.channel!r}, nick={self.nick!r})"

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> TwitchSource:
        key = f"sources.{name}"
        if not cfg.room:
            raise ConfigError(f'{key}.room: the Twitch channel login is required (e.g. room = "shroud")')
        if cfg.token and not cfg.nick:
            raise ConfigError(f"{key}.nick: required with a token (the login the OAuth token belongs to)")
        try:
            return cls(
                name,
                cfg.room,
                token=cfg.token,
                nick=cfg.nick,
                ws_url=cfg.ws_url or p.DEFAULT_WS_URL,
                reconnect_max_s=cfg.reconnect_max_s,
            )
        except ValueError as e:
            raise ConfigError(f"{key}.room: {e}") from e

    async def run(self, emit: Emit) -> None:
        blog = log.bind(source=self.name, channel=self.channel)
        attempt = 0
        async with aiohttp.ClientSession() as http:
            while True:
                self.state = "connecting" if self.connects == 0 and attempt == 0 else "reconnecting"
                delay = 0.0
                try:
                    started = asyncio.get_running_loop().time()
                    ending, welcomed = await self._connection(http, emit)
                    stable = welcomed and asyncio.get_running_loop().time() - started >= self.stable_s
                    if stable:
                        attempt = 0
                    if not (ending == "reconnect" and stable):
                        delay = self._backoff(attempt)
                        attempt += 1
                    blog.info("twitch connection ended", reason=ending, retry_in_s=round(delay, 2))
                except p.TwitchAuthError as e:
                    self.state, self.last_error = "auth_failed", str(e)
                    delay = max(self.auth_retry_s, self._backoff(attempt))
                    attempt += 1
                    blog.error("twitch login refused", error=str(e), retry_in_s=round(delay, 1))
                except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:
                    self.last_error = f"{type(e).__name__}: {e}"
                    delay = self._backoff(attempt)
                    attempt += 1
                    blog.warning("twitch connection failed", error=self.last_error, retry_in_s=round(delay, 1))
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the one supervisor boundary of this source
                    self.last_error = f"{type(e).__name__}: {e}"
                    delay = self._backoff(attempt)
                    attempt += 1
                    log.exception("twitch connection crashed", source=self.name, retry_in_s=round(delay, 1))
                if self.state != "auth_failed":
                    self.state = "reconnecting"
                if delay > 0:
                    await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self.reconnect_max_s, self._rand(), self.backoff_base_s)

    async def _connection(self, http: aiohttp.ClientSession, emit: Emit) -> tuple[Ending, bool]:
        """One websocket connection, until it ends; returns why, and whether the login was accepted."""
        timeout = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
        async with asyncio.timeout(self.connect_timeout_s):
            ws = await http.ws_connect(self.ws_url, timeout=timeout, autoping=True, max_msg_size=1 << 20)
        self.connects += 1
        welcomed = False
        try:
            for line in p.login_lines(self.channel, self.nick, self._token):
                await ws.send_str(line)
            buffer = p.LineBuffer()
            loop = asyncio.get_running_loop()
            last_rx, pinged = loop.time(), False
            while True:
                wait = last_rx + (self.dead_s if pinged else self.ping_idle_s) - loop.time()
                try:
                    msg = await ws.receive(timeout=max(wait, 0.0))
                except TimeoutError:
                    if pinged:
                        log.warning("twitch connection silent; reconnecting", source=self.name, silent_s=self.dead_s)
                        return "dead", welcomed
                    await ws.send_str(p.ping_line())
                    pinged = True
                    continue
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    last_rx, pinged = loop.time(), False
                    for line in buffer.feed(msg.data):
                        item = self._item(line)
                        if isinstance(item, ChatEvent | Removal):
                            emit(item)
                        elif isinstance(item, p.Ping):
                            await ws.send_str(item.reply())
                        elif isinstance(item, p.Reconnect):
                            return "reconnect", welcomed
                        elif isinstance(item, p.Welcome):
                            welcomed = True
                            self.state, self.last_error = "connected", ""
                            log.info("twitch chat joined", source=self.name, channel=self.channel, nick=self.nick)
                        elif isinstance(item, p.Notice):
                            log.info("twitch notice", source=self.name, msg_id=item.msg_id, text=item.text[:200])
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise RemoteError(f"twitch websocket error: {ws.exception()!r}")
                else:  # CLOSE, CLOSING, CLOSED
                    return "closed", welcomed
        finally:
            await ws.close()

    def _item(self, line: str) -> p.Item | None:
        try:
            return p.interpret(p.parse_line(line))
        except ProtocolError as e:
            self.malformed_lines += 1
            log.warning("malformed twitch line skipped", source=self.name, error=str(e), count=self.malformed_lines)
            return None
