"""Timing shared by ``ishow bench``, its upstream comparison and the GPU tools: synchronized wall time per call (as
a table row), and GPU time per call inside a CUDA graph."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


@dataclasses.dataclass
class Row:
    name: str
    batch: int
    ms: float  # median per call
    audio_s: float  # seconds of audio per call
    peak_mb: float
    spread_ms: float = 0.0  # (max - min) over the timed calls

    @property
    def ms_per_msg(self) -> float:
        return self.ms / self.batch

    @property
    def rtf(self) -> float:
        return self.ms / 1000 / self.audio_s if self.audio_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(ms_per_msg=self.ms_per_msg, rtf=self.rtf, audio_s_per_s=(1 / self.rtf if self.rtf else 0.0))
        return d


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> tuple[float, float]:
    """Median and spread (max - min) in ms of ``iters`` calls after ``warmup`` calls, synchronized."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times) - min(times)


def graph_us(fn: Callable[[], object], reps: int = 20) -> float:
    """GPU µs per call of ``fn`` captured ``reps`` times into one CUDA graph (median of 5 replays)."""
    s = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1000 / reps)
    ts.sort()
    return float(ts[2])


def measure(
    name: str, batch: int, fn: Callable[[], object], audio_s: float, device: torch.device, iters: int, warmup: int
) -> Row:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms, spread = time_calls(fn, device, iters, warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return Row(name=name, batch=batch, ms=ms, audio_s=audio_s, peak_mb=peak, spread_ms=spread)


HEADER = f"{'path':34} {'batch':>5} {'ms/batch':>9} {'ms/msg':>8} {'RTF':>7} {'audio s/s':>9} {'peak GB':>8}"


def fmt_row(r: Row) -> str:
    aps = 1 / r.rtf if r.rtf else 0.0
    return (f"{r.name:34} {r.batch:5d} {r.ms:9.1f} {r.ms_per_msg:8.2f} {r.rtf:7.4f} {aps:9.1f} "
            f"{r.peak_mb / 1024:8.2f}")  # fmt: skip
