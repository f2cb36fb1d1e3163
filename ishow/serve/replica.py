"""One service replica's work, without Ray: the voice registry, batches of rows from many daemons, the batch log.

``ishow.serve.app`` wraps this in a Ray Serve deployment (HTTP ingress, ``@serve.batch``); keeping it free of ray
keeps it testable and lets the engine stay what the daemon runs locally. ONE thread owns the engine (as in the
daemon's worker): voice preparation and synthesis both run there, the replica's event loop only awaits them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ishow.audio_format import SAMPLE_RATE
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import Engine, SynthRequest
from ishow.engine.remote_protocol import ItemResult, SynthCall, SynthReply, VoiceClip
from ishow.errors import EngineError, InputError, IshowError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaSettings:
    """What a replica needs besides the engine config (from the ``[serve]`` table)."""

    max_rows: int = 16  # rows per engine call: a batch of daemon requests is split into chunks of this many
    max_voices: int = 256  # voices registered per replica; more are refused with a clear error
    batch_log: int = 64  # recent batches kept for GET /stats
    token: str = dataclasses.field(default="", repr=False)


def service_engine_config(cfg: EngineConfig) -> EngineConfig:
    """The replica's engine: always F5, with seed 0 and speed 1 (daemons send final seeds and speeds)."""
    return dataclasses.replace(cfg, kind="f5", fallback="none", seed=0, speed=1.0)


def default_engine(cfg: EngineConfig) -> Engine:
    from ishow.engine.f5_engine import F5Engine

    return F5Engine(cfg)


class ReplicaCore:
    def __init__(
        self,
        engine_cfg: EngineConfig,
        settings: ReplicaSettings,
        replica_id: str,
        voices_dir: Path,
        factory: Callable[[EngineConfig], Engine] = default_engine,
    ) -> None:
        self.cfg = service_engine_config(engine_cfg)
        self.settings = settings
        self.replica_id = replica_id
        self.voices_dir = voices_dir
        self._factory = factory
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ishow-replica-engine")
        self.engine: Engine | None = None
        self._voices: dict[str, VoiceSpec] = {}
        self._lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self.calls = 0
        self.uploads = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=max(1, settings.batch_log))
        self.started = time.time()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the engine on its thread and warm it up (graph capture on CUDA) with a synthetic voice."""
        self._pool.submit(self._load).result()

    def _load(self) -> None:
        engine = self._factory(self.cfg)
        engine.load()
        self.voices_dir.mkdir(parents=True, exist_ok=True)
        warm = self.voices_dir / "warmup.wav"
        from ishow.engine.warm_reference import REF_TEXT, write_reference

        write_reference(warm)
        try:
            engine.warmup(VoiceSpec(id="warmup", ref_audio=warm, ref_text=REF_TEXT))
        except IshowError as e:
            _log.warning("replica warm-up failed; the first batches may be slow: %s", e)
        self.engine = engine

    def close(self) -> None:
        def _close() -> None:
            if self.engine is not None:
                self.engine.close()

        self._pool.submit(_close).result()
        self._pool.shutdown(wait=True)

    async def check(self) -> None:
        """Raise when this replica cannot serve (Ray Serve's health check restarts it then)."""
        if self.engine is None:
            raise EngineError(f"replica {self.replica_id}: engine not loaded")
        # the engine thread is alive: a no-op queued behind the batch in flight comes back
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._pool, lambda: None), timeout=100)

    # -- voices ----------------------------------------------------------------------------------------------
    def unknown_voices(self, call: SynthCall) -> list[str]:
        with self._lock:
            return sorted({i.voice for i in call.items if i.voice not in self._voices and i.voice not in call.voices})

    async def register(self, clips: dict[str, VoiceClip]) -> dict[str, str]:
        """Register new clips on the engine thread; returns {hash: error} for the clips that cannot be used."""
        with self._lock:
            new = {k: v for k, v in clips.items() if k not in self._voices}
        if not new:
            return {}
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._register, new)

    def _register(self, clips: dict[str, VoiceClip]) -> dict[str, str]:
        assert self.engine is not None
        errors: dict[str, str] = {}
        for digest, clip in clips.items():
            if len(self._voices) >= self.settings.max_voices:
                errors[digest] = f"replica voice registry is full ({self.settings.max_voices} voices); restart it"
                continue
            path = self.voices_dir / f"{digest}{clip.suffix}"
            path.write_bytes(clip.audio)
            spec = VoiceSpec(id=digest[:16], ref_audio=path, ref_text=clip.ref_text)
            try:
                self.engine.prepare_voice(spec)
            except IshowError as e:
                path.unlink(missing_ok=True)
                errors[digest] = str(e)
                continue
            with self._lock:
                self._voices[digest] = spec
                self.uploads += 1
        return errors

    # -- batches ---------------------------------------------------------------------------------------------
    async def run_batch(self, calls: Sequence[SynthCall], voice_errors: Sequence[dict[str, str]]) -> list[SynthReply]:
        """Synthesize every row of ``calls`` (requests from many daemons) together; one reply per call."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, list(calls), list(voice_errors))

    def _run_batch(self, calls: list[SynthCall], voice_errors: list[dict[str, str]]) -> list[SynthReply]:
        t0 = time.perf_counter()
        rows: list[tuple[int, int, SynthRequest]] = []
        results: list[list[ItemResult | None]] = [[None] * len(c.items) for c in calls]
        for ci, (call, errs) in enumerate(zip(calls, voice_errors, strict=True)):
            for ii, item in enumerate(call.items):
                spec = self._voices.get(item.voice)
                if item.voice in errs or spec is None:
                    why = errs.get(item.voice, f"voice {item.voice[:16]}… is not registered on this replica")
                    results[ci][ii] = ItemResult(None, why, "voice")
                    continue
                req = SynthRequest(text=item.text, voice=spec, nfe_step=item.nfe, seed=item.seed, speed=item.speed)
                rows.append((ci, ii, req))
        step = max(1, self.settings.max_rows)
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            for (ci, ii, _), done in zip(chunk, self._synthesize([r for _, _, r in chunk]), strict=True):
                results[ci][ii] = done
        with self._lock:
            self.batches += 1
            batch = self.batches
            self.rows += len(rows)
            self.calls += len(calls)
            self.log.append(
                {
                    "batch": batch,
                    "calls": len(calls),
                    "rows": [calls[ci].client for ci, _, _ in rows],
                    "ms": round((time.perf_counter() - t0) * 1000, 2),
                }
            )
        rate = self.engine.sample_rate if self.engine is not None else SAMPLE_RATE
        missing = ItemResult(None, "row was not synthesized", "engine")
        return [
            SynthReply(self.replica_id, batch, rate, tuple(missing if x is None else x for x in per_call))
            for per_call in results
        ]

    def _synthesize(self, reqs: list[SynthRequest]) -> list[ItemResult]:
        """One engine call for the chunk; on bad input, row by row so one bad row fails alone."""
        assert self.engine is not None
        try:
            return [ItemResult(a) for a in self.engine.synthesize(reqs)]
        except InputError as e:
            if len(reqs) == 1:
                return [ItemResult(None, str(e), "input")]
        out: list[ItemResult] = []
        for r in reqs:
            try:
                (audio,) = self.engine.synthesize([r])
                out.append(ItemResult(audio))
            except InputError as e:
                out.append(ItemResult(None, str(e), "input"))
        return out

    # -- introspection ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "replica": self.replica_id,
                "uptime_s": round(time.time() - self.started, 1),
                "batches": self.batches,
                "rows": self.rows,
                "calls": self.calls,
                "voices": len(self._voices),
                "uploads": self.uploads,
                "recent": list(self.log),
            }

    def health(self) -> dict[str, Any]:
        info: dict[str, Any] = {"ok": self.engine is not None, "replica": self.replica_id, "pid": os.getpid()}
        if self.engine is not None:
            info["engine"] = {k: v for k, v in self.engine.describe().items() if k != "voices"}
        return info
