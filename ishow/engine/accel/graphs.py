"""Bucketed sampling with the whole NFE loop captured in CUDA graphs.

A batch is padded to a (rows, frames) bucket: rows to the next of ``Buckets.batch_sizes`` (extra rows are
1-frame dummies), frames to the next multiple of ``Buckets.frame_multiple``. Key padding masks make the padding
exact, so an item's mel does not depend on its bucket or its neighbours. Per bucket, the text embedding and every
Euler step (7 CFG-packed DiT forwards) are captured once into one CUDA graph with static input buffers, sharing
one memory pool (:class:`ishow.engine.accel.capture_cost.GraphPool`, shared with the vocoder's graphs); a replay is
one launch. Shapes outside the buckets, CPU devices and ``use_graphs=False`` run the
same code eagerly (``pad_eager`` pads them anyway, for tests).

Two capture modes: ``capture_on_miss=True`` captures a missing bucket on first use (bounded LRU; benchmarks and
tests); ``capture_on_miss=False`` (the daemon, with :mod:`ishow.engine.accel.warmer`) never captures on a message's
path: :meth:`GraphSampler.capture_bucket` is called from the warm-up thread, and a batch whose bucket is not ready
runs on a ready larger bucket (:func:`ishow.engine.accel.bucket_plan.cover_bucket`) or eagerly; the miss is
remembered so the warmer can capture it later (:meth:`GraphSampler.take_misses`).

The per-step time conditioning (time embedding and every block's modulation) is computed once per sampler
configuration; the rotary table and the key padding bias once per run (inside the graph: once per replay).

Shapes: ``B`` batch, ``N`` frames, ``M`` mel channels.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ishow.config.choices import BATCH_BUCKETS
from ishow.engine.accel import cudnn_attention
from ishow.engine.accel.bucket_plan import (
    EAGER_FACTOR,
    MAX_PAD_FACTOR,
    Bucket,
    MissLog,
    coarse_frames,
    cover_bucket,
    smallest_at_least,
    weighted_area,
)
from ishow.engine.accel.capture_cost import GraphPool, timed_capture
from ishow.engine.accel.conv_pos import ConvPos
from ishow.engine.accel.kernel_choice import from_env
from ishow.engine.f5.dit import DiT, StepConditioning
from ishow.engine.f5.sampler import (
    BatchInputs,
    SampleItem,
    SamplerConfig,
    model_device_dtype,
    prepare_inputs,
    run_nfe,
    step_conditionings,
    timesteps,
    uses_cfg,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Buckets:
    """Bucket grid: batch sizes, frame multiple and the largest bucketed frame count (longer runs eagerly)."""

    batch_sizes: tuple[int, ...] = BATCH_BUCKETS
    frame_multiple: int = 128
    max_frames: int = 4096
    # multi-row buckets: frames in steps of this (the warm-up plan's coarse step), rows × frames at most max_area
    # (None: no limit); the engine splits bigger batches (bucket_plan.split_batch). One graph's memory grows with
    # its area: ~41 KB per row-frame on an H200 (8 × 1024: 672 MB, 8 × 1792: 1124 MB; tools/bucket_memory.py).
    coarse_multiple: int = 256
    max_area: int | None = None

    def rows(self, n: int) -> int | None:
        """The smallest bucket batch size ≥ n, or None when n is larger than all of them."""
        return smallest_at_least(self.batch_sizes, n)

    def frames(self, n: int) -> int | None:
        """n rounded up to the frame multiple, or None beyond ``max_frames``."""
        padded = -(-n // self.frame_multiple) * self.frame_multiple
        return padded if padded <= self.max_frames else None

    def bucket(self, n_rows: int, n_frames: int) -> tuple[int, int] | None:
        rows, frames = self.rows(n_rows), self.frames(n_frames)
        return None if rows is None or frames is None else (rows, frames)

    def planned(self, n_items: int, n_frames: int) -> Bucket | None:
        """The (rows, frames) graph a batch of ``n_items`` items of up to ``n_frames`` frames runs in once the
        warm-up plan is captured (multi-row buckets at the coarse step); None: no bucket (it runs eagerly)."""
        b = self.bucket(n_items, n_frames)
        if b is None:
            return None
        rows, frames = b
        return rows, (coarse_frames(frames, self.coarse_multiple, self.frames) if rows > 1 else frames)

    def area(self, n_items: int, n_frames: int) -> int | None:
        """rows × frames of the :meth:`planned` graph; None: no bucket."""
        p = self.planned(n_items, n_frames)
        return None if p is None else p[0] * p[1]

    def cost(self, n_items: int, n_frames: int) -> int | None:
        """The :meth:`planned` graph's :func:`ishow.engine.accel.bucket_plan.weighted_area`: what it costs to replay
        once every planned graph is ready (``GraphSampler.cost_of`` prices the graphs ready now); None: no bucket."""
        p = self.planned(n_items, n_frames)
        return None if p is None else weighted_area(*p)

    def allowed(self, bucket: Bucket) -> bool:
        """Whether ``bucket`` may be captured: one row, or rows × frames within ``max_area``."""
        return bucket[0] == 1 or self.max_area is None or bucket[0] * bucket[1] <= self.max_area


class PinnedStaging:
    """Page-locked host buffers that each replay's inputs are built in: no allocation per batch (fresh pages
    fault in: ~0.4 ms at 1664 frames), and the copy into the graph's static inputs is a real asynchronous DMA
    instead of a staged copy from pageable memory. Grows to the largest bucket used; one owner (the engine
    thread), one batch at a time: the next fill waits for the previous copy to finish."""

    def __init__(self) -> None:
        self._floats: Tensor | None = None  # x0 and cond, back to back
        self._longs: Tensor | None = None  # text, seq_lens, ref_lens
        self._done: Any = None  # CUDA event after the last copy out of these buffers

    def inputs(self, rows: int, frames: int, mel_dim: int) -> BatchInputs:
        """Views of the buffers as [rows, frames] inputs (contents undefined: ``prepare_inputs(out=)`` fills them)."""
        if self._done is not None:
            self._done.synchronize()
        area = rows * frames
        need_f, need_l = 2 * area * mel_dim, area + 2 * rows
        pin = torch.cuda.is_available()  # (CPU-only builds: plain memory, for the tests' stand-in graphs)
        if self._floats is None or self._floats.numel() < need_f:
            self._floats = torch.empty(need_f, dtype=torch.float32, pin_memory=pin)
        if self._longs is None or self._longs.numel() < need_l:
            self._longs = torch.empty(need_l, dtype=torch.long, pin_memory=pin)
        f, lg = self._floats, self._longs
        return BatchInputs(
            x0=f[: area * mel_dim].view(rows, frames, mel_dim),
            cond=f[area * mel_dim : 2 * area * mel_dim].view(rows, frames, mel_dim),
            text=lg[:area].view(rows, frames),
            seq_lens=lg[area : area + rows],
            ref_lens=lg[area + rows : area + 2 * rows],
        )

    def copied(self, device: torch.device) -> None:
        """The copies out of the buffers are queued on ``device``'s current stream: the next fill waits for them."""
        if device.type != "cuda":
            return
        if self._done is None:
            self._done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        self._done.record(torch.cuda.current_stream(device))


@dataclass(eq=False)
class _Captured:
    """One captured bucket: static inputs, the graph, its static output."""

    inputs: BatchInputs
    graph: torch.cuda.CUDAGraph
    output: Tensor


_ConfigKey = tuple[int, float, float | None, bool]
DEFAULT_CONFIG = SamplerConfig()


def config_key(config: SamplerConfig) -> _ConfigKey:
    return (config.nfe_step, config.cfg_strength, config.sway_coef, config.use_epss)


class GraphSampler:
    """Samples batches of :class:`SampleItem` with ``model``; replays one CUDA graph per bucket on CUDA.

    Owned by the engine thread (not thread-safe). ``max_graphs`` bounds the cache (least recently used graphs are
    dropped). Results equal :func:`ishow.engine.f5.sampler.sample` within float tolerance.
    """

    def __init__(
        self,
        model: DiT,
        buckets: Buckets = Buckets(),
        max_graphs: int = 16,
        use_graphs: bool = True,
        pad_eager: bool = False,
        compile: bool = False,
        capture_on_miss: bool = True,
        max_pad: float = MAX_PAD_FACTOR,
        pool: GraphPool | None = None,
    ) -> None:
        self.model = model
        self.capture_on_miss = capture_on_miss
        self.max_pad = max_pad
        # guards the graph table, the step cache and the misses: the warm-up thread captures while the engine
        # thread samples (each graph is replayed only by the engine thread)
        self._lock = threading.RLock()
        self._misses: MissLog[tuple[object, ...]] = MissLog()
        self.capture_log: list[dict[str, object]] = []  # one entry per capture: bucket, seconds, memory
        self.buckets = buckets
        self.max_graphs = max_graphs
        device, _ = model_device_dtype(model)
        self.device = device
        self.use_graphs = use_graphs and device.type == "cuda"
        self.pad_eager = pad_eager
        # torch.compile the blocks inside the captured graphs (CUDA graphs only); off after the first failure
        self.compile = compile and self.use_graphs
        self.compile_error: str | None = None
        self._graphs: collections.OrderedDict[tuple[object, ...], _Captured] = collections.OrderedDict()
        self._steps: dict[_ConfigKey, tuple[list[float], list[StepConditioning]]] = {}
        self.pool = pool if pool is not None else GraphPool()  # shared with the vocoder's graphs by the engine
        self._side: Any = None  # the warm-up stream (see _warm_stream)
        self._staging = PinnedStaging()  # where the engine thread builds each replay's inputs
        self.captures = 0  # graphs captured so far (for metrics and tests)
        self.replays = 0
        self.eager_runs = 0
        self.padded_runs = 0  # batches served by a ready larger bucket (their own was not captured yet)
        # the conv position embedding as Triton kernels (CUDA fp16/bf16; elsewhere ConvPos runs the module itself)
        self.conv_pos = ConvPos(model.input_embed.conv_pos_embed) if from_env().triton_conv else None

    # -- caches --------------------------------------------------------------------------------------------
    def _conditioning(self, config: SamplerConfig) -> tuple[list[float], list[StepConditioning]]:
        key = config_key(config)
        with self._lock:
            cached = self._steps.get(key)
            if cached is None:
                ts = timesteps(config.nfe_step, config.sway_coef, config.use_epss)
                cached = (ts, step_conditionings(self.model, ts))
                self._steps[key] = cached
        return cached

    def ready_buckets(self, config: SamplerConfig = DEFAULT_CONFIG) -> list[Bucket]:
        """(rows, frames) of every captured graph for ``config``."""
        ck = config_key(config)
        with self._lock:
            return [(int(k[0]), int(k[1])) for k in self._graphs if k[2:] == ck]  # type: ignore[call-overload]

    def cost_of(self, config: SamplerConfig = DEFAULT_CONFIG) -> Callable[[int, int], int | None]:
        """``cost(k, n)``: what a batch of ``k`` items of up to ``n`` frames costs to run now, in row-frames of an
        8-row graph (for :func:`ishow.engine.accel.bucket_plan.split_batch`): the weighted area
        (:func:`ishow.engine.accel.bucket_plan.weighted_area`) of the graph it would replay (its own bucket, or
        the ready larger one that serves it), or ``EAGER_FACTOR`` × its bucket's where it would run eagerly; None
        where no bucket fits. The ready graphs are read once, now."""
        ready = set(self.ready_buckets(config))
        capture = self.capture_on_miss and self.use_graphs
        known: dict[Bucket, int] = {}  # many (k, n) share a bucket: each cover is looked up once

        def cost(k: int, n: int) -> int | None:
            bucket = self.buckets.bucket(k, n)
            if bucket is None:
                return None
            got = known.get(bucket)
            if got is None:
                use = bucket if capture or bucket in ready else cover_bucket(bucket, ready, self.max_pad)
                if use is None:
                    got = EAGER_FACTOR * weighted_area(*(self.buckets.planned(k, n) or bucket))
                else:
                    got = weighted_area(*use)
                known[bucket] = got
            return got

        return cost

    def take_misses(self) -> list[tuple[Bucket, SamplerConfig]]:
        """Buckets batches asked for and did not find captured since the last call (oldest first), emptied."""
        with self._lock:
            keys = self._misses.take()
        out: list[tuple[Bucket, SamplerConfig]] = []
        for k in keys:
            rows, frames, nfe, cfg, sway, epss = k
            config = SamplerConfig(nfe_step=nfe, cfg_strength=cfg, sway_coef=sway, use_epss=epss)  # type: ignore[arg-type]
            out.append(((int(rows), int(frames)), config))  # type: ignore[call-overload]
        return out

    @property
    def full(self) -> bool:
        with self._lock:
            return len(self._graphs) >= self.max_graphs

    @torch.inference_mode()
    def capture_bucket(self, bucket: Bucket, config: SamplerConfig = DEFAULT_CONFIG) -> dict[str, object]:
        """Capture ``bucket`` for ``config`` now (from the warm-up thread), unless it is ready or the cache is full.
        Returns what it cost: seconds, and GPU memory the process reserved more afterwards."""
        key = (*bucket, *config_key(config))
        with self._lock:
            if key in self._graphs or len(self._graphs) >= self.max_graphs or not self.use_graphs:
                return {"skipped": True}
            if not self.buckets.allowed(bucket):
                self._misses.discard(key)
                return {"skipped": True, "reason": f"over max_area {self.buckets.max_area}"}
        ts, steps = self._conditioning(config)
        host = dummy_inputs(bucket[0], bucket[1], self.model.config.mel_dim)
        built = cudnn_attention.graphs_built()
        entry, info = timed_capture(self.device, bucket, lambda: self._capture(host, ts, steps, config.cfg_strength))
        info["attention_graphs_built"] = cudnn_attention.graphs_built() - built  # 0 once prepare_attention ran
        with self._lock:
            self._graphs[key] = entry
            self._misses.discard(key)
            self.capture_log.append(info)
        return info

    def prepare_attention(self, buckets: Sequence[Bucket], config: SamplerConfig = DEFAULT_CONFIG) -> dict[str, object]:
        """Build the cuDNN attention graphs the compiled blocks of ``buckets`` will use (see
        :func:`ishow.engine.accel.cudnn_attention.prebuild`: each build stalls every Python thread for ~45 ms, so
        the warm-up does them all before "ready"). Nothing when the blocks do not run cuDNN attention."""
        if not (self.compile and self.use_graphs and from_env().attention == "cudnn-fe"):
            return {"skipped": True}
        cfg = self.model.config
        dtype = self.model.proj_out.weight.dtype
        halves = 2 if uses_cfg(config.cfg_strength) else 1  # the CFG halves run as rows of their own
        keys = [
            cudnn_attention.fused_key(halves * rows, cfg.heads, frames, cfg.dim_head, dtype, self.device)
            for rows, frames in dict.fromkeys(buckets)
        ]
        t0 = time.perf_counter()
        new = cudnn_attention.prebuild(keys)
        return {"built": new, "buckets": len(keys), "seconds": round(time.perf_counter() - t0, 3),
                "error": cudnn_attention.failure()}  # fmt: skip

    def graph_keys(self) -> list[tuple[object, ...]]:
        """Cached graph keys, least recently used first: (rows, frames, nfe, cfg, sway, epss)."""
        return list(self._graphs)

    def clear(self) -> None:
        """Drop every graph and the step cache (after the model's weights change)."""
        self._graphs.clear()
        self._steps.clear()

    # -- sampling ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(
        self,
        items: Sequence[SampleItem],
        config: SamplerConfig = DEFAULT_CONFIG,
        noise: Sequence[Tensor] | None = None,
    ) -> list[Tensor]:
        """Generated mel of each item, [duration_i − Tref_i, M] fp32 on the model's device."""
        full = self.sample_full(items, config, noise)
        return [full[i, int(it.cond.shape[0]) : it.total_frames()] for i, it in enumerate(items)]

    @torch.inference_mode()
    def sample_full(
        self,
        items: Sequence[SampleItem],
        config: SamplerConfig = DEFAULT_CONFIG,
        noise: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """[B, max duration, M] fp32 (reference frames restored, padding zero), like ``sampler.sample_full``."""
        if not items:
            raise ValueError("sample() needs at least one item")
        durs = [it.total_frames() for it in items]
        b, n = len(items), max(durs)
        ts, steps = self._conditioning(config)
        bucket = self.buckets.bucket(b, n)
        mel_dim = self.model.config.mel_dim
        if bucket is not None and self.use_graphs:
            use = bucket if self.capture_on_miss else self._ready_cover(bucket, config)
            if use is not None:
                staging = self._staging.inputs(use[0], use[1], mel_dim)
                host = prepare_inputs(items, mel_dim, noise, n_frames=use[1], n_rows=use[0], out=staging)
                out = self._replay(use, config, host, ts, steps)
                self._staging.copied(self.device)
                return out[:b, :n].clone()  # the pool may hand this memory to another graph's intermediates
        if bucket is not None and self.pad_eager:
            host = prepare_inputs(items, mel_dim, noise, n_frames=bucket[1], n_rows=bucket[0])
            masked = True
        else:
            host = prepare_inputs(items, mel_dim, noise)
            masked = len(set(durs)) > 1
        self.eager_runs += 1
        inp = _to_device(host, self.device)
        return run_nfe(self.model, inp, ts, steps, config.cfg_strength, masked=masked, pos=self.conv_pos)[:b, :n]

    def _replay(
        self,
        bucket: tuple[int, int],
        config: SamplerConfig,
        host: BatchInputs,
        ts: list[float],
        steps: list[StepConditioning],
    ) -> Tensor:
        key = (*bucket, *config_key(config))
        with self._lock:
            entry = self._graphs.get(key)
            if entry is not None and self.capture_on_miss:
                self._graphs.move_to_end(key)
        if entry is None:
            entry = self._capture(host, ts, steps, config.cfg_strength)
            with self._lock:
                self._graphs[key] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
        else:
            entry.inputs.copy_(host)
        entry.graph.replay()
        self.replays += 1
        return entry.output

    def _ready_cover(self, bucket: Bucket, config: SamplerConfig) -> Bucket | None:
        """The ready bucket to run ``bucket``'s batch on (itself, or a larger one), remembering a miss."""
        ck = config_key(config)
        key = (*bucket, *ck)
        with self._lock:
            if key in self._graphs:
                return bucket
            self._misses.add(key)
            ready = [(int(k[0]), int(k[1])) for k in self._graphs if k[2:] == ck]  # type: ignore[call-overload]
        use = cover_bucket(bucket, ready, self.max_pad)
        if use is not None:
            self.padded_runs += 1
        return use

    def _warm_stream(self) -> Any:
        """ONE side stream for every warm-up run: each new stream gets its own cuBLAS workspace (~32 MiB on
        Hopper), and the pool hands out up to 32 of them. Captures use torch's one default capture stream."""
        with self._lock:
            if self._side is None:
                self._side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            return self._side

    def _capture(
        self, host: BatchInputs, ts: list[float], steps: list[StepConditioning], cfg_strength: float
    ) -> _Captured:
        if self.compile:
            from ishow.engine.accel.fused import FusedBlocks

            runner = FusedBlocks(self.model, compile=True)
            if runner.compiled:
                try:
                    return self._capture_with(host, ts, steps, cfg_strength, runner)
                except Exception as e:  # noqa: BLE001 (inductor/triton/dynamo raise many types; plain graphs still work)
                    self.compile_error = f"{type(e).__name__}: {e}"
                    log.warning("compiled DiT blocks failed (%s); capturing the plain forward", self.compile_error)
            self.compile = False
        return self._capture_with(host, ts, steps, cfg_strength, None)

    def _capture_with(
        self,
        host: BatchInputs,
        ts: list[float],
        steps: list[StepConditioning],
        cfg_strength: float,
        runner: Any,
    ) -> _Captured:
        """Warm up on a side stream, then capture; ``runner`` (the compiled blocks) is passed down explicitly, so
        an eager batch on the engine thread never sees it. The capture is thread-local: the engine thread may
        keep launching work (on other streams) while this runs on the warm-up thread."""
        static = _to_device(host, self.device)
        side = self._warm_stream()
        side.wait_stream(torch.cuda.current_stream(self.device))  # the inputs were copied on this thread's stream
        with torch.cuda.stream(side):  # warm up cuBLAS/cuDNN handles and compile outside the capture; every Euler
            # step runs the same kernels on the same shapes, so one step warms them all (7× less warm-up time)
            run_nfe(self.model, static, ts[:2], steps[:1], cfg_strength, runner=runner, pos=self.conv_pos)
        side.synchronize()  # a CPU wait on this thread only: the engine's stream never queues behind a warm-up
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool.handle(), capture_error_mode="thread_local"):
            output = run_nfe(self.model, static, ts, steps, cfg_strength, runner=runner, pos=self.conv_pos)
        self.captures += 1
        return _Captured(inputs=static, graph=graph, output=output)


def _to_device(inp: BatchInputs, device: torch.device) -> BatchInputs:
    return BatchInputs(
        x0=inp.x0.to(device),
        cond=inp.cond.to(device),
        text=inp.text.to(device),
        seq_lens=inp.seq_lens.to(device),
        ref_lens=inp.ref_lens.to(device),
    )


def dummy_inputs(rows: int, frames: int, mel_dim: int) -> BatchInputs:
    """Plausible CPU inputs of one bucket for capturing it (every replay copies real inputs in first)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(rows * 100_003 + frames)
    ref = max(1, frames // 2)
    cond = torch.zeros(rows, frames, mel_dim)
    cond[:, :ref] = torch.randn(rows, ref, mel_dim, generator=gen)
    return BatchInputs(
        x0=torch.randn(rows, frames, mel_dim, generator=gen),
        cond=cond,
        text=torch.randint(0, 32, (rows, frames), generator=gen),
        seq_lens=torch.full((rows,), frames, dtype=torch.long),
        ref_lens=torch.full((rows,), ref, dtype=torch.long),
    )
