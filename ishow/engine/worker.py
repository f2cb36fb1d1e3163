"""The engine worker: ONE thread owns the speech engine(s); the event loop only awaits results.

Fallback: when the primary engine cannot load, prepare or warm up — for any exception, ours or not (missing
weights, a CUDA out-of-memory while moving the model, a graph-capture error) — the fallback engine serves
everything and one clear log line says why and what to run. When the primary fails on a batch, the batch is
retried item by item; an item the primary still fails on or rejects (e.g. its text) is spoken by the fallback,
with one line saying why. After ``MAX_CONSECUTIVE_FAILURES`` failed batches in a row the primary is retired.

Long text: ``plan`` cuts a text into chunks within the active engine's length budget for the voice (see
``ishow.engine.chunking``); every chunk is one row of a batch.

Warm-up: after load, the engine's background tasks (CUDA-graph captures, see :mod:`ishow.engine.accel.warmer`) run on a
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

from ishow.audio_format import SAMPLE_RATE
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.warmer import BucketWarmer, WarmupProgress, WarmupTask
from ishow.engine.base import DEFAULT_BUDGET, Engine, SynthRequest
from ishow.engine.chunking import ChunkPlan, LengthBudget, crossfade_join, split_text
from ishow.errors import (
    EngineError,
    InputError,
    IshowError,
    ModelLoadError,
    ServiceUnavailableError,
    UnknownVoiceError,
)

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
        after_warmup: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.after_warmup = after_warmup  # called once the primary engine's warm-up is done, on the thread that did it
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
        self._budgets: dict[tuple[str, str], LengthBudget] = {}  # (engine kind, voice id) → its length budget

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._load_all)

    def _load_all(self) -> None:
        # Any exception (our own, or e.g. "RuntimeError: CUDA error: out of memory" while moving the model to the
        # GPU, or a graph-capture failure during warm-up) makes the primary unusable, not the daemon.
        engine: Engine | None = None
        try:
            engine = self._factory(self.cfg.kind, self.cfg)
            engine.load()
            self._prepare_voices(engine)
            self._start_warmup(engine)
            self.primary = engine
            log.info("engine ready", engine=self.cfg.kind, **_describe(engine))
        except Exception as e:
            self.primary_error = _error_text(e)
            if engine is not None:
                _close_quietly(engine)
            if self.cfg.fallback == "none" or self.cfg.fallback == self.cfg.kind:
                raise
            log.warning(
                f"{self.cfg.kind} engine unavailable, speaking with the {self.cfg.fallback} fallback: "
                f"{self.primary_error}",
                hint=_hint(e),
            )
        if self.cfg.fallback != "none" and self.cfg.fallback != self.cfg.kind:
            try:
                fb = self._factory(self.cfg.fallback, self.cfg)
                fb.load()
                self._prepare_voices(fb)
                self.fallback = fb
            except Exception as e:
                if self.primary is None:
                    raise
                log.warning("fallback engine unavailable", engine=self.cfg.fallback, error=_error_text(e))

    def _prepare_voices(self, engine: Engine, voices: Sequence[VoiceSpec] | None = None) -> None:
        for voice in voices if voices is not None else self._voices.values():
            try:
                engine.prepare_voice(voice)
                budget = engine.length_budget(voice, self.cfg.speed)
            except IshowError as e:
                log.warning(
                    "voice not usable by this engine; its messages use the fallback", voice=voice.id, error=str(e)
                )
                continue
            self._budgets[(engine.kind, voice.id)] = budget

    def _start_warmup(self, engine: Engine) -> None:
        """Start the engine's background warm-up, or warm it up synchronously when it has no background tasks."""
        tasks = engine.warmup_tasks(list(self._voices.values()), self.max_batch) if self.background_warmup else []
        if not tasks:
            self._warmup(engine)
            self._warmed_up()
            return

        def plan_done() -> None:
            try:
                engine.warmup_done()
            finally:
                self._warmed_up()

        self.warmer = BucketWarmer(tasks, demand=lambda: self._when_idle(engine.demand_tasks), on_plan_done=plan_done)
        self.warmer.start()
        log.info("engine warming up in the background", engine=engine.kind, buckets=len(tasks))

    def _warmed_up(self) -> None:
        if self.after_warmup is None:
            return
        try:
            self.after_warmup()
        except Exception:
            log.exception("after-warm-up hook failed")

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
        engine.warmup(next(iter(self._voices.values())))  # raises: the caller falls back
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
        primary = self.primary  # one read: the engine thread may retire the model at any moment
        return primary is not None and primary.kind == "f5"

    def voice(self, voice_id: str) -> VoiceSpec:
        try:
            return self._voices[voice_id]
        except KeyError:
            raise UnknownVoiceError(voice_id, list(self._voices)) from None

    def voice_ids(self) -> list[str]:
        return list(self._voices)

    def state(self) -> dict[str, object]:
        primary = self.primary  # read once: the engine thread may retire it meanwhile
        return {
            "configured": self.cfg.kind,
            "active": self.active_kind,
            "fallback": self.fallback.kind if self.fallback else None,
            "model_loaded": self.model_loaded,
            "primary_error": self.primary_error or None,
            "ready": self.ready,
            "warmup": progress.as_dict() if (progress := self.warmup_progress()) is not None else None,
            # a remote engine: which of service/fallback speaks now, and why
            "service": _describe(primary) if primary is not None and primary.kind == "remote" else None,
        }

    # ------------------------------------------------------------------ long text

    def plan(self, text: str, voice_id: str) -> list[str]:
        """``text`` cut into chunks the active engine speaks for ``voice_id`` (one chunk for chat-sized text; a
        short first chunk when it needs several, so the first audio comes early). Raises ``UnknownVoiceError``."""
        voice = self.voice(voice_id)
        engine = self.primary or self.fallback
        budget = self._budgets.get((engine.kind, voice.id)) if engine is not None else None
        if budget is None:
            budget = LengthBudget(DEFAULT_BUDGET.bytes_per_second * self.cfg.speed * voice.speed, 400)
        plan = ChunkPlan.for_budget(budget)
        return split_text(text, plan.target, plan.first) or [text]

    async def synthesize_text(
        self,
        text: str,
        voice_id: str,
        nfe_step: int | None = None,
        seed: int | None = None,
        *,
        background: bool = False,
    ) -> tuple[SynthResult, int]:
        """Any length of text, whole: its chunks synthesized as rows of one batch and crossfaded into one
        waveform (``/api/tts`` and ``ishow say``; ``background`` as in ``synthesize``). Returns the result and
        the number of chunks."""
        chunks = self.plan(text, voice_id)
        requests = [self.request(c, voice_id, nfe_step=nfe_step, seed=seed) for c in chunks]
        results = await self.synthesize(requests, background=background)
        failed = next((r for r in results if r.audio is None), None)
        if failed is not None:
            return failed, len(chunks)
        waves = [r.audio for r in results if r.audio is not None]
        engines = sorted({r.engine for r in results})
        return SynthResult(crossfade_join(waves, SAMPLE_RATE), "+".join(engines)), len(chunks)

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
                return [self._one(r, announce=True) for r in requests]  # some item is bad: isolate it
            except Exception as e:  # noqa: BLE001 - the engine boundary: any crash falls back, never kills the daemon
                self._note_failure(e, len(requests))  # the one line that says why
                if self.primary is None:  # just retired
                    return [self._with_fallback(r, None) for r in requests]
            return [self._one(r, announce=False) for r in requests]
        return [self._with_fallback(r, None) for r in requests]

    def _one(self, request: SynthRequest, announce: bool) -> SynthResult:
        """One item on the primary; on any failure the fallback speaks it (``announce``: one warning line for it,
        else — the batch's failure was already logged — at debug)."""
        primary = self.primary
        if primary is None:
            return self._with_fallback(request, None)
        try:
            (audio,) = primary.synthesize([request])
            return SynthResult(_scaled(audio, request), primary.kind)
        except Exception as e:  # noqa: BLE001 - see above; a text this engine rejects goes to the fallback too
            err = e if isinstance(e, IshowError) else EngineError(_error_text(e))
            if self.fallback is not None:
                (log.warning if announce else log.debug)(
                    f"{primary.kind} could not speak this message; the {self.fallback.kind} fallback speaks it",
                    error=_error_text(e),
                    text=request.text[:80],
                )
            return self._with_fallback(request, err)

    def _with_fallback(self, request: SynthRequest, cause: IshowError | None) -> SynthResult:
        fallback = self.fallback
        if fallback is None:
            return SynthResult(None, "none", cause or EngineError("no speech engine is available"))
        try:
            (audio,) = fallback.synthesize([request])
            return SynthResult(_scaled(audio, request), fallback.kind)
        except IshowError as e:
            return SynthResult(None, fallback.kind, e)
        except Exception as e:  # noqa: BLE001 - see above
            return SynthResult(None, fallback.kind, EngineError(_error_text(e)))

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


def _error_text(error: BaseException) -> str:
    return str(error) if isinstance(error, IshowError) else f"{type(error).__name__}: {error}"


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception as e:  # noqa: BLE001 - releasing a half-loaded engine must not hide why it failed
        log.warning("engine did not close cleanly", engine=engine.kind, error=_error_text(e))


def _hint(error: BaseException) -> str:
    if isinstance(error, ModelLoadError):
        return 'run `ishow models fetch` to download F5-TTS weights (or set engine.kind = "espeak")'
    return "see the error above"
