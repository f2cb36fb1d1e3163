"""Local speakers through sounddevice (PortAudio).

One dedicated thread owns the output stream: it opens it, writes each utterance's samples in short blocks
(``block_s``) back to back — in order, never overlapping — and closes it. The event loop only puts utterances on
a bounded thread-safe queue.

No audio (PortAudio missing, no output device, device not found): ``start()`` logs ONE warning
("no audio output: …; audio still goes to the OBS page at /obs") and the sink stays inactive; ``play()`` is then a
no-op. ``sounddevice`` is imported only when the stream is opened, never at import time.

Bounds and drop policy: at most ``max_queue`` utterances wait. When full, the OLDEST waiting utterance is dropped
(with a warning) to make room: live chat is most useful while it is current, and the player upstream already
paces playback, so this only triggers when the audio device stalls.

``flush()`` (shutdown) waits until everything handed over has been written to the device; ``close()`` then stops:
the utterance playing is cut at the next block boundary and anything still waiting is discarded (logged).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from ishow.audio_format import SAMPLE_RATE
from ishow.errors import ConfigError
from ishow.events import Audio
from ishow.outputs.base import Sink

log = structlog.get_logger(__name__)

NO_AUDIO_HINT = "audio still goes to the OBS page at /obs"


@dataclass(frozen=True)
class LocalSettings:
    device: str | int | None = None  # PortAudio device index, a (sub)string of its name, or None for the default
    volume: float = 1.0  # linear gain, 0…4
    max_queue: int = 16  # utterances waiting for the speakers; full → the oldest waiting one is dropped
    block_s: float = 0.05  # write granularity; how quickly skip/close take effect
    open_timeout_s: float = 10.0  # opening a broken audio backend may hang; give up after this

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.volume, (int, float)) or not 0.0 <= self.volume <= 4.0:
            problems.append(f"outputs.local.volume: expected a number in 0…4, got {self.volume!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            problems.append(f"outputs.local.max_queue: expected an integer ≥ 1, got {self.max_queue!r}")
        if not isinstance(self.block_s, (int, float)) or not 0.0 < self.block_s <= 1.0:
            problems.append(f"outputs.local.block_s: expected seconds in (0, 1], got {self.block_s!r}")
        if not isinstance(self.open_timeout_s, (int, float)) or not self.open_timeout_s > 0:
            problems.append(f"outputs.local.open_timeout_s: expected a number > 0, got {self.open_timeout_s!r}")
        if problems:
            raise ConfigError(problems)


class StreamWriter(Protocol):
    """The audio stream as the playback thread sees it (``sounddevice.OutputStream`` in production)."""

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        """Write mono float32 samples ``[N]``; blocks until the device accepted them."""

    def close(self) -> None:
        """Let queued audio finish, then release the device."""


StreamFactory = Callable[[LocalSettings, int], StreamWriter]
"""``(settings, sample_rate) → StreamWriter``; runs on the playback thread; raising means "no audio output"."""


class _SoundDeviceStream:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, samples: npt.NDArray[np.float32]) -> None:
        self._stream.write(samples.reshape(-1, 1))

    def close(self) -> None:
        try:
            self._stream.stop()
        finally:
            self._stream.close()


def open_sounddevice(settings: LocalSettings, sample_rate: int) -> StreamWriter:
    """Open the configured PortAudio output. Raises OSError (no PortAudio), ValueError (no such device), or
    ``sounddevice.PortAudioError``."""
    import sounddevice as sd  # lazy: raises OSError('PortAudio library not found') where PortAudio is missing

    device = settings.device
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    # Validates the device (or that a default output exists) with a readable message before opening.
    sd.query_devices(device, "output")
    stream = sd.OutputStream(samplerate=sample_rate, channels=1, dtype="float32", device=device, latency="high")
    stream.start()
    return _SoundDeviceStream(stream)


@dataclass(frozen=True, eq=False)
class _Job:
    id: str
    samples: npt.NDArray[np.float32]


class LocalSink(Sink):
    name: ClassVar[str] = "local"

    def __init__(self, settings: LocalSettings | None = None, *, stream_factory: StreamFactory | None = None) -> None:
        self._settings = settings or LocalSettings()
        self._factory: StreamFactory = stream_factory or open_sounddevice
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=self._settings.max_queue)
        self._stop = threading.Event()
        self._skip = threading.Event()
        self._thread: threading.Thread | None = None
        self._active = False
        self._started = False
        self._closed = False
        self._problem: str | None = None
        self._played = 0
        self._dropped = 0
        self._playing: str | None = None
        self._skipped: collections.deque[str] = collections.deque(maxlen=64)  # ids to cut / not to start
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drained = asyncio.Event()
        self._drained.set()

    async def start(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        opened.add_done_callback(_consume)  # a late failure after a timeout must not warn "never retrieved"

        def report(exc: BaseException | None) -> None:  # called from the playback thread
            loop.call_soon_threadsafe(_settle, opened, exc)

        self._thread = threading.Thread(target=self._run, args=(report,), name="ishow-local-audio", daemon=True)
        self._thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(opened), self._settings.open_timeout_s)
        except TimeoutError:
            self._stop.set()
            self._no_audio(f"opening the audio device took longer than {self._settings.open_timeout_s:g} s")
        except Exception as e:  # noqa: BLE001 -- any failure to open audio means "no local audio", not a crash
            self._no_audio(_describe(e))
        else:
            self._active = True
            log.info("local audio output ready", device=self._settings.device, volume=self._settings.volume)

    async def play(self, audio: Audio) -> None:
        """Queue ``audio`` for the speakers; a no-op while inactive. Never waits for the device."""
        if not self._active:
            return
        uid = audio.utterance.id
        if audio.sample_rate != SAMPLE_RATE:
            log.warning("local audio: unexpected sample rate; utterance skipped", id=uid, sample_rate=audio.sample_rate)
            return
        job = _Job(uid, np.ascontiguousarray(audio.samples, dtype=np.float32))
        self._drained.clear()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            try:
                old = self._queue.get_nowait()
            except queue.Empty:
                old = None
            # Only the event loop puts, so after taking one out there is room.
            self._queue.put_nowait(job)
            self._dropped += 1
            log.warning(
                "local audio behind; dropped the oldest waiting utterance",
                dropped=old.id if old is not None else None,
                queued=self._queue.qsize(),
                total_dropped=self._dropped,
            )

    async def skip(self, utterance_id: str) -> None:
        """Cut ``utterance_id``: now if it is playing, else when it (or a later part of it) comes up. Another
        utterance playing in the hand-off window is not touched."""
        self._skipped.append(utterance_id)
        if self._playing == utterance_id:
            self._skip.set()

    def skip_current(self) -> None:
        """Cut the utterance playing now (at the next block boundary); the next one follows."""
        self._skip.set()

    async def flush(self) -> None:
        """Shutdown: return when everything handed over has been written to the device."""
        if self._active:
            await self._drained.wait()

    async def close(self) -> None:
        """Stop: cut the current utterance, discard what still waits (``flush`` first to play it), release the
        device."""
        if self._closed:
            return
        self._closed = True
        self._active = False
        self._stop.set()
        thread = self._thread
        if thread is None:
            return
        left = self._queue.qsize()
        self._discard_waiting()
        if left:
            log.warning("local audio closed with utterances not played", not_played=left)
        self._queue.put_nowait(None)  # wake the thread if it waits for work
        await asyncio.to_thread(thread.join, self._settings.open_timeout_s)
        self._discard_waiting()
        if thread.is_alive():
            log.warning("local audio thread did not stop in time; abandoned (daemon thread)")
        else:
            log.info("local audio output closed", played=self._played, dropped=self._dropped)

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "active": self._active,
            "device": self._settings.device,
            "volume": self._settings.volume,
            "queued": self._queue.qsize(),
            "playing": self._playing,
            "played": self._played,
            "dropped": self._dropped,
            "problem": self._problem,
        }

    def _signal_drained(self) -> None:  # playback thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._drained.set)

    def _discard_waiting(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _no_audio(self, reason: str) -> None:
        self._active = False
        if self._problem is None:  # one warning, however often start() is retried
            self._problem = reason
            log.warning(f"no audio output: {reason}; {NO_AUDIO_HINT}", reason=reason, device=self._settings.device)

    # -- playback thread -----------------------------------------------------------------------------------------

    def _run(self, report: Callable[[BaseException | None], None]) -> None:
        try:
            stream = self._factory(self._settings, SAMPLE_RATE)
        except Exception as e:  # noqa: BLE001 -- reported to start(), which logs it once
            report(e)
            return
        report(None)
        block = max(1, int(self._settings.block_s * SAMPLE_RATE))
        volume = np.float32(self._settings.volume)
        try:
            while not self._stop.is_set():
                job = self._queue.get()
                if job is None:
                    break
                self._skip.clear()
                if job.id not in self._skipped:
                    self._playing = job.id
                    samples = job.samples if volume == 1.0 else job.samples * volume
                    for i in range(0, len(samples), block):
                        if self._stop.is_set() or self._skip.is_set():
                            break
                        stream.write(samples[i : i + block])
                    self._playing = None
                    self._played += 1
                if self._queue.empty():
                    self._signal_drained()
        except Exception as e:  # noqa: BLE001 -- supervisor boundary of this thread: device failed mid-stream
            self._active = False
            self._problem = _describe(e)
            log.error(f"local audio output failed; inactive from now on; {NO_AUDIO_HINT}", error=self._problem)
        finally:
            self._signal_drained()
            try:
                stream.close()
            except Exception as e:  # noqa: BLE001 -- releasing a failed device must not raise on shutdown
                log.warning("local audio stream did not close cleanly", error=_describe(e))


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


def _settle(fut: asyncio.Future[None], exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(None)
    else:
        fut.set_exception(exc)


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return text or type(e).__name__
