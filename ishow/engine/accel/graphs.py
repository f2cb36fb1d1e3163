"""Bucketed sampling with the whole NFE loop captured in CUDA graphs.

A batch is padded to a (rows, frames) bucket: rows to the next of ``Buckets.batch_sizes`` (extra rows are
1-frame dummies), frames to the next multiple of ``Buckets.frame_multiple``. Key padding masks make the padding
exact, so an item's mel does not depend on its bucket or its neighbours. Per bucket, the text embedding and every
Euler step (7 CFG-packed DiT forwards) are captured once, lazily, into one CUDA graph with static input buffers,
kept in a bounded LRU cache sharing one memory pool; a replay is one launch. Shapes outside the buckets, CPU
devices and ``use_graphs=False`` run the same code eagerly (``pad_eager`` pads them anyway, for tests).

The per-step time conditioning (time embedding and every block's modulation) is computed once per sampler
configuration; the rotary table and the key padding bias once per run (inside the graph: once per replay).

Shapes: ``B`` batch, ``N`` frames, ``M`` mel channels.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

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
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Buckets:
    """Bucket grid: batch sizes, frame multiple and the largest bucketed frame count (longer runs eagerly)."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    frame_multiple: int = 128
    max_frames: int = 4096

    def rows(self, n: int) -> int | None:
        """The smallest bucket batch size ≥ n, or None when n is larger than all of them."""
        return next((b for b in sorted(self.batch_sizes) if b >= n), None)

    def frames(self, n: int) -> int | None:
        """n rounded up to the frame multiple, or None beyond ``max_frames``."""
        padded = -(-n // self.frame_multiple) * self.frame_multiple
        return padded if padded <= self.max_frames else None

    def bucket(self, n_rows: int, n_frames: int) -> tuple[int, int] | None:
        rows, frames = self.rows(n_rows), self.frames(n_frames)
        return None if rows is None or frames is None else (rows, frames)


@dataclass(eq=False)
class _Captured:
    """One captured bucket: static inputs, the graph, its static output."""

    inputs: BatchInputs
    graph: torch.cuda.CUDAGraph
    output: Tensor


_ConfigKey = tuple[int, float, float | None, bool]
DEFAULT_CONFIG = SamplerConfig()


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
    ) -> None:
        self.model = model
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
        self._pool: Any = None
        self.captures = 0  # graphs captured so far (for metrics and tests)
        self.replays = 0
        self.eager_runs = 0

    # -- caches --------------------------------------------------------------------------------------------
    def _conditioning(self, config: SamplerConfig) -> tuple[list[float], list[StepConditioning]]:
        key: _ConfigKey = (config.nfe_step, config.cfg_strength, config.sway_coef, config.use_epss)
        cached = self._steps.get(key)
        if cached is None:
            ts = timesteps(config.nfe_step, config.sway_coef, config.use_epss)
            cached = (ts, step_conditionings(self.model, ts))
            self._steps[key] = cached
        return cached

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
            host = prepare_inputs(items, mel_dim, noise, n_frames=bucket[1], n_rows=bucket[0])
            out = self._replay(bucket, config, host, ts, steps)
            return out[:b, :n].clone()  # the pool may hand this memory to another graph's intermediates
        if bucket is not None and self.pad_eager:
            host = prepare_inputs(items, mel_dim, noise, n_frames=bucket[1], n_rows=bucket[0])
            masked = True
        else:
            host = prepare_inputs(items, mel_dim, noise)
            masked = len(set(durs)) > 1
        self.eager_runs += 1
        inp = _to_device(host, self.device)
        return run_nfe(self.model, inp, ts, steps, config.cfg_strength, masked=masked)[:b, :n]

    def _replay(
        self,
        bucket: tuple[int, int],
        config: SamplerConfig,
        host: BatchInputs,
        ts: list[float],
        steps: list[StepConditioning],
    ) -> Tensor:
        key = (*bucket, config.nfe_step, config.cfg_strength, config.sway_coef, config.use_epss)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(host, ts, steps, config.cfg_strength)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            entry.inputs.copy_(host)
        entry.graph.replay()
        self.replays += 1
        return entry.output

    def _capture(
        self, host: BatchInputs, ts: list[float], steps: list[StepConditioning], cfg_strength: float
    ) -> _Captured:
        if self.compile:
            from ishow.engine.f5.fused import FusedBlocks

            runner = FusedBlocks(self.model, compile=True)
            if runner.compiled:
                self.model.block_runner = runner
                try:
                    return self._capture_with(host, ts, steps, cfg_strength)
                except Exception as e:  # noqa: BLE001 (inductor/triton/dynamo raise many types; plain graphs still work)
                    self.compile_error = f"{type(e).__name__}: {e}"
                    log.warning("compiled DiT blocks failed (%s); capturing the plain forward", self.compile_error)
                finally:
                    self.model.block_runner = None
            self.compile = False
        return self._capture_with(host, ts, steps, cfg_strength)

    def _capture_with(
        self, host: BatchInputs, ts: list[float], steps: list[StepConditioning], cfg_strength: float
    ) -> _Captured:
        static = _to_device(host, self.device)
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm up cuBLAS/cuDNN handles and autotuning outside the capture
            run_nfe(self.model, static, ts, steps, cfg_strength)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            output = run_nfe(self.model, static, ts, steps, cfg_strength)
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
