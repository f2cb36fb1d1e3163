"""The F5 engine's warm-up plan: which DiT and vocoder buckets to capture after load, most likely first.

Lengths come from the configured voices and the duration rule (:func:`ishow.engine.f5.duration.generated_frames`)
for chat of ``MIN_GEN_BYTES`` to ``WARM_MAX_BYTES`` UTF-8 bytes; batch sizes from ``batch.max_items``. Each task
captures one bucket on the warm-up thread (:mod:`ishow.engine.accel.warmer`); the engine thread never captures once
the plan is installed. Also: the compile cache (inductor/triton kernels under ``engine.compile_cache``), so a
restart skips the kernel compilation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ishow.config.choices import BATCH_BUCKETS
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.bucket_plan import Bucket, likely_lengths, plan_stages
from ishow.engine.accel.warmer import WarmupTask
from ishow.engine.chunking import ChunkPlan, LengthBudget
from ishow.errors import IshowError

if TYPE_CHECKING:
    from ishow.config.engine import EngineConfig
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import VocoderBackend
    from ishow.engine.f5.sampler import SamplerConfig

log = logging.getLogger(__name__)

# Chat up to this many UTF-8 bytes (40 CJK characters, ~120 Latin ones) gets its own graphs ahead of time, and up
# to the longest single chunk a voice speaks (``ChunkPlan.for_budget`` of its ``length_budget``: ~12 s of speech)
# when that is longer; longer text is cut into chunks (``EngineWorker.plan``), so no request is longer than that.
WARM_MAX_BYTES = 120
WARM_STEP_BYTES = 3  # one CJK character
# Graph-cache headroom beyond the plan, for buckets captured on demand (other nfe_step values, long messages).
DEMAND_GRAPHS = 16


def row_sizes(max_batch: int) -> list[int]:
    """Batch buckets the daemon can form with ``batch.max_items = max_batch``: up to the bucket holding it."""
    top = next((b for b in BATCH_BUCKETS if b >= max_batch), BATCH_BUCKETS[-1])
    return [b for b in BATCH_BUCKETS if b <= top]


def use_compile_cache(cache: Path) -> None:
    """Point inductor's and triton's caches at ``cache`` (unless the environment already chose), and load saved
    torch.compiler cache artifacts; a restart then loads compiled kernels instead of compiling them."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("compile cache %s is not writable (%s); compiling from scratch", cache, e)
        return
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
    artifacts = cache / "artifacts.bin"
    if artifacts.is_file():
        try:
            import torch.compiler

            torch.compiler.load_cache_artifacts(artifacts.read_bytes())
        except Exception as e:  # noqa: BLE001 - a stale or foreign cache only costs a compile
            log.warning("compile cache artifacts %s not loaded (%s: %s)", artifacts, type(e).__name__, e)


def after_warmup(cache: Path | None) -> None:
    """On the warm-up thread once the plan is done: return the warm-up runs' cached blocks (the graphs keep their
    own pools), log the memory, save the compile cache (``cache`` None: compile off)."""
    import json

    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        mem = {
            "allocated_mb": round(torch.cuda.memory_allocated() / 2**20),
            "reserved_mb": round(torch.cuda.memory_reserved() / 2**20),
            "max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        }
        log.info("warm-up memory %s", json.dumps(mem))
    if cache is not None:
        save_compile_cache(cache)


def save_compile_cache(cache: Path) -> None:
    """Save torch.compiler's cache artifacts (after the warm-up compiled everything)."""
    try:
        import time

        import torch.compiler

        t0 = time.perf_counter()
        got = torch.compiler.save_cache_artifacts()
        if got is not None:
            tmp = cache / "artifacts.bin.tmp"
            tmp.write_bytes(got[0])
            tmp.replace(cache / "artifacts.bin")
            log.info("compile cache saved: %d bytes in %.2f s", len(got[0]), time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - the cache is an optimisation
        log.warning("compile cache artifacts not saved (%s: %s)", type(e).__name__, e)


Stages = tuple[list[Bucket], list[Bucket]]


class _PreparedVoice(Protocol):
    @property
    def frames(self) -> int: ...

    @property
    def ref_text(self) -> str: ...


class WarmableEngine(Protocol):
    """What warm-up needs of the F5 engine (``ishow.engine.f5_engine.F5Engine`` has it), without importing it."""

    @property
    def config(self) -> EngineConfig: ...

    @property
    def sampler(self) -> GraphSampler | None: ...

    @property
    def vocoder_backend(self) -> VocoderBackend | None: ...

    def prepared(self, voice: VoiceSpec) -> _PreparedVoice: ...

    def length_budget(self, voice: VoiceSpec, speed: float) -> LengthBudget: ...


def with_long(stages: Stages, lengths: Sequence[int], single: int, frames_of: Callable[[int], int | None]) -> Stages:
    """``stages`` plus a message alone at each of ``lengths`` (the rare long ones) as refinements: they are captured
    after "ready", so the wait for it does not grow; until then such a message runs padded (or eagerly)."""
    essential, refine = stages
    planned = set(essential) | set(refine)
    extra: list[Bucket] = []
    for n in lengths:
        f = frames_of(n)
        if f is not None and (single, f) not in planned:
            planned.add((single, f))
            extra.append((single, f))
    return essential, refine + extra


def plan(engine: WarmableEngine, voices: Sequence[VoiceSpec], max_batch: int) -> tuple[Stages, Stages]:
    """((essential, refinement) DiT buckets, the same for the vocoder) for ``voices`` and batches up to
    ``max_batch``."""
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import TorchVocoder
    from ishow.engine.f5.duration import MIN_GEN_BYTES, generated_frames, utf8_len

    dit_lengths: list[int] = []
    voc_lengths: list[int] = []
    long_dit: list[int] = []  # past WARM_MAX_BYTES, up to the longest chunk: batch 1 only, after "ready"
    long_voc: list[int] = []
    prepared = []
    longest = WARM_MAX_BYTES
    for v in voices:
        try:
            prepared.append((engine.prepared(v), v.speed * engine.config.speed))
            # the longest chunk EngineWorker.plan cuts this voice's text into: one request, one row
            longest = max(longest, ChunkPlan.for_budget(engine.length_budget(v, engine.config.speed)).target)
        except IshowError:
            continue  # logged by the worker; its messages use the fallback
    for gen_bytes in likely_lengths(MIN_GEN_BYTES, longest, WARM_STEP_BYTES):
        for pv, speed in prepared:
            gen = generated_frames(pv.frames, utf8_len(pv.ref_text), gen_bytes, speed)
            (dit_lengths if gen_bytes <= WARM_MAX_BYTES else long_dit).append(pv.frames + gen)
            (voc_lengths if gen_bytes <= WARM_MAX_BYTES else long_voc).append(gen)
    rows = row_sizes(max_batch)
    dit: Stages = ([], [])
    voc: Stages = ([], [])
    sampler = engine.sampler
    if isinstance(sampler, GraphSampler) and sampler.use_graphs:
        b = sampler.buckets
        dit = with_long(plan_stages(dit_lengths, rows, b.frames, b.coarse_multiple, max_area=b.max_area), long_dit,
                        1, b.frames)  # fmt: skip
    vb = engine.vocoder_backend
    if isinstance(vb, TorchVocoder) and vb.use_graphs:
        vbk = vb.buckets

        def voc_frames(n: int) -> int | None:
            got = vbk.bucket(1, n)
            return None if got is None else got[1]

        # the vocoder is cheap (256 frames: ~0.35 ms), so a message alone has its own graphs and batches share the
        # largest batch's (cover_bucket pads up to 4× the area): half the vocoder captures, a faster "ready"
        voc_rows = sorted({r for r in (vbk.rows(1), vbk.rows(rows[-1])) if r is not None})
        voc = with_long(plan_stages(voc_lengths, voc_rows, voc_frames, 2 * vbk.frame_multiple, single=voc_rows[0]),
                        long_voc, voc_rows[0], voc_frames)  # fmt: skip
    return dit, voc


def warmup_tasks(engine: WarmableEngine, voices: Sequence[VoiceSpec], max_batch: int) -> list[WarmupTask]:
    """Switch the engine to background capture and return the capture tasks (vocoder buckets after the DiT bucket
    of the same rank, so a batch-1 message has both halves of its path early)."""
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import TorchVocoder
    from ishow.engine.f5.sampler import SamplerConfig

    dit, voc = plan(engine, voices, max_batch)
    sampler, vb = engine.sampler, engine.vocoder_backend
    config = SamplerConfig(
        nfe_step=engine.config.nfe_step, cfg_strength=engine.config.cfg_strength, sway_coef=engine.config.sway_coef
    )
    tasks: list[WarmupTask] = []
    n_dit, n_voc = len(dit[0]) + len(dit[1]), len(voc[0]) + len(voc[1])
    if isinstance(sampler, GraphSampler) and n_dit:
        sampler.capture_on_miss = False
        sampler.max_graphs = max(sampler.max_graphs, n_dit + DEMAND_GRAPHS)
    if isinstance(vb, TorchVocoder) and n_voc:
        vb.capture_on_miss = False
        vb.max_graphs = max(vb.max_graphs, n_voc + DEMAND_GRAPHS)
    for stage, essential in ((0, True), (1, False)):
        d, v = dit[stage], voc[stage]
        for i in range(max(len(d), len(v))):
            if i < len(d) and isinstance(sampler, GraphSampler):
                tasks.append(_dit_task(sampler, d[i], config, essential))
            if i < len(v) and isinstance(vb, TorchVocoder):
                tasks.append(_voc_task(vb, v[i], essential))
    if isinstance(sampler, GraphSampler) and n_dit:
        # the last essential task (the warmer runs essential ones first): the attention graphs of every planned
        # bucket, so the refining captures after "ready" build none (each build stalls all Python ~45 ms)
        s, every = sampler, [*dit[0], *dit[1]]
        tasks.append(WarmupTask("attention graphs", lambda: s.prepare_attention(every, config)))
    return tasks


def demand_tasks(engine: WarmableEngine) -> list[WarmupTask]:
    """Capture tasks for buckets that batches missed, while the caches have room."""
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import TorchVocoder

    tasks: list[WarmupTask] = []
    sampler, vb = engine.sampler, engine.vocoder_backend
    if isinstance(sampler, GraphSampler) and not sampler.capture_on_miss:
        for bucket, config in sampler.take_misses():
            if not sampler.full:
                tasks.append(_dit_task(sampler, bucket, config))
    if isinstance(vb, TorchVocoder) and not vb.capture_on_miss:
        for bucket in vb.take_misses():
            if not vb.full:
                tasks.append(_voc_task(vb, bucket))
    return tasks


def _dit_task(sampler: object, bucket: Bucket, config: SamplerConfig, essential: bool = True) -> WarmupTask:
    from ishow.engine.accel.graphs import GraphSampler

    assert isinstance(sampler, GraphSampler)
    s = sampler
    label = f"dit {bucket[0]}x{bucket[1]} nfe{config.nfe_step}"
    return WarmupTask(label, lambda: s.capture_bucket(bucket, config), essential)


def _voc_task(vb: object, bucket: Bucket, essential: bool = True) -> WarmupTask:
    from ishow.engine.accel.vocoder_backends import TorchVocoder

    assert isinstance(vb, TorchVocoder)
    v = vb
    return WarmupTask(f"vocoder {bucket[0]}x{bucket[1]}", lambda: v.capture_bucket(bucket), essential)
