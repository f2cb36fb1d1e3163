"""``engine.kind = "remote"``: synthesis on a shared ``ishow serve`` service (Ray Serve) over plain HTTP.

The daemon stays light: aiohttp only (no ray). Each daemon batch becomes one ``POST /synthesize`` (text, voice
content hash, nfe, speed, seed per row); the reply is binary float32 PCM. Voices are addressed by content hash:
a clip is uploaded only when a replica answers ``409 unknown_voices`` (first use, a new or restarted replica).

Failover: when the service is unreachable, overloaded (503), too slow (``timeout_s``) or refuses the token, the
engine raises ``ServiceUnavailableError`` and the worker hands the batch to the configured fallback; one log line
says so. While down, batches fail over at once (no network wait) and a prober checks ``/healthz`` every
``retry_s``; when it answers, one line says the service is back and the next batch goes to it.

The engine's methods run on the worker's engine thread; the HTTP client lives on a private event loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
import numpy as np
import numpy.typing as npt
import structlog

from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest, reference_key
from ishow.engine.remote_protocol import (
    AUDIO_SUFFIXES,
    CLIENT_HEADER,
    Item,
    SynthReply,
    VoiceClip,
    decode_reply,
    encode_call,
)
from ishow.errors import InputError, ProtocolError, ServiceUnavailableError, VoiceError

log = structlog.get_logger(__name__)
T = TypeVar("T")
Waveform = npt.NDArray[np.float32]


class RemoteEngine(Engine):
    kind = "remote"

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg
        self.remote = cfg.remote
        self.url = cfg.remote.url.rstrip("/")
        self.client = cfg.remote.client or f"{socket.gethostname()}-{os.getpid()}"
        self._clips: dict[str, tuple[tuple[object, ...], VoiceClip, str]] = {}  # voice id → (file key, clip, hash)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._prober: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()
        self.up = False
        self.down_reason = "not connected yet"
        self.uploads = 0  # requests that carried voice clips
        self.failovers = 0  # times the service went down
        self.last_replica = ""

    # -- lifecycle -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Start the HTTP client and check the service once. An unreachable service is not an error: the fallback
        speaks and the prober brings the service back when it answers."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="ishow-remote-http", daemon=True)
        self._thread.start()
        self._session = self._run(self._new_session(), timeout=10)
        reason = self._run(self._probe(min(2.0, self.remote.timeout_s)), timeout=self.remote.timeout_s + 5)
        if reason is None:
            self._mark_up(first=True)
        else:
            self._mark_down(reason)

    async def _new_session(self) -> aiohttp.ClientSession:
        headers = {CLIENT_HEADER: self.client}
        if self.remote.token:
            headers["Authorization"] = f"Bearer {self.remote.token}"
        return aiohttp.ClientSession(headers=headers)

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._prober is not None:
            self._prober.cancel()
        if self._session is not None:
            self._run(self._session.close(), timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = self._session = self._thread = None

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "url": self.url,
            "client": self.client,
            "service": "up" if self.up else "down",
            "serving": "service" if self.up else "fallback",
            "down_reason": None if self.up else self.down_reason,
            "failovers": self.failovers,
            "uploads": self.uploads,
            "last_replica": self.last_replica or None,
        }

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None, "RemoteEngine.load() must run first"
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    # -- service state -----------------------------------------------------------------------------------------
    def _mark_up(self, first: bool = False) -> None:
        with self._lock:
            was_up, self.up = self.up, True
        if first:
            log.info("remote synthesis service ready", url=self.url, client=self.client)
        elif not was_up:
            log.warning(f"remote synthesis service {self.url} is back; speaking with it again")

    def _mark_down(self, reason: str) -> None:
        with self._lock:
            was_up, self.up = self.up, False
            self.down_reason = reason
            start = self._prober is None or self._prober.done()
            if was_up:
                self.failovers += 1
        if was_up or start:
            log.warning(
                f"remote synthesis service {self.url} unavailable ({reason}); speaking with the "
                f"{self.cfg.fallback} fallback and checking it again every {self.remote.retry_s:g} s"
            )
        if start and self._loop is not None:
            self._prober = asyncio.run_coroutine_threadsafe(self._probe_until_up(), self._loop)

    async def _probe(self, timeout: float) -> str | None:
        """``None`` when ``GET /healthz`` answers ok, else why not."""
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status != 200:
                    return f"health check answered HTTP {resp.status}{_refusal_hint(resp.status)}"
                body = await resp.json(content_type=None)
                return None if isinstance(body, dict) and body.get("ok") else "health check says not ready"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
            return _network_reason(e, timeout)

    async def _probe_until_up(self) -> None:
        while not self.up:
            await asyncio.sleep(self.remote.retry_s)
            if await self._probe(min(2.0, self.remote.retry_s, self.remote.timeout_s)) is None:
                self._mark_up()
                return

    # -- voices ----------------------------------------------------------------------------------------------
    def prepare_voice(self, voice: VoiceSpec) -> None:
        self._clip(voice)

    def _clip(self, voice: VoiceSpec) -> tuple[VoiceClip, str]:
        path, key = reference_key(voice, "the remote f5 service")
        cached = self._clips.get(voice.id)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise VoiceError(f"voice {voice.id!r}: reference audio {str(path)!r} is not readable: {e}") from e
        suffix = path.suffix.lower() if path.suffix.lower() in AUDIO_SUFFIXES else ".wav"
        clip = VoiceClip(ref_text=voice.ref_text.strip(), audio=data, suffix=suffix)
        digest = clip.digest
        self._clips[voice.id] = (key, clip, digest)
        return clip, digest

    # -- synthesis -------------------------------------------------------------------------------------------
    def synthesize(self, requests: Sequence[SynthRequest]) -> list[Waveform]:
        if not requests:
            return []
        if not self.up:
            raise ServiceUnavailableError(f"remote synthesis service {self.url} is down: {self.down_reason}")
        items: list[Item] = []
        clips: dict[str, VoiceClip] = {}
        for r in requests:
            clip, digest = self._clip(r.voice)
            clips[digest] = clip
            # engine.speed and engine.seed are already in the request (the worker copies them in, once); the voice's
            # own speed is folded here because the replica knows the voice only by its clip
            speed = r.speed * r.voice.speed
            items.append(Item(text=r.text, voice=digest, nfe=r.nfe_step, speed=speed, seed=r.seed))
        try:
            reply = self._run(self._call(items, clips), timeout=2 * self.remote.timeout_s + 5)
        except concurrent.futures.TimeoutError:
            reply = f"no reply within {2 * self.remote.timeout_s + 5:g} s"
        if isinstance(reply, str):
            self._mark_down(reply)
            raise ServiceUnavailableError(f"remote synthesis service {self.url}: {reply}")
        self.last_replica = reply.replica
        out: list[Waveform] = []
        for r, res in zip(requests, reply.items, strict=True):
            if res.audio is None:
                if res.kind == "voice":
                    raise VoiceError(f"voice {r.voice.id!r} on the remote service: {res.error}")
                raise InputError(f"remote service refused {r.text[:40]!r}: {res.error}")
            out.append(res.audio)
        return out

    async def _call(self, items: list[Item], clips: dict[str, VoiceClip]) -> SynthReply | str:
        """The reply, or why the service is unavailable (a string). At most two posts: hashes, then clips."""
        assert self._session is not None
        voices: dict[str, VoiceClip] | None = None
        for _attempt in range(2):
            body = encode_call(self.client, items, voices)
            try:
                async with self._session.post(
                    f"{self.url}/synthesize",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self.remote.timeout_s),
                ) as resp:
                    payload = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                return _network_reason(e, self.remote.timeout_s)
            if status == 200:
                try:
                    return decode_reply(payload, len(items))
                except ProtocolError as e:
                    return f"unreadable reply: {e}"
            if status == 409 and voices is None:
                voices = clips  # the replica does not know some voice: send every clip of this request once
                self.uploads += 1
                continue
            text = payload[:300].decode("utf-8", errors="replace")
            if status in (400, 413, 422):
                raise InputError(f"remote service refused the request (HTTP {status}): {text}")
            return f"HTTP {status}{_refusal_hint(status)}: {text}"
        return "the service kept answering unknown voice after the clips were sent"


def _refusal_hint(status: int) -> str:
    if status in (401, 403):
        return " (token refused: set [engine.remote] token to the service's [serve] token)"
    if status == 503:
        return " (overloaded or no replica ready)"
    return ""


def _network_reason(error: BaseException, timeout: float) -> str:
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or error}"
    return f"{type(error).__name__}: {error}"
