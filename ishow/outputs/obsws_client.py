"""One obs-websocket v5 connection over aiohttp: connect, Hello → Identify → Identified, requests with timeouts.

The protocol logic is in ``ishow.outputs.obsws_protocol`` (sans-I/O); this module only moves frames and time.
Every wait is bounded by ``timeout`` (connect, handshake, each request): a stalled OBS raises ``ObsTimeout``
instead of hanging the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import aiohttp
import structlog

from ishow.errors import RemoteError
from ishow.outputs.obsws_protocol import (
    MAX_FRAME,
    SUBPROTOCOL,
    Identified,
    ObsProtocol,
    ObsProtocolError,
    Response,
    close_reason,
)

log = structlog.get_logger(__name__)


class ObsClosed(RemoteError):
    """OBS closed the connection (``code`` is the websocket close code, None when the socket just dropped)."""

    def __init__(self, code: int | None, during: str) -> None:
        self.code = code
        where = f" {during}" if during else ""
        super().__init__(f"OBS closed the connection{where} ({close_reason(code)})")


class ObsTimeout(RemoteError):
    """OBS accepted the connection but did not answer in time."""


class ObsConnection:
    """An identified connection. ``request`` may be called from one or more tasks; responses match by id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, proto: ObsProtocol, timeout: float) -> None:
        self._ws = ws
        self._proto = proto
        self.timeout = timeout
        self.obs_version = proto.obs_version
        self._waiters: dict[str, asyncio.Future[Response]] = {}
        self._reader = asyncio.create_task(self._read(), name="obs-websocket-reader")
        self.close_code: int | None = None

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, url: str, password: str, timeout: float) -> ObsConnection:
        """Connect and identify within ``timeout`` seconds (each of: TCP/HTTP upgrade, handshake)."""
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(url, protocols=(SUBPROTOCOL,), max_msg_size=MAX_FRAME, autoping=True), timeout
            )
        except TimeoutError as e:
            raise ObsTimeout(f"OBS did not accept the websocket connection within {timeout:g} s") from e
        proto = ObsProtocol(password)
        try:
            await asyncio.wait_for(_handshake(ws, proto), timeout)
        except TimeoutError as e:
            await _abort(ws)
            raise ObsTimeout(f"OBS did not finish the Hello/Identify handshake within {timeout:g} s") from e
        except BaseException:
            await _abort(ws)
            raise
        return cls(ws, proto, timeout)

    async def request(self, request_type: str, data: dict[str, Any] | None = None) -> Response:
        """Send one request and wait (at most ``timeout``) for its response; status is checked by the caller."""
        if self._reader.done():
            raise ObsClosed(self.close_code, f"before {request_type}")
        rid, frame = self._proto.request(request_type, data)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = fut
        try:
            await asyncio.wait_for(self._ws.send_str(frame), self.timeout)
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError as e:
            raise ObsTimeout(f"OBS did not answer {request_type} within {self.timeout:g} s") from e
        except ConnectionError as e:
            raise ObsClosed(self.close_code, f"while sending {request_type}") from e
        finally:
            self._waiters.pop(rid, None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._reader)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await _abort(self._ws, graceful=True)

    async def _read(self) -> None:
        ws = self._ws
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # binary (msgpack) is never negotiated by us; ignore
                try:
                    _, events = self._proto.receive(msg.data)
                except ObsProtocolError as e:
                    log.warning("obs-websocket sent a malformed frame; ignored", error=str(e))
                    continue
                for event in events:
                    if isinstance(event, Response):
                        fut = self._waiters.get(event.request_id)
                        if fut is not None and not fut.done():
                            fut.set_result(event)
        finally:
            self.close_code = ws.close_code
            for fut in self._waiters.values():
                if not fut.done():
                    fut.set_exception(ObsClosed(self.close_code, "while waiting for an answer"))


async def _handshake(ws: aiohttp.ClientWebSocketResponse, proto: ObsProtocol) -> None:
    """Hello → Identify → Identified; raises ``ObsClosed`` (e.g. 4009 on a wrong password)."""
    for _ in range(16):  # Hello and Identified; a few stray frames at most
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = ws.close_code
            if code is None and msg.type == aiohttp.WSMsgType.CLOSE and isinstance(msg.data, int):
                code = msg.data
            raise ObsClosed(code, "during the handshake")
        if msg.type == aiohttp.WSMsgType.ERROR:
            raise ObsClosed(None, f"during the handshake: {ws.exception()!r}")
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        frames, events = proto.receive(msg.data)
        for frame in frames:
            await ws.send_str(frame)
        if any(isinstance(e, Identified) for e in events):
            return
    raise ObsProtocolError("no Identified after 16 frames")


async def _abort(ws: aiohttp.ClientWebSocketResponse, graceful: bool = False) -> None:
    if graceful and not ws.closed:
        with contextlib.suppress(TimeoutError, ConnectionError, aiohttp.ClientError):
            await asyncio.wait_for(ws.close(), 1.0)
            return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(), 0.1)


def describe_error(e: BaseException) -> str:
    """A connection failure in a few words (``Connection refused``), without a traceback."""
    if isinstance(e, aiohttp.ClientConnectorError):
        err = e.os_error
        return os.strerror(err.errno) if err.errno else err.strerror or str(err)
    if isinstance(e, aiohttp.WSServerHandshakeError):
        return f"HTTP {e.status}: not an obs-websocket server"
    return str(e) or type(e).__name__


def url_port(url: str) -> str:
    tail = url.split("//", 1)[-1].split("/", 1)[0]
    return tail.rsplit(":", 1)[1] if ":" in tail else "4455"
