"""How a burst's batches of 8 run: the e2e's burst messages (``ishow bench --e2e``'s 16, with the shipped voices)
as its two batches, each timed whole (one graph, as far as ``--cap`` rows × frames allows: the engine's
``max_batch_frames`` by default), split the old way (greedy: as many as fit), split by
:func:`ishow.engine.accel.bucket_plan.split_batch` priced by area (session 7: every row-frame alike, 280 per
sub-batch) and priced as the engine does now (by rows, ``GraphSampler.cost_of``). Every sub-batch's sampler and
vocoder times are shown, so a slow one stands out. Graphs are captured first (untimed).

One device call: ``python3 tools/burst_split.py [--iters 5] [--cap 8192]``. Random weights at the real size, fp16,
compiled.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ishow.bench.e2e import idle_messages
from ishow.bench.local import make_engine, random_models
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.bucket_plan import split_batch
from ishow.engine.base import SynthRequest

REPO = Path(__file__).resolve().parents[1]
VOICES = {
    "default_zh": "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。",
    "default_en": "Hello everyone, welcome to the stream. Thanks for hanging out with me today.",
}


def greedy(frames: Sequence[int], area: Callable[[int, int], int | None], max_area: int) -> list[list[int]]:
    """The split before session 7: sorted by length, each group as large as fits max_area."""
    groups: list[list[int]] = []
    for i in sorted(range(len(frames)), key=lambda j: frames[j]):
        if groups:
            a = area(len(groups[-1]) + 1, frames[i])
            if a is not None and a <= max_area:
                groups[-1].append(i)
                continue
        groups.append([i])
    whole = area(len(frames), max(frames))
    return [list(range(len(frames)))] if whole is not None and whole <= max_area else groups


def ms(fn: Callable[[], object], iters: int) -> float:
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--cap", type=int, default=EngineConfig().max_batch_frames, help="rows × frames per graph")
    a = ap.parse_args()
    device = torch.device("cuda")
    dit, vocos = random_models()
    cfg = EngineConfig(device="cuda", precision="fp16", max_batch_frames=a.cap)
    eng = make_engine(cfg, dit, vocos, device, torch.float16)
    assert eng.sampler is not None and eng.vocoder_backend is not None
    voices = {v: VoiceSpec(id=v, ref_audio=REPO / "voices" / f"{v}.wav", ref_text=t) for v, t in VOICES.items()}
    msgs = idle_messages(16)
    reqs = [SynthRequest(text=f"{t} {i}", voice=voices[v], seed=i) for i, (t, v) in enumerate(msgs)]
    b = eng.sampler.buckets
    cap = a.cap
    for label, batch in (("burst batch 1", reqs[:8]), ("burst batch 2", reqs[8:])):
        items = [eng._item(r) for r in batch]
        frames = [it.total_frames() for it, _ in items]
        print(f"{label}: frames {frames}")
        plans = {
            "greedy (before)": greedy(frames, b.area, cap),
            "least cost, area": split_batch(frames, b.area, cap, overhead=280),
            "least cost, rows": split_batch(frames, b.area, cap, eng.sampler.cost_of()),
        }
        whole_area = b.area(len(frames), max(frames))
        if whole_area is not None and whole_area <= cap:
            plans["whole"] = [list(range(len(frames)))]
        for name, parts in plans.items():
            total = 0.0
            desc = []
            for p in parts:
                sub = [items[i] for i in p]
                sample_items = [it for it, _ in sub]
                mels = eng.sampler.sample(sample_items)  # captures on first use (untimed below)
                eng.vocoder_backend.decode(mels)
                t_s = ms(lambda s=sample_items: eng.sampler.sample(s), a.iters)  # type: ignore[misc]
                t_v = ms(lambda m=mels: eng.vocoder_backend.decode(m), a.iters)  # type: ignore[misc]
                bucket = eng.sampler.buckets.bucket(len(p), max(frames[i] for i in p))
                desc.append(f"{len(p)}@{bucket} sampler {t_s:.1f} + vocoder {t_v:.2f}")
                total += t_s + t_v
            print(f"  {name:18s} {total:7.1f} ms: " + "; ".join(desc))


if __name__ == "__main__":
    main()
