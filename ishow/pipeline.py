"""The stages after intake: queue → batcher → synthesis → audio buffer, and what waits in each.

``Pipeline`` runs the batch loop, reports each batch, closes the ledger when an utterance is handed to the
outputs, and removes waiting utterances wherever they are (queue, the batch in flight, synthesized audio) when
the panel, a moderator or a mute asks. Every accepted message that is dropped after acceptance is counted here
by reason. Runs on the event loop only; the engine thread is behind ``SynthStage``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog

from ishow.audio_buffer import AudioBuffer
from ishow.batcher import BatchWindow, next_batch
from ishow.config.schema import Config
from ishow.engine.worker import EngineWorker
from ishow.events import Audio, Batch, Priority, Utterance
from ishow.ledger import Ledger
from ishow.metrics import Metrics
from ishow.synth_stage import BatchReport, SynthStage
from ishow.utterance_queue import AsyncUtteranceQueue, QueueDrop

log = structlog.get_logger(__name__)

RECENT_EVICTIONS = 50  # accepted messages dropped later (queue_full, stale, removed...) listed in /api/queue


class Pipeline:
    def __init__(
        self,
        cfg: Callable[[], Config],
        queue: AsyncUtteranceQueue,
        worker: EngineWorker,
        audio: AudioBuffer,
        ledger: Ledger,
        metrics: Metrics,
        stopping: asyncio.Event,
    ) -> None:
        self._cfg = cfg
        self.queue = queue
        self.audio = audio
        self.ledger = ledger
        self.metrics = metrics
        self.stopping = stopping
        self.inflight: list[Utterance] = []  # the batch being collected or synthesized now
        self.cancelled: set[str] = set()  # ids removed while in flight: dropped when synthesis returns
        self.stage = SynthStage(worker, audio, ledger, metrics, self.cancelled)
        self.busy = False
        self.last_rtf: float | None = None  # synthesis seconds / audio seconds of the last batch
        self.recent_waits: collections.deque[tuple[Priority, float]] = collections.deque(maxlen=2000)
        # accepted ("queued": true) messages dropped afterwards: counted by reason, the last few shown in /api/queue
        self.eviction_counts: collections.Counter[str] = collections.Counter()
        self.evictions: collections.deque[dict[str, object]] = collections.deque(maxlen=RECENT_EVICTIONS)

    # ------------------------------------------------------------------ drops after acceptance

    def on_queue_drop(self, drop: QueueDrop) -> None:
        if self.ledger.dropped(drop.utterance, drop.reason):
            self._record_eviction(drop.utterance, drop.reason)

    def _record_eviction(self, u: Utterance, reason: str) -> None:
        """An accepted message that will not be spoken: counted by reason, shown in /api/queue and the panel."""
        self.eviction_counts[reason] += 1
        self.evictions.append(
            {"id": u.id, "user": u.user, "text": u.text[:200], "priority": u.priority.name.lower(), "reason": reason}
        )

    def drop_waiting(self, predicate: Callable[[Utterance], bool], reason: str) -> list[Utterance]:
        """Remove matching utterances wherever they wait: queue, in-flight batch, synthesized buffer."""
        inflight = [u for u in self.inflight if u.id not in self.cancelled and predicate(u)]
        self.cancelled.update(u.id for u in inflight)
        gone = self.queue.remove(predicate) + inflight + self.audio.remove(predicate)
        self.stage.forget({u.id for u in gone})
        for u in gone:
            if self.ledger.dropped(u, reason):
                self._record_eviction(u, reason)
        return gone

    # ------------------------------------------------------------------ batches

    async def batch_loop(self) -> None:
        cfg = self._cfg()
        window = BatchWindow(cfg.window_s, cfg.batch.max_items)
        while not self.stopping.is_set() or self.stage.has_pending:
            self.inflight = []
            max_items = self._cfg().batch.max_items
            try:
                if self.stage.has_pending:  # the rest of a long message is due: don't wait for new chat
                    while len(self.inflight) < max_items and not self.stopping.is_set():
                        item = self.queue.get_nowait()
                        if item is None:
                            break
                        self.inflight.append(item)
                    await self._synthesize(Batch(tuple(self.inflight)))
                else:
                    await self._window(window)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch failed", size=len(self.inflight))
            finally:
                self.busy = False
                self.inflight = []

    async def _window(self, window: BatchWindow) -> None:
        """Collect one window's batch and synthesize it.

        With ``batch.early_start`` (the default), the engine does not sit idle while the window is open: each time
        the collector has to wait for more chat and the engine is free, the messages it holds that no run has
        taken yet start synthesizing as an *early* run (on an idle stream, the one message); when a run's
        synthesis ends with the window still open, whatever arrived meanwhile starts at once as the next one.
        Their audio is handed over when the window closes, run after run — the window's timing and the batch's
        order stay what the streamer configured — and what arrived too late for a run is synthesized after them
        as the rest of the batch. An idle message's latency becomes the window plus the hand-off instead of the
        window plus its synthesis, and chat arriving during a window is mostly synthesized before it closes.
        """
        runs: list[tuple[asyncio.Task[BatchReport | None], tuple[Utterance, ...]]] = []
        closed = asyncio.Event()
        engine_free = True
        taken = 0  # the first ``taken`` items of self.inflight are in early runs
        over = False  # this window is done with (closed, failed or cancelled): no more runs, even from a callback

        def start_early(_items: Sequence[Utterance] = ()) -> None:
            nonlocal engine_free, taken
            if over or not engine_free or closed.is_set() or self.stopping.is_set():
                return
            if not self._cfg().batch.early_start:
                return
            items = tuple(self.inflight[taken:])
            if not items:
                return
            before = runs[-1][0] if runs else None

            def synthesized(_task: object = None) -> None:  # the engine is free again (or the run failed)
                nonlocal engine_free
                if not engine_free and runs[-1][0] is task:
                    engine_free = True
                    start_early()

            async def release() -> None:
                synthesized()
                await closed.wait()
                if before is not None:
                    await asyncio.wait([before])  # handed over after the run before it

            engine_free, taken, self.busy = False, taken + len(items), True
            task = asyncio.create_task(self.stage.run(items, release=release), name="early batch")
            task.add_done_callback(synthesized)
            runs.append((task, items))

        try:
            batch = await next_batch(self.queue, window, items=self.inflight, on_wait=start_early)
            closed.set()
            self.busy = True
            for task, items in runs:
                try:
                    self._report(await task, early=True)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("batch failed", size=len(items), early=True)
            if runs:
                self.inflight = list(batch.items[taken:])  # the early ones are handed over
                batch = Batch(tuple(self.inflight))
                if not batch.items:
                    return
            await self._synthesize(batch)
        finally:
            over = True
            for task, _ in runs:
                if not task.done():  # cancelled (shutdown): the early runs are dropped with it
                    task.cancel()
            for task, _ in runs:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _synthesize(self, batch: Batch) -> None:
        self.metrics.queue_depth.set(len(self.queue))
        report = await self.stage.run(batch.items)
        self.inflight = []
        self._report(report)

    def _report(self, report: BatchReport | None, early: bool = False) -> None:
        if report is None:
            return
        self.metrics.batches.labels(report.engine).inc()
        if report.audio_s > 0:
            self.last_rtf = report.synth_s / report.audio_s
            self.metrics.rtf.set(self.last_rtf)
        log.info(
            "batch synthesized",
            engine=report.engine,
            size=report.rows,
            synth_s=round(report.synth_s, 3),
            audio_s=round(report.audio_s, 2),
            early=early,
        )

    def on_spoken(self, audio: Audio) -> None:
        u = audio.utterance
        wait = time.monotonic() - u.created
        if not self.ledger.spoken(u):
            return
        self.metrics.queue_wait.observe(wait)
        self.recent_waits.append((u.priority, wait))
        log.info(
            "spoken",
            id=u.id,
            user=u.user,
            text=u.text[:80],
            voice=u.voice,
            engine=audio.engine,
            seconds=round(audio.duration, 2),
            streamed=not audio.final,  # a long message: ``seconds`` is its first part; the rest follows
        )

    def wait_percentile(self, pct: float, priority: Priority | None = Priority.NORMAL) -> float | None:
        """The ``pct`` percentile of recent arrival → hand-off waits (of one priority, or all)."""
        waits = sorted(w for p, w in self.recent_waits if priority is None or p == priority)
        if not waits:
            return None
        return round(waits[min(len(waits) - 1, int(len(waits) * pct / 100))], 3)
