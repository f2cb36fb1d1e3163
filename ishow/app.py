"""The daemon: wires sources → policy → queue → batcher → engine worker → player → sinks, and owns every task.

Startup order: engine (in its thread) → sinks → HTTP server → sources, batcher and player in one TaskGroup.
Shutdown (SIGINT/SIGTERM or ``stop``): sources stop; the batch in flight is finished or dropped per
``engine.on_shutdown``; audio already made is handed to the sinks; sinks, engine and server close.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ishow.audio_buffer import AudioBuffer
from ishow.audio_format import SAMPLE_RATE
from ishow.config.schema import Config
from ishow.daemon_controls import DaemonControls
from ishow.engine.worker import EngineFactory, EngineWorker, default_engine_factory
from ishow.errors import StartupError
from ishow.events import Priority
from ishow.gc_watch import GcPause, GcWatch, freeze_heap, thaw_heap
from ishow.intake import Intake
from ishow.ledger import Ledger
from ishow.lifecycle import bind_problem, bound_port, has_listener, install_signal_handlers, supervise
from ishow.loop_watch import LoopWatch, StallLog
from ishow.metrics import Metrics
from ishow.outputs.base import Sink
from ishow.outputs.obs import ObsHub, ObsSettings
from ishow.pipeline import Pipeline
from ishow.player import Player
from ishow.policy.gates import ChatGate
from ishow.reload import ConfigWatcher, live_part, restart_needed
from ishow.server import build_app
from ishow.sources.base import Source
from ishow.sources.replay import ReplaySource
from ishow.utterance_queue import AsyncUtteranceQueue

log = structlog.get_logger(__name__)

LISTENER_POLL_S = 0.25


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
    """Lifecycle: builds the parts, starts them in order, stops and drains them; applies reloaded config.

    The parts: ``intake`` (chat in → queue), ``pipeline`` (queue → batches → engine → audio buffer),
    ``player`` (audio buffer → sinks, paced), ``controls`` (what the HTTP layer may ask; ``ishow.server`` sees
    only that surface).
    """

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
            cfg.queue.max_size, cfg.queue.max_age_s, lambda drop: self.pipeline.on_queue_drop(drop),
            max_paid=cfg.queue.max_paid,
        )  # fmt: skip
        self.worker = EngineWorker(
            cfg.engine, cfg.voices, engine_factory, max_batch=cfg.batch.max_items,
            after_warmup=lambda: self._freeze_heap("warm-up done"),
        )  # fmt: skip
        self.sinks = build_sinks(cfg) if sinks is None else sinks
        self.obs = next((s for s in self.sinks if isinstance(s, ObsHub)), None)
        self.sources = build_sources(cfg) if sources is None else sources
        # Finished audio waiting for the player: one batch ahead at most, so stale chat is dropped in the queue
        # (where its age is checked), not after synthesis; when full the batcher waits (backpressure).
        self.audio = AudioBuffer(cfg.batch.max_items)
        self.ledger = Ledger(self.metrics)  # every accepted message ends once: spoken or dropped(reason)
        self.stopping = asyncio.Event()
        self.pipeline = Pipeline(
            self._config, self.queue, self.worker, self.audio, self.ledger, self.metrics, self.stopping
        )
        self.player = Player(self.sinks, self.audio, cfg.outputs.realtime, self.pipeline.on_spoken)
        self.intake = Intake(self._config, self.queue, self.ledger, self.metrics, self.pipeline.drop_waiting)
        self.controls = DaemonControls(
            self._config, self.intake, self.pipeline, self.player, self.worker, self.metrics,
            self.sources, self.sinks, lambda: self.port,
        )  # fmt: skip
        self.port: int | None = None
        self.watcher: ConfigWatcher | None = None
        self.started = asyncio.Event()
        self._told_nobody = False
        self._shutdown_deadline = 0.0
        self._stalls = StallLog()

    def _config(self) -> Config:
        return self.cfg

    async def _run_source(self, source: Source) -> None:
        gauge = self.metrics.source_state.labels(source.name)
        try:
            if isinstance(source, ReplaySource) and source.name.startswith("demo"):
                await self._wait_for_listener(source)
                if self.stopping.is_set():  # shut down while waiting (3.11's wait_for can swallow our cancel)
                    return
            gauge.set(1)
            await source.run(self.intake.ingest)
        except asyncio.CancelledError:
            raise
        except Exception:
            source.state = "failed"
            log.exception("source failed", source=source.name)
        finally:
            gauge.set(0)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        stop = stop or asyncio.Event()
        gc_watch = GcWatch(self._gc_pause).install()
        try:
            await self._run(stop)
        finally:
            gc_watch.uninstall()
            thaw_heap()

    def _freeze_heap(self, when: str) -> None:
        """What is alive now lives as long as the daemon: no full collection scans it again (see
        :func:`ishow.gc_watch.freeze_heap`)."""
        freeze_heap()
        log.info("heap frozen", when=when)

    def _loop_lag(self, lag_s: float) -> None:
        """The event loop ran a timer this much late (see :mod:`ishow.loop_watch`)."""
        self.metrics.loop_lag.observe(lag_s)
        line = self._stalls.note(lag_s, time.monotonic())
        if line is not None:
            log.warning("event loop stalled", **line)

    def _gc_pause(self, pause: GcPause) -> None:
        """A garbage collection stopped every thread this long (see :mod:`ishow.gc_watch`)."""
        self.metrics.gc_pauses.labels(str(pause.generation)).inc()
        log.warning("garbage collection paused the daemon", generation=pause.generation,
                    ms=round(pause.seconds * 1000, 1), collected=pause.collected)  # fmt: skip

    async def _run(self, stop: asyncio.Event) -> None:
        await self.worker.start()
        self._freeze_heap("engine loaded")
        runner: web.AppRunner | None = None
        try:
            for sink in self.sinks:
                await sink.start()
            # keepalive_timeout also closes a connection that has not sent a complete request head by then
            # (aiohttp arms it at connect): slow clients cannot hold connections open with half a header
            runner = web.AppRunner(
                build_app(self.controls),
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
                batcher = tg.create_task(self.pipeline.batch_loop(), name="batcher")
                player = tg.create_task(self.player.run(), name="player")
                loop_watch = tg.create_task(LoopWatch(self._loop_lag).run(), name="loop watch")
                watcher = None
                if self.config_path is not None:
                    self.watcher = ConfigWatcher(self.config_path, self.cfg, self.apply_config)
                    watcher = tg.create_task(self._supervise(self.watcher.run, "config watcher"), name="watcher")
                await stop.wait()
                log.info("shutting down")
                self.stopping.set()
                for t in source_tasks:
                    t.cancel()
                loop_watch.cancel()
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
        stage = self.pipeline.stage
        if self.cfg.engine.on_shutdown == "finish" and (self.pipeline.busy or stage.has_pending):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(batcher), max(0.0, deadline - time.monotonic()))
        batcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await batcher
        self.queue.clear()  # not synthesized: the ledger below counts them as dropped
        await stage.close_streams()
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
        gate = ChatGate(live.filter) if live.filter != old.filter else self.intake.gate
        self.queue.set_limits(live.queue.max_size, live.queue.max_age_s, live.queue.max_paid)
        self.cfg, self.intake.gate = live, gate  # one atomic swap on the event loop
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
