"""WAV output: one 24 kHz PCM16 mono file per utterance, ``{timestamp}-{id}.wav``, for recordings and debugging.

Files are written by one writer task through ``asyncio.to_thread`` (never on the event loop), each first to a
hidden ``.tmp`` name and then renamed, so a half-written file never carries the final name.

Bounds and drop policy: at most ``max_pending`` utterances wait for the disk; when full, the new utterance's file
is skipped with a warning (a recording is not worth unbounded memory). Disk errors (no space, permission, a file
where the folder should be) skip that one file with one error line; the sink stays up and tries the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import io
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import soundfile as sf
import structlog

from ishow.errors import ConfigError
from ishow.events import Audio
from ishow.outputs.base import Sink

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class WavSettings:
    dir: Path
    max_pending: int = 32  # utterances waiting for the disk; full → the new file is skipped

    def __post_init__(self) -> None:
        if not isinstance(self.max_pending, int) or self.max_pending < 1:
            raise ConfigError(f"outputs.wav.max_pending: expected an integer ≥ 1, got {self.max_pending!r}")


def wav_name(audio: Audio, when: float) -> str:
    """``20250101-203015.123-<id>.wav``: sortable local timestamp, id made filesystem-safe."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    safe_id = _UNSAFE.sub("_", audio.utterance.id).strip("._")[:80] or "utterance"
    return f"{stamp}-{safe_id}.wav"


def encode_wav(audio: Audio) -> bytes:
    """The whole WAV file in memory; PCM16 from ``Audio.pcm16()``, bit-identical to what the OBS page gets."""
    pcm = np.frombuffer(audio.pcm16(), dtype="<i2")
    buf = io.BytesIO()
    sf.write(buf, pcm, audio.sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _write(path: Path, audio: Audio) -> None:
    """Runs in a worker thread. Encoded in memory, written with plain file I/O so disk errors are ``OSError``
    with their errno (libsndfile reports them only as "System error")."""
    data = encode_wav(audio)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class WavSink(Sink):
    name: ClassVar[str] = "wav"

    def __init__(self, settings: WavSettings) -> None:
        self._settings = settings
        self._queue: asyncio.Queue[tuple[Audio, float]] = asyncio.Queue(maxsize=settings.max_pending)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._written = 0
        self._failed = 0
        self._skipped = 0
        self._last_error: str | None = None
        self._last_file: str | None = None
        self._parts: dict[str, list[npt.NDArray[np.float32]]] = {}  # streamed messages still arriving

    async def start(self) -> None:
        if self._task is not None or self._closed:
            return
        folder = self._settings.dir
        try:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        except OSError as e:
            # Not fatal: every write retries the mkdir, so fixing the folder while running recovers.
            self._last_error = f"cannot create {folder}: {_describe(e)}"
            log.error("wav output folder cannot be created; files will be skipped", dir=str(folder), error=_describe(e))
        else:
            log.info("wav output ready", dir=str(folder))
        self._task = asyncio.create_task(self._write_loop(), name="wav-writer")

    async def play(self, audio: Audio) -> None:
        if self._closed or self._task is None:
            return
        uid = audio.utterance.id
        if not audio.final or uid in self._parts:  # a streamed message: one file once its last part is here
            parts = self._parts.setdefault(uid, [])
            parts.append(audio.samples)
            if not audio.final:
                return
            del self._parts[uid]
            samples = np.concatenate(parts).astype(np.float32)
            audio = dataclasses.replace(audio, samples=samples, part=0)
        try:
            self._queue.put_nowait((audio, time.time()))
        except asyncio.QueueFull:
            self._skipped += 1
            log.warning(
                "wav output behind; file skipped",
                id=audio.utterance.id,
                pending=self._queue.qsize(),
                skipped=self._skipped,
            )

    async def skip(self, utterance_id: str) -> None:
        self._parts.pop(utterance_id, None)

    async def flush(self) -> None:
        if self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        """Write what is pending, then stop."""
        if self._closed:
            return
        self._closed = True
        task = self._task
        if task is None:
            return
        drained = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait([drained, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
        task.cancel()
        await asyncio.wait([task])
        log.info("wav output closed", written=self._written, failed=self._failed, skipped=self._skipped)

    def state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "active": self._task is not None and not self._closed,
            "dir": str(self._settings.dir),
            "pending": self._queue.qsize(),
            "written": self._written,
            "failed": self._failed,
            "skipped": self._skipped,
            "last_file": self._last_file,
            "last_error": self._last_error,
        }

    def _fail(self, path: Path, reason: str) -> None:
        self._failed += 1
        self._last_error = f"{path}: {reason}"
        log.error("wav file not written; skipped", path=str(path), error=reason, failed=self._failed)

    async def _write_loop(self) -> None:
        while True:
            audio, when = await self._queue.get()
            try:
                path = self._settings.dir / wav_name(audio, when)
                try:
                    await asyncio.to_thread(_write, path, audio)
                except OSError as e:
                    self._fail(path, _describe(e))
                except sf.SoundFileError as e:
                    self._fail(path, f"encoding failed: {e}")
                except Exception:  # supervisor boundary of this task: one bad file must not end the recording
                    self._failed += 1
                    log.exception("wav file not written; skipped", path=str(path))
                else:
                    self._written += 1
                    self._last_file = str(path)
                    log.debug("wav file written", path=str(path), seconds=round(audio.duration, 3))
            finally:
                self._queue.task_done()


def _describe(e: OSError) -> str:
    """``ENOSPC No space left on device`` — errno name and message, without a traceback."""
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return f"{name} {text}".strip()
