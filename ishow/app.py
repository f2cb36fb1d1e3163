"""The daemon: wires sources → policy → queue → batcher → engine worker → player → sinks, and owns every task.

Startup order: engine (in its thread) → sinks → HTTP server → sources, batcher and player in one TaskGroup.
Shutdown (SIGINT/SIGTERM or ``stop``): sources stop; the batch in flight is finished or dropped per
``engine.on_shutdown``; audio already made is handed to the sinks; sinks, engine and server close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ishow.batcher import BatchWindow, next_batch
from ishow.boundary import platform_label, sanitize_event, sanitize_removal
from ishow.config import Config
from ishow.engine.worker import EngineFactory, EngineWorker, default_engine_factory
from ishow.errors import StartupError
from ishow.events import SAMPLE_RATE, Audio, Batch, ChatEvent, EventKind, Priority, Removal, User, Utterance
from ishow.ledger import Ledger
from ishow.lifecycle import bind_problem, bound_port, has_listener, install_signal_handlers, supervise
from ishow.metrics import Metrics
from ishow.mutes import MuteList
from ishow.outputs.base import Sink
from ishow.outputs.obs import ObsHub, ObsSettings
from ishow.player import AudioBuffer, Player
from ishow.policy.compose import Dropped, compose
from ishow.policy.gates import ChatGate
from ishow.queue import AsyncUtteranceQueue, QueueDrop
from ishow.reload import ConfigWatcher, live_part, restart_needed
from ishow.sources.base import Source
from ishow.sources.replay import ReplaySource
from ishow.synth_stage import SynthStage

log = structlog.get_logger(__name__)

LISTENER_POLL_S = 0.25
# A platform may deliver one message twice (a reconnect that replays recent chat, a super chat sent again):
# the same (platform, msg_id) within this window is dropped as "duplicate_id". Bounded by count too.
DUPLICATE_ID_WINDOW_S = 120.0
MAX_RECENT_IDS = 10_000
RECENT_EVICTIONS = 50  # accepted messages dropped later (queue_full, stale, removed...) listed in /api/queue


def build_sources(cfg: Config) -> list[Source]:
    from ishow.sources.registry import create_source

    return [create_source(sc.name or f"{sc.kind}{i}", sc) for i, sc in enumerate(cfg.sources) if sc.enabled]


def build_sinks(cfg: Config) -> list[Sink]:
    sinks: list[Sink] = []
    out = cfg.outputs
    if out.obs.enabled:
        sinks.append(
            ObsHub(
                ObsSettings(
                    max_client_queue=out.obs.max_client_queue,
                    send_timeout_s=out.obs.send_timeout_s,
                    max_clients=out.obs.max_clients,
                    max_clients_per_remote=out.obs.max_clients_per_remote,
                )
            )
        )
    if out.local.enabled:
        from ishow.outputs.local import LocalSettings, LocalSink

        device: str | int | None = out.local.device or None
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        sinks.append(LocalSink(LocalSettings(device=device, volume=out.local.volume)))
    if out.wav.enabled:
        from ishow.outputs.wav import WavSettings, WavSink

        sinks.append(WavSink(WavSettings(dir=out.wav.dir)))
    if out.obs_websocket.enabled:
        from ishow.outputs.obs_websocket import ObsWebsocketSink

        sinks.append(ObsWebsocketSink(out.obs_websocket, token=cfg.server.token))
    return sinks


class Daemon:
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        cfg: Config,
        *,
        engine_factory: EngineFactory = default_engine_factory,
        sinks: list[Sink] | None = None,
        sources: list[Source] | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.metrics = Metrics()
        self.queue = AsyncUtteranceQueue(
            cfg.queue.max_size, cfg.queue.max_age_s, self._on_queue_drop, max_paid=cfg.queue.max_paid
        )
        self.worker = EngineWorker(cfg.engine, cfg.voices, engine_factory, max_batch=cfg.batch.max_items)
        self.sinks = build_sinks(cfg) if sinks is None else sinks
        self.obs = next((s for s in self.sinks if isinstance(s, ObsHub)), None)
        self.sources = build_sources(cfg) if sources is None else sources
        # Finished audio waiting for the player: one batch ahead at most, so stale chat is dropped in the queue
        # (where its age is checked), not after synthesis; when full the batcher waits (backpressure).
        self.audio = AudioBuffer(cfg.batch.max_items)
        self.player = Player(self.sinks, self.audio, cfg.outputs.realtime, self._on_spoken)
        self._muted = MuteList()  # bounded: past MAX_MUTED users the oldest mute expires first
        # accepted ("queued": true) messages dropped afterwards: counted by reason, the last few shown in /api/queue
        self.eviction_counts: collections.Counter[str] = collections.Counter()
        self.evictions: collections.deque[dict[str, object]] = collections.deque(maxlen=RECENT_EVICTIONS)
        self._recent_ids: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self.recent_waits: collections.deque[tuple[Priority, float]] = collections.deque(maxlen=2000)
        self.gate = ChatGate(cfg.filter)
        self._inflight: list[Utterance] = []  # the batch being collected or synthesized now
        self._cancelled: set[str] = set()  # ids removed while in flight: dropped when synthesis returns
        self.ledger = Ledger(self.metrics)  # every accepted message ends once: spoken or dropped(reason)
        self.stage = SynthStage(self.worker, self.audio, self.ledger, self.metrics, self._cancelled)
        self._busy = False
        self.port: int | None = None
        self.watcher: ConfigWatcher | None = None
        self.last_rtf: float | None = None  # synthesis seconds / audio seconds of the last batch
        self.started = asyncio.Event()
        self._told_nobody = False
        self._shutdown_deadline = 0.0
        self.stopping = asyncio.Event()

    # ------------------------------------------------------------------ intake

    def ingest(self, event: ChatEvent | Removal) -> None:
        """What sources emit (called on the event loop): chat to speak, or removals to apply."""
        if isinstance(event, Removal):
            self.remove(sanitize_removal(event))
        else:
            self.accept(event)

    def accept(self, event: ChatEvent, voice: str = "") -> Utterance | Dropped:
        """Filter, compose and enqueue one chat event (its strings made valid Unicode first)."""
        event = sanitize_event(event)
        self.metrics.messages.labels(platform_label(event.platform)).inc()
        outcome: Utterance | Dropped
        if self._muted and self._muted.is_muted((event.user.id, event.user.name), time.monotonic()):
            outcome = Dropped("muted", event)
        elif event.msg_id and self._seen_id(event.platform, event.msg_id):
            outcome = Dropped("duplicate_id", event)
        else:
            outcome = compose(event, self.cfg, self.gate, time.monotonic(), voice)
        if isinstance(outcome, Dropped):
            self.metrics.dropped.labels(outcome.reason).inc()
            log.debug("message dropped", reason=outcome.reason, user=event.user.name, text=event.text[:80])
            return outcome
        self.ledger.accept(outcome)
        self.queue.put(outcome)
        self.metrics.queue_depth.set(len(self.queue))
        return outcome

    def _seen_id(self, platform: str, msg_id: str) -> bool:
        """True when this message was already accepted recently; else remember it."""
        now = time.monotonic()
        key = (platform, msg_id)
        seen = self._recent_ids.get(key)
        if seen is not None and now - seen < DUPLICATE_ID_WINDOW_S:
            return True
        self._recent_ids[key] = now
        self._recent_ids.move_to_end(key)
        while self._recent_ids and (
            len(self._recent_ids) > MAX_RECENT_IDS
            or now - next(iter(self._recent_ids.values())) >= DUPLICATE_ID_WINDOW_S
        ):
            self._recent_ids.popitem(last=False)
        return False

    def remove(self, removal: Removal) -> list[Utterance]:
        """A moderator deleted chat upstream: drop the matching waiting utterances."""

        def match(u: Utterance) -> bool:
            if u.platform != removal.platform:
                return False
            if removal.msg_id:
                return u.msg_id == removal.msg_id
            return not removal.user_id or u.user_id == removal.user_id

        gone = self._drop_waiting(match, "removed")
        for u in gone:
            log.info("queued message removed by a moderator", user=u.user, text=u.text[:80], platform=u.platform)
        return gone

    def submit_text(self, user: str, text: str, platform: str = "api", voice: str = "") -> Utterance | Dropped:
        event = ChatEvent(
            platform=platform, room="api", user=User(id=user, name=user), kind=EventKind.DANMAKU, text=text
        )
        return self.accept(event, voice)

    def _on_queue_drop(self, drop: QueueDrop) -> None:
        if self.ledger.dropped(drop.utterance, drop.reason):
            self._record_eviction(drop.utterance, drop.reason)

    def _record_eviction(self, u: Utterance, reason: str) -> None:
        """An accepted message that will not be spoken: counted by reason, shown in /api/queue and the panel."""
        self.eviction_counts[reason] += 1
        self.evictions.append(
            {"id": u.id, "user": u.user, "text": u.text[:200], "priority": u.priority.name.lower(), "reason": reason}
        )

    # ------------------------------------------------------------------ stages

    async def _run_source(self, source: Source) -> None:
        gauge = self.metrics.source_state.labels(source.name)
        try:
            if isinstance(source, ReplaySource) and source.name.startswith("demo"):
                await self._wait_for_listener(source)
                if self.stopping.is_set():  # shut down while waiting (3.11's wait_for can swallow our cancel)
                    return
            gauge.set(1)
            await source.run(self.ingest)
        except asyncio.CancelledError:
            raise
        except Exception:
            source.state = "failed"
            log.exception("source failed", source=source.name)
        finally:
            gauge.set(0)

    async def _batch_loop(self) -> None:
        window = BatchWindow(self.cfg.window_s, self.cfg.batch.max_items)
        while not self.stopping.is_set() or self.stage.has_pending:
            self._inflight = []
            if self.stage.has_pending:  # the rest of a long message is due: don't wait for new chat
                while len(self._inflight) < self.cfg.batch.max_items and not self.stopping.is_set():
                    item = self.queue.get_nowait()
                    if item is None:
                        break
                    self._inflight.append(item)
                batch = Batch(tuple(self._inflight))
            else:
                batch = await next_batch(self.queue, window, items=self._inflight)
            self._busy = True
            try:
                await self._synthesize(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch failed", size=len(batch.items))
            finally:
                self._busy = False
                self._inflight = []

    async def _synthesize(self, batch: Batch) -> None:
        self.metrics.queue_depth.set(len(self.queue))
        report = await self.stage.run(batch.items)
        self._inflight = []
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
        )

    def _on_spoken(self, audio: Audio) -> None:
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

    # ------------------------------------------------------------------ control (panel, API)

    def _drop_waiting(self, predicate: Callable[[Utterance], bool], reason: str) -> list[Utterance]:
        """Remove matching utterances wherever they wait: queue, in-flight batch, synthesized buffer."""
        inflight = [u for u in self._inflight if u.id not in self._cancelled and predicate(u)]
        self._cancelled.update(u.id for u in inflight)
        gone = self.queue.remove(predicate) + inflight + self.audio.remove(predicate)
        self.stage.forget({u.id for u in gone})
        for u in gone:
            if self.ledger.dropped(u, reason):
                self._record_eviction(u, reason)
        return gone

    def clear(self) -> int:
        """Drop everything waiting (queued, being synthesized, synthesized); the utterance playing continues."""
        return len(self._drop_waiting(lambda _: True, "cleared"))

    def remove_id(self, utterance_id: str) -> bool:
        return bool(self._drop_waiting(lambda u: u.id == utterance_id, "removed"))

    def mute(self, user: str, minutes: float) -> int:
        """Silence ``user`` (name or id) for ``minutes``; their waiting messages are dropped too."""
        self._muted.mute(user, time.monotonic() + minutes * 60.0)
        gone = self._drop_waiting(lambda u: user in (u.user, u.user_id), "muted")
        log.info("user muted", user=user, minutes=minutes, removed=len(gone))
        return len(gone)

    def unmute(self, user: str) -> bool:
        return self._muted.unmute(user)

    def muted(self) -> dict[str, float]:
        return self._muted.remaining(time.monotonic())

    def wait_percentile(self, pct: float, priority: Priority | None = Priority.NORMAL) -> float | None:
        """The ``pct`` percentile of recent arrival → hand-off waits (of one priority, or all)."""
        waits = sorted(w for p, w in self.recent_waits if priority is None or p == priority)
        if not waits:
            return None
        return round(waits[min(len(waits) - 1, int(len(waits) * pct / 100))], 3)

    def snapshot(self) -> dict[str, object]:
        """The live queue for the control panel: playing, synthesized, waiting."""
        now = time.monotonic()

        def row(u: Utterance, state: str) -> dict[str, object]:
            return {
                "id": u.id,
                "user": u.user,
                "text": u.text,
                "raw": u.raw,
                "voice": u.voice,
                "platform": u.platform,
                "kind": u.kind.value,
                "priority": u.priority.name.lower(),
                "state": state,
                "age_s": round(now - u.created, 1),
            }

        rows = []
        if self.player.current is not None:
            rows.append(row(self.player.current, "playing"))
        rows += [row(u, "ready") for u in self.audio.utterances()]
        rows += [row(u, "synthesizing") for u in self._inflight if u.id not in self._cancelled]
        rows += [row(u, "queued") for u in self.queue.snapshot()]
        return {
            "paused": self.player.paused,
            "items": rows,
            "muted": self.muted(),
            "dropped": {"counts": dict(self.eviction_counts), "recent": list(self.evictions)[::-1]},
        }

    # ------------------------------------------------------------------ lifecycle

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "ready": self.worker.ready,  # false while CUDA graphs are still being captured in the background
            "engine": self.worker.active_kind,
            "model_loaded": self.worker.model_loaded,
            "engine_state": self.worker.state(),
            "warmup": (p.as_dict() if (p := self.worker.warmup_progress()) is not None else None),
            "sources": [{"name": s.name, "state": s.state} for s in self.sources],
            "queue": len(self.queue),
            "paused": self.player.paused,
            "wait_p95_s": self.wait_percentile(95),
            "outputs": [s.state() for s in self.sinks],
        }

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        await self.worker.start()
        runner: web.AppRunner | None = None
        try:
            for sink in self.sinks:
                await sink.start()
            from ishow.server import build_app

            # keepalive_timeout also closes a connection that has not sent a complete request head by then
            # (aiohttp arms it at connect): slow clients cannot hold connections open with half a header
            runner = web.AppRunner(
                build_app(self),
                access_log=None,
                handle_signals=False,
                keepalive_timeout=self.cfg.server.header_timeout_s,
            )
            await runner.setup()
            site = web.TCPSite(runner, self.cfg.server.host, self.cfg.server.port)
            try:
                await site.start()
            except OSError as e:
                raise StartupError(bind_problem(self.cfg.server.host, self.cfg.server.port, e)) from e
            self.port = bound_port(runner, self.cfg.server.port)
            self._announce()
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                source_tasks = [tg.create_task(self._run_source(s), name=f"source:{s.name}") for s in self.sources]
                batcher = tg.create_task(self._batch_loop(), name="batcher")
                player = tg.create_task(self.player.run(), name="player")
                watcher = None
                if self.config_path is not None:
                    self.watcher = ConfigWatcher(self.config_path, self.cfg, self.apply_config)
                    watcher = tg.create_task(self._supervise(self.watcher.run, "config watcher"), name="watcher")
                await stop.wait()
                log.info("shutting down")
                self.stopping.set()
                for t in source_tasks:
                    t.cancel()
                if watcher is not None:
                    watcher.cancel()
                await self._drain(batcher, player)
        finally:
            await self._close_sinks()
            if runner is not None:
                await runner.cleanup()
            await self.worker.close()
            log.info("stopped")

    async def _drain(self, batcher: asyncio.Task[None], player: asyncio.Task[None]) -> None:
        """``finish``: the batch in flight (and the rest of a long message already playing) is synthesized, and
        everything synthesized goes to the outputs, paused or not — all within ``engine.shutdown_timeout_s``.
        ``drop``: only what is synthesized already goes out. What is left is dropped as "shutdown", one line."""
        deadline = time.monotonic() + self.cfg.engine.shutdown_timeout_s
        self._shutdown_deadline = deadline
        self.player.resume()  # paused or not: what is synthesized goes out (and frees the batcher's put)
        self.player.realtime = False  # hand what is left to the sinks now; they play it at their pace
        if self.cfg.engine.on_shutdown == "finish" and (self._busy or self.stage.has_pending):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(batcher), max(0.0, deadline - time.monotonic()))
        batcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await batcher
        self.queue.clear()  # not synthesized: the ledger below counts them as dropped
        await self.stage.close_streams()
        await self.audio.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(player), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
        left = self.ledger.still_open()
        for u in left:
            self.ledger.dropped(u, "shutdown")
        if left:
            paid = sum(1 for u in left if u.priority >= Priority.PAID)
            log.warning("shutdown: messages not spoken", dropped=len(left), paid=paid, reason="shutdown")

    async def _close_sinks(self) -> None:
        """Outputs flush (within what is left of the shutdown time), then close; a failure is logged."""
        deadline = self._shutdown_deadline or time.monotonic() + self.cfg.engine.shutdown_timeout_s
        for sink in self.sinks:
            try:
                await asyncio.wait_for(sink.flush(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("output did not finish playing in time; closing it", output=sink.name)
            except Exception:
                log.exception("output failed to flush", output=sink.name)
            try:
                await sink.close()
            except Exception:
                log.exception("output failed to close", output=sink.name)

    async def _supervise(self, run: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        await supervise(run, what)

    def _has_listener(self) -> bool:
        return has_listener(self.sinks)

    async def _wait_for_listener(self, source: Source) -> None:
        """First run: no speakers and no OBS page → say where to listen, and hold the demo until someone does."""
        if self._has_listener():
            return
        if self.obs is None:  # no page could ever connect: say so, and let the demo run
            log.warning("nobody is listening: every audio output is off or unavailable", source=source.name)
            return
        if not self._told_nobody:
            self._told_nobody = True
            log.warning(f"nobody is listening: open {self.url}/obs", source=source.name)
        while not self._has_listener():  # checked a few times a second until a page connects (or shutdown)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), LISTENER_POLL_S)
            if self.stopping.is_set():
                return
        log.info("a listener connected; the demo starts", source=source.name)

    async def apply_config(self, new: Config, voices_changed: bool = False) -> None:
        """Swap in a validated config: filters, templates, voices and queue limits apply now."""
        old = self.cfg
        later = restart_needed(old, new)
        live = live_part(old, new)
        if live.voices != old.voices or voices_changed:
            await self.worker.update_voices(live.voices)
        gate = ChatGate(live.filter) if live.filter != old.filter else self.gate
        self.queue.set_limits(live.queue.max_size, live.queue.max_age_s, live.queue.max_paid)
        self.cfg, self.gate = live, gate  # one atomic swap on the event loop
        changed = [f.name for f in dataclasses.fields(Config) if getattr(old, f.name) != getattr(live, f.name)]
        log.info("config reloaded", changed=changed, voices_changed=voices_changed)
        if later:
            log.warning("these config sections change only after a restart", sections=later)

    @property
    def url(self) -> str:
        host = self.cfg.server.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"

    def _announce(self) -> None:
        url = self.url
        log.info("ishow is running", obs_page=f"{url}/obs", api=f"{url}/api/messages", engine=self.worker.active_kind)


__all__ = ["Daemon", "build_sinks", "build_sources", "install_signal_handlers"]
