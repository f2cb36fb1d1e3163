"""A/B of the DiT kernel switches (``ISHOW_DIT_KERNELS``) on the graphed, compiled sampler alone.

For each setting (legacy, masked, unfused, both new kernels) a fresh :class:`GraphSampler` captures a batch-1 bucket
(768 frames, 18 of them padding, like the bench's message) and a batch-16 bucket of mixed lengths (1792 frames),
then times graph replays (median of ``--reps``) and compares the mel with the legacy setting's. One device call:
``python3 tools/dit_kernels_ab.py``; ``--device cpu --model tiny`` is a smoke run (eager, not timed meaningfully)."""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ishow.bench.local import random_models, rel_l2
from ishow.engine.accel.fused import KERNELS_ENV
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.f5.sampler import SampleItem

SETTINGS = ("legacy", "masked", "unfused", "")


def items(n: int, durations: list[int], mel_dim: int, seed: int) -> list[SampleItem]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, dur in enumerate(durations[:n]):
        ref = dur * 5 // 8
        cond = torch.randn(ref, mel_dim, generator=gen) * 1.5 - 4
        text = tuple(int(t) for t in torch.randint(1, 2000, (max(4, dur // 20),), generator=gen))
        out.append(SampleItem(cond=cond, text=text, duration=dur, seed=i))
    return out


def timed(sampler: GraphSampler, batch: list[SampleItem], reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        sampler.sample(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="F5TTS_v1_Base")
    p.add_argument("--reps", type=int, default=30)
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    dit, _ = random_models(model=args.model)
    dit = dit.to(device, dtype)
    mel = dit.config.mel_dim
    b1 = items(1, [750], mel, 1)
    b16 = items(16, [1700 - 75 * i for i in range(16)], mel, 2)
    ref: dict[str, list[torch.Tensor]] = {}
    print(f"{'setting':16} {'b1 ms':>8} {'b16 ms':>8} {'b1 vs legacy':>13} {'b16 vs legacy':>14}")
    for setting in SETTINGS:
        os.environ[KERNELS_ENV] = setting
        sampler = GraphSampler(dit, compile=device.type == "cuda", use_graphs=device.type == "cuda")
        row = []
        errs = []
        for name, batch in (("b1", b1), ("b16", b16)):
            with torch.inference_mode():
                got = [m.float().cpu() for m in sampler.sample(batch)]
                row.append(timed(sampler, batch, args.reps if name == "b1" else max(3, args.reps // 3), device))
            ref.setdefault(name, got)
            errs.append(max(rel_l2(a, b) for a, b in zip(got, ref[name], strict=True)))
        label = setting or "new (both)"
        print(f"{label:16} {row[0]:8.2f} {row[1]:8.2f} {errs[0]:13.2e} {errs[1]:14.2e}  compiled={sampler.compile}")
        del sampler
    os.environ.pop(KERNELS_ENV, None)


if __name__ == "__main__":
    main()
