"""The synthesis stage: one batch of utterances → audio for the player, long messages chunked and streamed.

Every message is planned into chunks by the worker (``EngineWorker.plan``): chat-sized text is one chunk; a long
text gets a short first chunk and sentence-sized rest. The first chunk is a row of the batch it arrived in, next
to other chat; its audio goes to the player at once as part 0 (``final=False``), minus a short tail kept back to
crossfade into what follows. The remaining chunks are rows of the following batches (again next to other chat):
1 chunk in the next, 2 in the one after, then 4, … — each part crossfaded into the one before, the last one
final. The player hands each part to the outputs as it arrives, so the first audio of a long message starts as
soon as its short first chunk is done, and each later part is made while the one before plays.

Accounting: each message of the batch ends here as dropped (bad input, synthesis failed, nothing to say) or goes
on to the player (which marks it spoken); a stream that was started always gets its final part, even if empty.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import structlog

from ishow.audio_buffer import AudioBuffer
from ishow.audio_format import SAMPLE_RATE
from ishow.engine.base import SynthRequest
from ishow.engine.chunking import CROSSFADE_S, crossfade_join
from ishow.engine.worker import EngineWorker, SynthResult, Waveform
from ishow.errors import IshowError
from ishow.events import Audio, Utterance
from ishow.ledger import Ledger
from ishow.metrics import Metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, eq=False)
class _Continuation:
    """The rest of a streamed message: its chunk texts, the kept-back tail of the part before, and the number of
    the next part. Part ``n`` (n ≥ 1) takes the next ``2 ** (n - 1)`` chunks: 1, 2, 4, … — each part is at least
    as long as the one playing while it is made, so slow hardware keeps up and fast hardware needs few batches."""

    utterance: Utterance
    chunks: tuple[str, ...]
    tail: Waveform
    part: int = 1

    @property
    def now(self) -> tuple[str, ...]:
        return self.chunks[: 2 ** (self.part - 1)]

    @property
    def later(self) -> tuple[str, ...]:
        return self.chunks[2 ** (self.part - 1) :]


@dataclass(frozen=True)
class BatchReport:
    rows: int
    engine: str
    synth_s: float
    audio_s: float


class SynthStage:
    def __init__(
        self, worker: EngineWorker, audio: AudioBuffer, ledger: Ledger, metrics: Metrics, cancelled: set[str]
    ) -> None:
        self.worker = worker
        self.audio = audio
        self.ledger = ledger
        self.metrics = metrics
        self.cancelled = cancelled  # ids removed while in flight (owned by the daemon)
        self.pending: collections.deque[_Continuation] = collections.deque()
        self._streams: set[str] = set()  # messages whose first part went out and whose final part has not

    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    def forget(self, ids: set[str]) -> None:
        """Messages dropped before they played: their later chunks are not synthesized."""
        self._streams -= ids
        self.pending = collections.deque(c for c in self.pending if c.utterance.id not in ids)

    async def close_streams(self) -> int:
        """Shutdown: end every started stream now with an empty final part (its rest is not synthesized)."""
        conts = list(self.pending)
        self.pending.clear()
        for c in conts:
            await self._finish(c, [], last=True)
        return len(conts)

    async def run(
        self, items: Sequence[Utterance], release: Callable[[], Awaitable[object]] | None = None
    ) -> BatchReport | None:
        """Synthesize ``items`` (and the next part of every streamed message) and hand the audio to the player.

        ``release`` (optional) is awaited between synthesis and hand-off: an early batch is synthesized while its
        window is still open and handed over when the window closes (see ``Pipeline``)."""
        conts = list(self.pending)
        self.pending.clear()
        requests: list[SynthRequest] = []
        owners: list[_Continuation | tuple[Utterance, list[str]]] = []
        for c in conts:
            for text in c.now:
                try:
                    requests.append(self.worker.request(text, c.utterance.voice))
                    owners.append(c)
                except IshowError as e:  # the voice went away in a hot reload: that chunk is skipped
                    log.warning("chunk not synthesized", id=c.utterance.id, error=str(e))
        firsts: list[Utterance] = []
        for u in items:
            if u.id in self.cancelled:  # removed while the batch was being collected (already counted)
                self.cancelled.discard(u.id)
                continue
            try:
                chunks = self.worker.plan(u.text, u.voice)
                requests.append(self.worker.request(chunks[0], u.voice))
            except IshowError as e:
                self.metrics.synth_errors.labels(type(e).__name__).inc()
                self.ledger.dropped(u, "bad_input", error=str(e))
                continue
            owners.append((u, chunks))
            firsts.append(u)
        if not requests:
            for c in conts:
                await self._finish(c, [], last=True)
            return None
        t0 = time.perf_counter()
        try:
            results = await self.worker.synthesize(requests)
            elapsed = time.perf_counter() - t0
            if release is not None:
                await release()
        except BaseException as e:
            # synthesis raised (or shutdown cancelled it): nothing of this batch is left hanging
            for u in firsts:
                self.cancelled.discard(u.id)
                self.ledger.dropped(u, "shutdown" if isinstance(e, asyncio.CancelledError) else "synth_failed")
            for c in conts:
                self._streams.discard(c.utterance.id)
            raise
        audio_s = 0.0
        try:
            for c in conts:
                waves = [r.audio for o, r in zip(owners, results, strict=True) if o is c and r.audio is not None]
                audio_s += await self._finish(c, waves)
            for owner, r in zip(owners, results, strict=True):
                if isinstance(owner, tuple):
                    audio_s += await self._first(owner[0], owner[1], r, elapsed)
        finally:
            for u in firsts:  # a removal that raced the hand-off leaves no id behind
                self.cancelled.discard(u.id)
        self.metrics.synth_seconds.observe(elapsed)
        self.metrics.batch_size.observe(len(requests))
        self.metrics.audio_seconds.inc(audio_s)
        return BatchReport(len(requests), results[0].engine if results else "none", elapsed, audio_s)

    async def _first(self, u: Utterance, chunks: list[str], r: SynthResult, elapsed: float) -> float:
        if u.id in self.cancelled:
            self.cancelled.discard(u.id)
            return 0.0
        if r.audio is None:
            self.metrics.synth_errors.labels(type(r.error).__name__).inc()
            log.warning("utterance not synthesized", id=u.id, text=u.text[:80], error=str(r.error))
            self.ledger.dropped(u, "synth_failed", error=str(r.error))
            return 0.0
        if len(chunks) == 1:
            if len(r.audio) == 0:  # e.g. only punctuation: nothing to say
                self.ledger.dropped(u, "no_speech")
                return 0.0
            audio = Audio(utterance=u, samples=r.audio, engine=r.engine, synth_seconds=elapsed)
            await self.audio.put(audio)
            return audio.duration
        self.metrics.chunks.inc(len(chunks))
        keep = min(len(r.audio), int(CROSSFADE_S * SAMPLE_RATE))
        head, tail = r.audio[: len(r.audio) - keep], r.audio[len(r.audio) - keep :]
        self.pending.append(_Continuation(u, tuple(chunks[1:]), np.ascontiguousarray(tail)))
        self._streams.add(u.id)
        audio = Audio(utterance=u, samples=head, engine=r.engine, synth_seconds=elapsed, part=0, final=False)
        await self.audio.put(audio)
        log.debug("long message streamed", id=u.id, chunks=len(chunks), first_s=round(audio.duration, 2))
        return audio.duration

    async def _finish(self, c: _Continuation, waves: list[Waveform], *, last: bool = False) -> float:
        """Hand over the next part of a streamed message: the kept tail crossfaded into ``waves``; the final part
        when nothing is left (or ``last``: shutdown), else keep a new tail and queue the rest for the next batch."""
        uid = c.utterance.id
        if uid not in self._streams:  # dropped before it played
            return 0.0
        samples = crossfade_join([c.tail, *waves], SAMPLE_RATE)
        final = last or not c.later
        if final:
            self._streams.discard(uid)
        else:
            keep = min(len(samples), int(CROSSFADE_S * SAMPLE_RATE))
            tail = np.ascontiguousarray(samples[len(samples) - keep :])
            samples = samples[: len(samples) - keep]
            self.pending.append(_Continuation(c.utterance, c.later, tail, c.part + 1))
        audio = Audio(utterance=c.utterance, samples=samples, part=c.part, final=final)
        await self.audio.put(audio)
        return audio.duration
