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
from ishow.errors import IshowError
from ishow.events import SAMPLE_RATE, Audio, Batch, ChatEvent, EventKind, Priority, Removal, User, Utterance
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

log = structlog.get_logger(__name__)

DRAIN_TIMEOUT_S = 10.0
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
        self._busy = False
        self.port: int | None = None
        self.watcher: ConfigWatcher | None = None
        self.last_rtf: float | None = None  # synthesis seconds / audio seconds of the last batch
        self.started = asyncio.Event()
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
        self.metrics.dropped.labels(drop.reason).inc()
        self._record_eviction(drop.utterance, drop.reason)
        level = log.warning if drop.utterance.priority >= Priority.PAID else log.debug
        level("queued message dropped", reason=drop.reason, user=drop.utterance.user, text=drop.utterance.text[:80])

    def _record_eviction(self, u: Utterance, reason: str) -> None:
        """An accepted message that will not be spoken: counted by reason, shown in /api/queue and the panel."""
        self.eviction_counts[reason] += 1
        self.evictions.append(
            {"id": u.id, "user": u.user, "text": u.text[:200], "priority": u.priority.name.lower(), "reason": reason}
        )

    # ------------------------------------------------------------------ stages

    async def _run_source(self, source: Source) -> None:
        gauge = self.metrics.source_state.labels(source.name)
        gauge.set(1)
        try:
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
        while not self.stopping.is_set():
            self._inflight = []
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

    async def _synthesize(self, batch: Batch) -> None:
        self.metrics.queue_depth.set(len(self.queue))
        requests, items = [], []
        for u in batch.items:
            if u.id in self._cancelled:  # removed while the batch was being collected
                self._cancelled.discard(u.id)
                continue
            try:
                requests.append(self.worker.request(u.text, u.voice))
                items.append(u)
            except IshowError as e:
                self.metrics.synth_errors.labels(type(e).__name__).inc()
                log.warning("utterance skipped", id=u.id, error=str(e))
        if not requests:
            return
        t0 = time.perf_counter()
        try:
            results = await self.worker.synthesize(requests)
        finally:
            self._inflight = []
        elapsed = time.perf_counter() - t0
        audio_s = 0.0
        for u, r in zip(items, results, strict=True):
            if u.id in self._cancelled:
                self._cancelled.discard(u.id)
                continue
            if r.audio is None:
                self.metrics.synth_errors.labels(type(r.error).__name__).inc()
                log.warning("utterance not synthesized", id=u.id, text=u.text[:80], error=str(r.error))
                continue
            if len(r.audio) == 0:  # e.g. only punctuation: nothing to say
                self.metrics.dropped.labels("no_speech").inc()
                log.debug("utterance has nothing to say", id=u.id, text=u.text[:80])
                continue
            audio = Audio(
                utterance=u, samples=r.audio, sample_rate=self.sample_rate, engine=r.engine, synth_seconds=elapsed
            )
            audio_s += audio.duration
            await self.audio.put(audio)
        engine = results[0].engine if results else "none"
        self.metrics.batches.labels(engine).inc()
        self.metrics.batch_size.observe(len(requests))
        self.metrics.synth_seconds.observe(elapsed)
        self.metrics.audio_seconds.inc(audio_s)
        if audio_s > 0:
            self.last_rtf = elapsed / audio_s
            self.metrics.rtf.set(self.last_rtf)
        log.info(
            "batch synthesized", engine=engine, size=len(requests), synth_s=round(elapsed, 3), audio_s=round(audio_s, 2)
        )

    def _on_spoken(self, audio: Audio) -> None:
        u = audio.utterance
        wait = time.monotonic() - u.created
        self.metrics.spoken.inc()
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
        )

    # ------------------------------------------------------------------ control (panel, API)

    def _drop_waiting(self, predicate: Callable[[Utterance], bool], reason: str) -> list[Utterance]:
        """Remove matching utterances wherever they wait: queue, in-flight batch, synthesized buffer."""
        inflight = [u for u in self._inflight if u.id not in self._cancelled and predicate(u)]
        self._cancelled.update(u.id for u in inflight)
        gone = self.queue.remove(predicate) + inflight + self.audio.remove(predicate)
        for u in gone:
            self.metrics.dropped.labels(reason).inc()
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
            await site.start()
            self.port = _bound_port(runner, self.cfg.server.port)
            self._announce()
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                source_tasks = [tg.create_task(self._run_source(s), name=f"source:{s.name}") for s in self.sources]
                batcher = tg.create_task(self._batch_loop(), name="batcher")
                player = tg.create_task(self.player.run(), name="player")
                watcher = None
                if self.config_path is not None:
                    self.watcher = ConfigWatcher(self.config_path, self.cfg.root / "voices", self.apply_config)
                    watcher = tg.create_task(self._supervise(self.watcher.run, "config watcher"), name="watcher")
                await stop.wait()
                log.info("shutting down")
                self.stopping.set()
                for t in source_tasks:
                    t.cancel()
                if watcher is not None:
                    watcher.cancel()
                if self._busy and self.cfg.engine.on_shutdown == "finish":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(batcher), DRAIN_TIMEOUT_S)
                batcher.cancel()
                self.player.resume()
                self.player.realtime = False  # hand what is left to the sinks now; don't pace the shutdown
                await self.audio.put(None)
                try:
                    await asyncio.wait_for(asyncio.shield(player), DRAIN_TIMEOUT_S)
                except TimeoutError:
                    player.cancel()
        finally:
            for sink in self.sinks:
                with contextlib.suppress(Exception):
                    await sink.close()
            if runner is not None:
                await runner.cleanup()
            await self.worker.close()
            log.info("stopped")

    async def _supervise(self, run: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"{what} failed; continuing without it")

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

    def _announce(self) -> None:
        host = self.cfg.server.host
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"
        log.info("ishow is running", obs_page=f"{url}/obs", api=f"{url}/api/messages", engine=self.worker.active_kind)


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return default


def install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    import signal

    loop = asyncio.get_running_loop()
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def remove() -> None:
        for sig in sigs:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)

    return remove
