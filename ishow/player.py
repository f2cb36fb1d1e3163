"""The player: hands finished utterances to the sinks one at a time, paced at playback speed.

A long message arrives in parts (``Audio.part``/``final``): each part goes to the sinks as soon as it is
synthesized, and the whole message is paced once, by its total duration.

Pacing keeps the backlog in the daemon's queue (where stale/overflow policy applies) instead of in a browser or a
sound card buffer: the next utterance is handed over ``LEAD_S`` before the current one ends, so playback stays
gapless. Pause holds the next hand-off; skip cuts the current utterance in every sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog

from ishow.audio_buffer import AudioBuffer
from ishow.events import Audio, Utterance
from ishow.outputs.base import Sink

log = structlog.get_logger(__name__)

LEAD_S = 0.3


class Player:
    def __init__(
        self,
        sinks: Sequence[Sink],
        buffer: AudioBuffer,
        realtime: bool,
        on_spoken: Callable[[Audio], None],
    ) -> None:
        self.sinks = list(sinks)
        self.buffer = buffer
        self.realtime = realtime
        self._on_spoken = on_spoken
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._skip = asyncio.Event()
        self.current: Utterance | None = None
        self.current_started = 0.0
        self.speed = 1.0  # playback clock rate for pacing (tests and soak runs compress time with > 1)

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def pause(self) -> None:
        self._resumed.clear()

    def resume(self) -> None:
        self._resumed.set()

    async def skip(self) -> Utterance | None:
        """Cut the utterance playing now (if any) in every sink; the next one follows."""
        current = self.current
        if current is None:
            return None
        self._skip.set()
        for sink in self.sinks:
            try:
                await sink.skip(current.id)
            except Exception:
                log.exception("sink skip failed", sink=sink.name, id=current.id)
        return current

    async def run(self) -> None:
        """Play until a ``None`` arrives in the buffer (shutdown drain)."""
        while True:
            await self._resumed.wait()
            audio = await self.buffer.get()
            if audio is None:
                return
            if self.paused:  # paused while we waited for audio: keep it first in line
                self.buffer.push_front(audio)
                continue
            await self._play(audio)

    async def _play(self, audio: Audio) -> None:
        """Hand one message to the sinks: all its parts, as they arrive; then pace by its whole duration."""
        uid = audio.utterance.id
        self.current = audio.utterance
        self.current_started = time.monotonic()
        self._skip.clear()
        total = 0.0
        while True:
            if not self._skip.is_set():
                await self._hand(audio)
            if audio.part == 0:
                self._on_spoken(audio)
            total += audio.duration
            if audio.final:
                break
            audio = await self.buffer.get_part(uid)
        if self.realtime and not self._skip.is_set():
            left = (total - LEAD_S) / self.speed - (time.monotonic() - self.current_started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._skip.wait(), max(0.0, left))
        self.current = None

    async def _hand(self, audio: Audio) -> None:
        for sink in self.sinks:
            try:
                await sink.play(audio)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sink failed", sink=sink.name, id=audio.utterance.id, part=audio.part)
