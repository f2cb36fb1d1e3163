"""The engine worker: ONE thread owns the speech engine(s); the event loop only awaits results.

Fallback: when the primary engine cannot load (missing weights, bad checkpoint) the fallback engine serves
everything and one clear log line says why and what to run. When the primary fails on a batch, the batch is
retried item by item; items that still fail with an engine error are spoken by the fallback, items with bad
input are reported. After ``MAX_CONSECUTIVE_FAILURES`` failed batches in a row the primary is retired.

Warm-up: after load, the engine's background tasks (CUDA-graph captures, see :mod:`ishow.engine.warmer`) run on a
second thread while this one already serves; ``ready`` turns true when they are done. An engine without such tasks
(espeak, CPU) is ready after its synchronous ``warmup``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import structlog

from ishow.config_engine import EngineConfig
from ishow.engine.base import Engine, SynthRequest, VoiceSpec
from ishow.engine.warmer import BucketWarmer, WarmupProgress, WarmupTask
from ishow.errors import EngineError, InputError, IshowError, ModelLoadError, ServiceUnavailableError, UnknownVoiceError

log = structlog.get_logger(__name__)

MAX_CONSECUTIVE_FAILURES = 3
DEMAND_IDLE_S = 2.0  # on-demand captures wait for this much engine idle time
Waveform = npt.NDArray[np.float32]
EngineFactory = Callable[[str, EngineConfig], Engine]


@dataclass(frozen=True)
class SynthResult:
    """One item's outcome: audio (and the engine that made it) or the error that stopped it."""

    audio: Waveform | None
    engine: str
    error: IshowError | None = None


def default_engine_factory(kind: str, cfg: EngineConfig) -> Engine:
    from ishow.engine.registry import create_engine

    return create_engine(kind, cfg)


class EngineTurns:
    """Whose job goes to the engine thread next: waiting live-chat batches before waiting background jobs
    (``/api/tts``). One job is handed to the thread at a time (the thread runs one at a time anyway), so a burst
    of background requests never sits in the executor's FIFO ahead of chat."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (collections.deque(), collections.deque())

    async def acquire(self, background: bool) -> None:
        if not self._busy and not any(self._waiting):
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[1 if background else 0].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the turn just as we were cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._busy = False


class EngineWorker:
    def __init__(
        self,
        cfg: EngineConfig,
        voices: Sequence[VoiceSpec],
        factory: EngineFactory = default_engine_factory,
        max_batch: int = 16,
        background_warmup: bool = True,
    ) -> None:
        self.cfg = cfg
        self.max_batch = max_batch
        self.background_warmup = background_warmup
        self.warmer: BucketWarmer | None = None
        self._busy = False
        self._last_synth = 0.0
        self._voices = {v.id: v for v in voices}
        self._factory = factory
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ishow-engine")
        self.primary: Engine | None = None
        self.fallback: Engine | None = None
        self.primary_error: str = ""
        self._failures = 0
        self._turns = EngineTurns()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._load_all)

    def _load_all(self) -> None:
        try:
            engine = self._factory(self.cfg.kind, self.cfg)
            engine.load()
            self.primary = engine
            self._prepare_voices(engine)
            self._start_warmup(engine)
            log.info("engine ready", engine=self.cfg.kind, **_describe(engine))
        except IshowError as e:
            self.primary_error = str(e)
            if self.cfg.fallback == "none" or self.cfg.fallback == self.cfg.kind:
                raise
            log.warning(
                f"{self.cfg.kind} engine unavailable, speaking with the {self.cfg.fallback} fallback: {e}",
                hint=_hint(e),
            )
        if self.cfg.fallback != "none" and self.cfg.fallback != self.cfg.kind:
            try:
                fb = self._factory(self.cfg.fallback, self.cfg)
                fb.load()
                self.fallback = fb
            except IshowError as e:
                if self.primary is None:
                    raise
                log.warning("fallback engine unavailable", engine=self.cfg.fallback, error=str(e))

    def _prepare_voices(self, engine: Engine, voices: Sequence[VoiceSpec] | None = None) -> None:
        for voice in voices if voices is not None else self._voices.values():
            try:
                engine.prepare_voice(voice)
            except IshowError as e:
                log.warning(
                    "voice not usable by this engine; its messages use the fallback", voice=voice.id, error=str(e)
                )

    def _start_warmup(self, engine: Engine) -> None:
        """Start the engine's background warm-up, or warm it up synchronously when it has no background tasks."""
        tasks = engine.warmup_tasks(list(self._voices.values()), self.max_batch) if self.background_warmup else []
        if not tasks:
            self._warmup(engine)
            return
        self.warmer = BucketWarmer(
            tasks, demand=lambda: self._when_idle(engine.demand_tasks), on_plan_done=engine.warmup_done
        )
        self.warmer.start()
        log.info("engine warming up in the background", engine=engine.kind, buckets=len(tasks))

    def _when_idle(self, demand: Callable[[], list[WarmupTask]]) -> list[WarmupTask]:
        """Captures asked for by traffic run only after the engine has been idle a while (they never block a batch,
        but they share the GPU and the GIL with it)."""
        if self._busy or time.monotonic() - self._last_synth < DEMAND_IDLE_S:
            return []
        return demand()

    def warmup_progress(self) -> WarmupProgress | None:
        return self.warmer.progress() if self.warmer is not None else None

    @property
    def ready(self) -> bool:
        """An engine can speak and nothing is left to capture or compile before chat is fast."""
        if self.primary is None:
            return self.fallback is not None
        progress = self.warmup_progress()
        return progress is None or progress.ready

    def _warmup(self, engine: Engine) -> None:
        if not self._voices:
            return
        t0 = time.perf_counter()
        try:
            engine.warmup(next(iter(self._voices.values())))
        except IshowError as e:
            log.warning("engine warm-up failed; the first message may be slow", engine=engine.kind, error=str(e))
            return
        elapsed = time.perf_counter() - t0
        if elapsed > 0.5:
            log.info("engine warmed up", engine=engine.kind, seconds=round(elapsed, 1))

    async def update_voices(self, voices: Sequence[VoiceSpec]) -> None:
        """Hot reload: prepare new/changed voices on the engine thread, then swap the voice table."""

        def _update() -> None:
            for engine in (self.primary, self.fallback):
                if engine is not None:
                    self._prepare_voices(engine, voices)
            self._voices = {v.id: v for v in voices}

        await asyncio.get_running_loop().run_in_executor(self._pool, _update)

    async def close(self) -> None:
        def _close() -> None:
            if self.warmer is not None:
                self.warmer.stop()
            for engine in (self.primary, self.fallback):
                if engine is not None:
                    engine.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------ queries

    @property
    def active_kind(self) -> str:
        engine = self.primary or self.fallback
        return engine.kind if engine else "none"

    @property
    def model_loaded(self) -> bool:
        return self.primary is not None and self.primary.kind == "f5"

    def voice(self, voice_id: str) -> VoiceSpec:
        try:
            return self._voices[voice_id]
        except KeyError:
            raise UnknownVoiceError(voice_id, list(self._voices)) from None

    def voice_ids(self) -> list[str]:
        return list(self._voices)

    def state(self) -> dict[str, object]:
        return {
            "configured": self.cfg.kind,
            "active": self.active_kind,
            "fallback": self.fallback.kind if self.fallback else None,
            "model_loaded": self.model_loaded,
            "primary_error": self.primary_error or None,
            "ready": self.ready,
            "warmup": progress.as_dict() if (progress := self.warmup_progress()) is not None else None,
            # a remote engine: which of service/fallback speaks now, and why
            "service": _describe(self.primary) if self.primary is not None and self.primary.kind == "remote" else None,
        }

    # ------------------------------------------------------------------ synthesis

    def request(self, text: str, voice_id: str, nfe_step: int | None = None, seed: int | None = None) -> SynthRequest:
        voice = self.voice(voice_id)
        return SynthRequest(
            text=text,
            voice=voice,
            nfe_step=nfe_step if nfe_step is not None else self.cfg.nfe_step,
            seed=seed if seed is not None else self.cfg.seed,
            speed=self.cfg.speed,
        )

    async def synthesize(self, requests: Sequence[SynthRequest], *, background: bool = False) -> list[SynthResult]:
        """Synthesize a batch on the engine thread; one result per request, in order.

        ``background`` jobs (``/api/tts``) wait while live-chat batches are waiting for the engine."""
        loop = asyncio.get_running_loop()
        await self._turns.acquire(background)
        try:
            return await loop.run_in_executor(self._pool, self._synthesize_sync, list(requests))
        finally:
            self._turns.release()

    def _synthesize_sync(self, requests: list[SynthRequest]) -> list[SynthResult]:
        self._busy = True
        try:
            return self._synthesize_batch(requests)
        finally:
            self._busy = False
            self._last_synth = time.monotonic()

    def _synthesize_batch(self, requests: list[SynthRequest]) -> list[SynthResult]:
        if not requests:
            return []
        if self.primary is not None:
            try:
                out = self.primary.synthesize(requests)
                self._failures = 0
                return [SynthResult(_scaled(a, r), self.primary.kind) for a, r in zip(out, requests, strict=True)]
            except ServiceUnavailableError:  # the remote engine said so once and brings its service back itself
                return [self._with_fallback(r, None) for r in requests]
            except InputError:
                pass  # some item is bad: isolate it below
            except Exception as e:  # noqa: BLE001 - the engine boundary: any crash falls back, never kills the daemon
                self._note_failure(e, len(requests))
                if self.primary is None:  # just retired
                    return [self._with_fallback(r, None) for r in requests]
            return [self._one(r) for r in requests]
        return [self._with_fallback(r, None) for r in requests]

    def _one(self, request: SynthRequest) -> SynthResult:
        assert self.primary is not None
        try:
            (audio,) = self.primary.synthesize([request])
            return SynthResult(_scaled(audio, request), self.primary.kind)
        except InputError as e:
            return SynthResult(None, self.primary.kind, e)
        except Exception as e:  # noqa: BLE001 - see above
            err = e if isinstance(e, EngineError) else EngineError(f"{type(e).__name__}: {e}")
            return self._with_fallback(request, err)

    def _with_fallback(self, request: SynthRequest, cause: IshowError | None) -> SynthResult:
        if self.fallback is None:
            return SynthResult(None, "none", cause or EngineError("no speech engine is available"))
        try:
            (audio,) = self.fallback.synthesize([request])
            return SynthResult(_scaled(audio, request), self.fallback.kind)
        except IshowError as e:
            return SynthResult(None, self.fallback.kind, e)
        except Exception as e:  # noqa: BLE001 - see above
            return SynthResult(None, self.fallback.kind, EngineError(f"{type(e).__name__}: {e}"))

    def _note_failure(self, error: BaseException, size: int) -> None:
        self._failures += 1
        log.error(
            "engine failed on a batch; retrying item by item with fallback",
            engine=self.primary.kind if self.primary else None,
            error=f"{type(error).__name__}: {error}",
            batch_size=size,
            consecutive=self._failures,
        )
        if self._failures >= MAX_CONSECUTIVE_FAILURES and self.fallback is not None and self.primary is not None:
            self.primary_error = f"retired after {self._failures} failed batches: {error}"
            log.error(
                f"{self.primary.kind} engine retired after {self._failures} failed batches in a row; "
                f"speaking with {self.fallback.kind} until restart",
            )
            self.primary = None


def _scaled(audio: Waveform, request: SynthRequest) -> Waveform:
    vol = request.voice.volume
    out = np.asarray(audio, dtype=np.float32)
    return out if vol == 1.0 else np.clip(out * vol, -1.0, 1.0).astype(np.float32)


def _describe(engine: Engine) -> dict[str, object]:
    try:
        return {k: v for k, v in engine.describe().items() if k != "kind"}
    except Exception:  # noqa: BLE001 - description is best-effort
        return {}


def _hint(error: IshowError) -> str:
    if isinstance(error, ModelLoadError):
        return 'run `ishow models fetch` to download F5-TTS weights (or set engine.kind = "espeak")'
    return "see the error above"
