"""OBS output: a websocket hub that streams every utterance's audio to each connected ``/obs`` browser page.

Wire protocol, server → page (fixed; external checks rely on it). On connect::

    {"type":"hello","server":"ishow","version":"…","sample_rate":24000,"format":"pcm_s16le","client":3}

then for each utterance, in playback order::

    text    {"type":"utterance","id":str,"text":str,"user":str,"voice":str,"sample_rate":24000,
             "format":"pcm_s16le", "raw":str,"kind":str,"seq":int,"samples":int,"bytes":int,"duration":float}
    binary  PCM16 little-endian mono, at most ``chunk_bytes`` per frame; concatenated they are the utterance
    text    {"type":"end","id":str}

``text`` is exactly the spoken text; ``raw`` is the original chat message (for subtitles). A long message is
streamed: its header has ``"stream": true`` and no ``samples``/``bytes``/``duration``, its binary frames follow as
its parts are synthesized, and ``end`` comes after the last one (a page that connects mid-stream gets the next
utterance). When a moderator skips::

    text    {"type":"skip","id":str}

the page stops that utterance at once if it is playing (or drops it if it is waiting), hides its subtitle and does
not report it played. It comes after the utterance's ``end`` on the same connection (one FIFO per client).

Page → server (optional): ``{"type":"played","id":…}`` after an utterance played to its end, and
``{"type":"state",…}`` with a few scalar fields (the shipped page sends ``page``, ``audio`` (context state),
``rate``, ``playing`` (id or ""), ``waiting``, ``played``, ``skipped``, ``theme``); the last one is shown per client
in ``/healthz``. Anything else is malformed: logged (rate-limited per client) and ignored.

Bounds and drop policy: at most ``max_clients`` pages at once, and ``max_clients_per_remote`` from one address
(only accepted pages count: the server's Origin check refuses foreign pages before they get here); refusals get 503
and are logged at most once a minute. Every client has its own queue of at most ``max_client_queue`` utterances and
one writer task, supervised: an utterance that cannot be sent (bad content, an encoder bug) is logged and skipped,
and the writer goes on with the next one. When an utterance arrives and a client's queue is full, or one frame
send takes longer than ``send_timeout_s``, that client is dropped: one warning line, its connection aborted. The
page reconnects (with backoff) and continues with the next utterance. Other clients and the daemon never wait
for a slow client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

import ishow
from ishow.audio_format import SAMPLE_RATE
from ishow.boundary import loads_limited, valid_text
from ishow.errors import ConfigError, InputError, LocalError
from ishow.events import Audio
from ishow.outputs.base import Sink
from ishow.outputs.obs_frames import WIRE_FORMAT, encode_utterance, scalar_fields

log = structlog.get_logger(__name__)

MAX_CLIENT_FRAME = 64 * 1024  # page → server frames are tiny JSON reports
MAX_ID_LEN = 200
MALFORMED_LOG_FIRST = 5  # per client: log the first few malformed frames, then every 100th
MALFORMED_LOG_EVERY = 100
REFUSAL_LOG_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ObsSettings:
    """Limits of the OBS websocket hub (built by ``ishow.config.schema`` from ``[outputs.obs]``)."""

    max_client_queue: int = 64  # utterances waiting per client; full → the client is dropped
    send_timeout_s: float = 5.0  # one frame send longer than this → the client is dropped
    chunk_bytes: int = 32 * 1024  # PCM bytes per binary frame
    max_clients: int = 32  # more concurrent pages are refused with 503
    max_clients_per_remote: int = 8  # ...and more from one remote address
    played_history: int = 256  # played ids remembered, per client and hub-wide
    heartbeat_s: float = 20.0  # websocket ping interval; no pong within half of it closes the connection
    close_timeout_s: float = 2.0  # graceful close handshake limit before the connection is aborted

    def __post_init__(self) -> None:
        problems: list[str] = []
        for key in ("max_client_queue", "chunk_bytes", "max_clients", "max_clients_per_remote", "played_history"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                problems.append(f"outputs.obs.{key}: expected an integer ≥ 1, got {value!r}")
        for key in ("send_timeout_s", "heartbeat_s", "close_timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not value > 0:
                problems.append(f"outputs.obs.{key}: expected a number > 0, got {value!r}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True, eq=False)
class _Item:
    """One utterance, encoded once and shared by every client queue."""

    id: str
    frames: tuple[str | bytes, ...]


@dataclass(eq=False)
class _Client:
    cid: int
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    remote: str
    queue: asyncio.Queue[_Item]
    played: deque[str]
    log: Any  # structlog BoundLogger with client context
    connected_at: float = field(default_factory=time.monotonic)
    writer: asyncio.Task[None] | None = None
    sent: int = 0
    malformed: int = 0
    last_report: dict[str, object] | None = None
    drop_reason: str | None = None
    streams: set[str] = field(default_factory=set)  # streamed utterances whose header this client got


@dataclass
class _Counters:
    utterances: int = 0
    connections: int = 0
    dropped: int = 0
    refused: int = 0
    refused_logged: int = 0  # ``refused`` when the last refusal line was logged
    refusal_logged_at: float = float("-inf")
    skipped_frames: int = 0  # utterances a writer could not send (logged) and skipped


class ObsHub(Sink):
    """Broadcasts utterances to every ``/ws/obs`` client; serves the ``/obs`` page.

    ``on_played(id)`` (optional) is called once per id the first time any page reports it played.
    """

    name: ClassVar[str] = "obs"

    def __init__(
        self,
        settings: ObsSettings | None = None,
        *,
        on_played: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings or ObsSettings()
        self._on_played = on_played
        self._clients: dict[int, _Client] = {}
        self._cids = itertools.count(1)
        self._played: OrderedDict[str, None] = OrderedDict()
        self._counters = _Counters()
        self._started = False
        self._closed = False
        self._page: str | None = None

    # -- wiring ----------------------------------------------------------------------------------------------

    def add_routes(self, app: web.Application, *, page_path: str = "/obs", ws_path: str = "/ws/obs") -> None:
        """Mount ``GET page_path`` (the page) and ``GET ws_path`` (the websocket) on ``app``."""
        app.router.add_get(page_path, self.handle_page)
        app.router.add_get(ws_path, self.handle_ws)

    async def handle_page(self, request: web.Request) -> web.Response:
        """The OBS browser-source page (``ishow/web/obs.html``), read once and cached."""
        if self._page is None:
            self._page = await asyncio.to_thread(_read_page)
        return web.Response(text=self._page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    # -- Sink ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        log.info("obs hub ready", max_clients=self._settings.max_clients)

    async def play(self, audio: Audio) -> None:
        """Queue ``audio`` for every connected page. Returns at once; slow pages are dropped, never awaited."""
        if self._closed:
            return
        uid = audio.utterance.id
        if audio.part == 0:
            self._counters.utterances += 1
        if not self._clients:
            return
        item = _Item(*encode_utterance(audio, seq=self._counters.utterances, chunk_bytes=self._settings.chunk_bytes))
        for client in list(self._clients.values()):
            if audio.part > 0 and uid not in client.streams:
                continue  # connected mid-utterance: it never got this header; it gets the next utterance
            if audio.final:
                client.streams.discard(uid)
            else:
                client.streams.add(uid)
            try:
                client.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._drop(client, "queue full", queued=client.queue.qsize(), id=uid)

    async def flush(self) -> None:
        """Shutdown: return once every connected page was sent everything queued for it (or went away)."""
        waits = []
        for client in list(self._clients.values()):
            if client.writer is None or client.writer.done():
                continue
            joined = asyncio.ensure_future(client.queue.join())
            waits.append((joined, client.writer))
        try:
            for joined, writer in waits:
                await asyncio.wait([joined, writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for joined, _ in waits:
                joined.cancel()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            client.drop_reason = client.drop_reason or "shutdown"
            if client.writer is not None:
                client.writer.cancel()
        await asyncio.gather(*(self._close_ws(c, WSCloseCode.GOING_AWAY, "ishow shutting down") for c in clients))
        log.info("obs hub closed", clients=len(clients))

    def state(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "name": self.name,
            "active": self._started and not self._closed,
            "clients": len(self._clients),
            "utterances": self._counters.utterances,
            "connections": self._counters.connections,
            "dropped_clients": self._counters.dropped,
            "refused_clients": self._counters.refused,
            "skipped_utterances": self._counters.skipped_frames,
            "played": list(self._played)[-20:],
            "client_info": [
                {
                    "id": c.cid,
                    "remote": c.remote,
                    "connected_s": round(now - c.connected_at, 1),
                    "queued": c.queue.qsize(),
                    "sent": c.sent,
                    "played": list(c.played),
                    "malformed": c.malformed,
                    "last_report": c.last_report,
                }
                for c in self._clients.values()
            ],
        }

    async def skip(self, utterance_id: str) -> None:
        """Tell every page to stop ``utterance_id`` now: a ``{"type":"skip","id":...}`` frame."""
        item = _Item(id="", frames=(json.dumps({"type": "skip", "id": utterance_id}),))
        ended = _Item(id="", frames=(json.dumps({"type": "end", "id": utterance_id}), *item.frames))
        for client in list(self._clients.values()):
            streaming = utterance_id in client.streams  # cut mid-stream: end it first (skip follows its end)
            client.streams.discard(utterance_id)
            try:
                client.queue.put_nowait(ended if streaming else item)
            except asyncio.QueueFull:
                self._drop(client, "queue full", queued=client.queue.qsize(), id=utterance_id)

    def played_ids(self) -> list[str]:
        """Ids any page reported as played, oldest first (the last ``played_history``)."""
        return list(self._played)

    # -- websocket -------------------------------------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        """``GET /ws/obs``: one page. Auth is checked by the app's middleware before this runs."""
        settings = self._settings
        if self._closed:
            raise web.HTTPServiceUnavailable(text="ishow is shutting down")
        remote = request.remote or "?"
        if len(self._clients) >= settings.max_clients:
            self._refuse(remote, f"too many OBS clients (at most {settings.max_clients})")
        if sum(1 for c in self._clients.values() if c.remote == remote) >= settings.max_clients_per_remote:
            self._refuse(remote, f"too many OBS clients from {remote} (at most {settings.max_clients_per_remote})")

        ws: web.WebSocketResponse = web.WebSocketResponse(
            heartbeat=settings.heartbeat_s, max_msg_size=MAX_CLIENT_FRAME, compress=False
        )
        await ws.prepare(request)
        cid = next(self._cids)
        client = _Client(
            cid=cid,
            ws=ws,
            transport=request.transport,
            remote=remote,
            queue=asyncio.Queue(maxsize=settings.max_client_queue),
            played=deque(maxlen=settings.played_history),
            log=log.bind(client=cid, remote=remote),
        )
        hello = {
            "type": "hello",
            "server": "ishow",
            "version": ishow.__version__,
            "sample_rate": SAMPLE_RATE,
            "format": WIRE_FORMAT,
            "client": cid,
        }
        # The hello is the first thing the writer sends; once a page has it, it gets every later utterance.
        client.queue.put_nowait(_Item(id="", frames=(json.dumps(hello),)))
        self._clients[cid] = client
        self._counters.connections += 1
        client.writer = asyncio.create_task(self._write_loop(client), name=f"obs-writer-{cid}")
        client.log.info("obs client connected", clients=len(self._clients))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(client, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._malformed(client, "unexpected binary frame", size=len(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    client.log.info("obs client connection error", error=repr(ws.exception()))
                    break
        finally:
            if self._clients.get(cid) is client:
                del self._clients[cid]
            writer = client.writer
            if writer is not None:
                writer.cancel()
                # bounded: a send stuck on a dead peer must not hold the handler (and shutdown) forever
                _, pending = await asyncio.wait([writer], timeout=settings.close_timeout_s)
                if pending and client.transport is not None:
                    client.log.debug("obs writer did not stop; aborting the connection")
                    client.transport.abort()
            if not ws.closed:
                await self._close_ws(client, WSCloseCode.GOING_AWAY, "")
            client.log.info(
                "obs client disconnected",
                reason=client.drop_reason or "client closed",
                sent=client.sent,
                played=len(client.played),
                clients=len(self._clients),
            )
        return ws

    def _refuse(self, remote: str, reason: str) -> None:
        """503 for one more page; one log line per minute at most, with the count since the last one."""
        counters = self._counters
        counters.refused += 1
        now = time.monotonic()
        if now - counters.refusal_logged_at >= REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "obs client refused",
                reason=reason,
                remote=remote,
                refused_since_last_log=counters.refused - counters.refused_logged,
            )
            counters.refusal_logged_at, counters.refused_logged = now, counters.refused
        raise web.HTTPServiceUnavailable(text=reason)

    async def _write_loop(self, client: _Client) -> None:
        """The only task that sends utterances to ``client``; exits when the client is dropped or gone.

        Supervised per utterance: a frame that fails for any other reason than the connection (e.g. text that
        cannot be encoded) is logged; if nothing of that utterance was sent yet it is skipped and the writer goes
        on, otherwise the page got half an utterance and is dropped (it reconnects and gets the next ones)."""
        timeout = self._settings.send_timeout_s
        ws = client.ws
        while True:
            item = await client.queue.get()
            try:
                for n, frame in enumerate(item.frames):
                    try:
                        if isinstance(frame, bytes):
                            await asyncio.wait_for(ws.send_bytes(frame), timeout)
                        else:
                            await asyncio.wait_for(ws.send_str(frame), timeout)
                    except TimeoutError:
                        self._drop(client, "send timed out", timeout_s=timeout, id=item.id)
                        return
                    except ConnectionError as e:  # the page went away; the reader loop cleans up
                        client.drop_reason = client.drop_reason or "connection lost"
                        client.log.debug("obs client send failed", error=repr(e), id=item.id)
                        return
                    except Exception as e:  # noqa: BLE001 - the writer's supervisor: content must not kill it
                        self._counters.skipped_frames += 1
                        client.log.error("obs utterance could not be sent; skipped", id=item.id, error=repr(e)[:200])
                        if n > 0:
                            self._drop(client, "utterance failed mid-way", id=item.id)
                            return
                        break
                else:
                    if item.id:
                        client.sent += 1
            finally:
                client.queue.task_done()

    def _drop(self, client: _Client, reason: str, **context: object) -> None:
        """Drop a slow/stuck client now: forget it, abort its connection (its handler then cleans up)."""
        if client.drop_reason is not None:
            return
        client.drop_reason = reason
        if self._clients.get(client.cid) is client:
            del self._clients[client.cid]
        self._counters.dropped += 1
        client.log.warning("obs client dropped", reason=reason, **context)
        if client.transport is not None:
            client.transport.abort()

    async def _close_ws(self, client: _Client, code: int, message: str) -> None:
        """Close gracefully within ``close_timeout_s``, else abort the connection."""
        try:
            await asyncio.wait_for(client.ws.close(code=code, message=message.encode()), self._settings.close_timeout_s)
        except (TimeoutError, ConnectionError) as e:
            client.log.debug("obs client close failed; aborting", error=repr(e))
            if client.transport is not None:
                client.transport.abort()

    # -- page → server reports ---------------------------------------------------------------------------------

    def _on_text(self, client: _Client, text: str) -> None:
        try:
            data = loads_limited(text, "frame")
        except InputError as e:
            self._malformed(client, str(e)[:120], frame=valid_text(text[:80]))
            return
        if not isinstance(data, dict):
            self._malformed(client, "not a JSON object", frame=text[:80])
            return
        kind = data.get("type")
        if kind == "played":
            pid = data.get("id")
            if not isinstance(pid, str) or not pid or len(pid) > MAX_ID_LEN:
                self._malformed(client, "'played' without a string id", frame=text[:80])
                return
            pid = valid_text(pid)
            client.played.append(pid)
            client.log.debug("obs page played", id=pid)
            self._record_played(pid)
        elif kind in ("state", "hello"):
            client.last_report = scalar_fields(data)
        else:
            self._malformed(client, "unknown message type", type=repr(kind)[:40])

    def _record_played(self, pid: str) -> None:
        if pid in self._played:
            return
        self._played[pid] = None
        while len(self._played) > self._settings.played_history:
            self._played.popitem(last=False)
        if self._on_played is not None:
            try:
                self._on_played(pid)
            except Exception:  # a faulty callback must not take the page's connection down
                log.exception("obs on_played callback failed", id=pid)

    def _malformed(self, client: _Client, problem: str, **context: object) -> None:
        client.malformed += 1
        n = client.malformed
        if n <= MALFORMED_LOG_FIRST or n % MALFORMED_LOG_EVERY == 0:
            client.log.warning("obs client sent a malformed frame; ignored", problem=problem, count=n, **context)


def _read_page() -> str:
    try:
        return resources.files("ishow").joinpath("web").joinpath("obs.html").read_text(encoding="utf-8")
    except OSError as e:
        raise LocalError(f"cannot read the OBS page ishow/web/obs.html: {e}") from e
