"""One authenticated danmaku websocket session, shared by the web and open-platform clients; and the backoff.

Only moves bytes and time: packets are parsed by ``protocol``; the caller decides what they mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import structlog

from ishow.backoff import backoff_delay
from ishow.errors import ProtocolError, RemoteError
from ishow.events import ChatEvent, EventKind, Removal
from ishow.sources.base import Emit
from ishow.sources.bilibili.protocol import (
    AUTH_BAD_TOKEN,
    AUTH_OK,
    FrameError,
    GiftMerger,
    Op,
    Packet,
    auth_reply_code,
    heartbeat_packet,
    packet_json,
    parse_frame,
    popularity,
)

log = structlog.get_logger(__name__)

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
)


class AuthRejected(RemoteError):
    """The danmaku server refused the auth packet (``code`` -101: the token is stale or wrong)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"danmaku server rejected auth with code {code}; expected 0")
        self.code = code

    @property
    def bad_token(self) -> bool:
        return self.code == AUTH_BAD_TOKEN


class HeartbeatTimeout(RemoteError):
    """Nothing arrived for longer than the read timeout."""


@dataclass(frozen=True)
class Timeouts:
    heartbeat_s: float = 30.0  # op 2 every this often
    read_s: float = 70.0  # no frame for this long → reconnect
    auth_s: float = 10.0  # op 8 must arrive within this
    connect_s: float = 10.0  # TCP + TLS + websocket handshake
    http_s: float = 10.0  # each HTTP API request


@dataclass
class Stats:
    frames: int = 0
    bad_frames: int = 0
    packets: int = 0
    bad_commands: int = 0
    events: int = 0
    sessions: int = 0
    popularity: int = 0
    last_error: str = ""


@dataclass
class Backoff:
    """Jittered exponential delays: the n-th is uniform in [d/2, d], d = min(maximum, initial * 2**n)."""

    initial: float = 1.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        delay = backoff_delay(self.attempt, self.maximum, self.rng.random(), self.initial)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def _handle_frame(data: bytes, stats: Stats, on_packet: Callable[[Packet], None], url: str) -> None:
    stats.frames += 1
    try:
        packets = parse_frame(data)
    except FrameError as e:
        stats.bad_frames += 1
        stats.last_error = str(e)
        log.warning("malformed danmaku frame; kept the good packets", url=url, error=str(e), bytes=len(data),
                    kept=len(e.packets))  # fmt: skip
        packets = e.packets
    for p in packets:
        stats.packets += 1
        if p.op == Op.HEARTBEAT_REPLY:
            with contextlib.suppress(ProtocolError):
                stats.popularity = popularity(p)
        elif p.op == Op.COMMAND:
            on_packet(p)


async def _heartbeat(ws: aiohttp.ClientWebSocketResponse, every: float) -> None:
    frame = heartbeat_packet()
    while not ws.closed:
        await ws.send_bytes(frame)
        await asyncio.sleep(every)


async def ws_session(
    http: aiohttp.ClientSession,
    url: str,
    auth: bytes,
    on_packet: Callable[[Packet], None],
    on_connected: Callable[[], None],
    *,
    timeouts: Timeouts,
    stats: Stats,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Connect to ``url``, send ``auth`` (op 7; secret: never logged), expect op 8 code 0, then heartbeat and
    hand every op 5 packet to ``on_packet`` until the server closes. Returns why it ended; raises
    ``AuthRejected``, ``HeartbeatTimeout``, ``ProtocolError`` or aiohttp/OS errors."""
    async with asyncio.timeout(timeouts.connect_s):
        ws = await http.ws_connect(
            url,
            headers=headers,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            max_msg_size=16 * 1024 * 1024,
        )
    async with ws:
        await ws.send_bytes(auth)
        msg = await ws.receive(timeout=timeouts.auth_s)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            raise ProtocolError(f"expected a binary auth reply from {url}, got {msg.type.name} {str(msg.data)[:80]!r}")
        packets = parse_frame(msg.data)
        if not packets or packets[0].op != Op.AUTH_REPLY:
            ops = [p.op for p in packets]
            raise ProtocolError(f"expected an auth reply (op {int(Op.AUTH_REPLY)}) first from {url}, got ops {ops}")
        code = auth_reply_code(packets[0])
        if code != AUTH_OK:
            raise AuthRejected(code)
        stats.sessions += 1
        on_connected()
        for p in packets[1:]:
            if p.op == Op.COMMAND:
                on_packet(p)
        beat = asyncio.create_task(_heartbeat(ws, timeouts.heartbeat_s), name=f"bilibili-heartbeat:{url}")
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=timeouts.read_s)
                except TimeoutError as e:
                    raise HeartbeatTimeout(f"no frame from {url} for {timeouts.read_s:g} s") from e
                if msg.type is aiohttp.WSMsgType.BINARY:
                    _handle_frame(msg.data, stats, on_packet, url)
                elif msg.type is aiohttp.WSMsgType.TEXT:
                    stats.frames += 1
                    stats.bad_frames += 1
                    log.warning("unexpected text frame on the danmaku websocket", url=url, text=str(msg.data)[:80])
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    return f"websocket error: {msg.data!r}"
                else:  # CLOSE, CLOSING, CLOSED
                    return f"closed by server (code {ws.close_code})"
        finally:
            beat.cancel()
            await asyncio.wait([beat])  # never raises; our own cancellation still propagates
            if not beat.cancelled() and beat.exception() is not None:
                log.debug("heartbeat sender stopped", url=url, error=repr(beat.exception()))


class _Decoder(Protocol):
    room: str

    def decode(self, obj: dict[str, Any]) -> Sequence[ChatEvent | Removal]: ...


class PacketDelivery:
    """Packet → decoded events → gift merging → emit; shared by the web and open-platform clients."""

    name: str
    decoder: _Decoder
    merger: GiftMerger
    stats: Stats
    _emit: Emit | None
    _clock: Callable[[], float]

    def _on_packet(self, packet: Packet) -> None:
        try:
            events = self.decoder.decode(packet_json(packet))
        except ProtocolError as e:
            self.stats.bad_commands += 1
            log.warning("undecodable bilibili command; skipped", source=self.name, error=str(e))
            return
        for ev in events:
            self._deliver(ev)

    def _deliver(self, ev: ChatEvent | Removal) -> None:
        assert self._emit is not None
        out: list[ChatEvent | Removal] = [ev]
        if isinstance(ev, ChatEvent) and ev.kind is EventKind.GIFT:
            out = list(self.merger.push(ev, self._clock()))
        self._emit_all(out)

    def _emit_all(self, events: Sequence[ChatEvent | Removal]) -> None:
        assert self._emit is not None
        for e in events:
            self.stats.events += 1
            self._emit(e)

    async def _tick_gifts(self) -> None:
        """Release merged gifts whose window closed, even when no new packet arrives."""
        every = max(0.05, min(0.5, self.merger.window_s / 4))
        while True:
            await asyncio.sleep(every)
            self._emit_all(self.merger.poll(self._clock()))
