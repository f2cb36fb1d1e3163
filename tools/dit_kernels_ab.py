"""A/B of the DiT kernel switches (``ISHOW_DIT_KERNELS``, :mod:`ishow.engine.accel.kernel_choice`) on the graphed,
compiled sampler alone, plus launch-shape sweeps of the Triton conv position and RoPE kernels.

For each setting a fresh :class:`GraphSampler` captures a batch-1 bucket (750 frames in 768, like the bench's
message), a long batch-1 one (1560 frames in 1664: the e2e's slowest idle message), a batch-16 bucket of equal
lengths (16 × 750, the bench's batch 16) and one of mixed lengths (1792 frames), times graph replays (median of
``--reps``) and compares each mel with the eager fp32 sampler (the accuracy
gate, ≤ 1e-2). One device call: ``python3 tools/dit_kernels_ab.py [--settings legacy,,cudnn-conv]``; ``--device cpu
--model tiny`` is a smoke run (eager, not timed meaningfully)."""

from __future__ import annotations

import argparse
import copy
import os
import time
from functools import partial
from typing import Any

import torch

from ishow.bench.local import random_models, rel_l2
from ishow.bench.measure import graph_us, time_calls
from ishow.engine.accel.conv_pos import ConvPos, Tile
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.accel.kernel_choice import KERNELS_ENV
from ishow.engine.f5.sampler import SampleItem, SamplerConfig, sample

SETTINGS = ("legacy", "", "varlen", "cudnn-conv", "gelu-apart", "cudnn-attn", "masked", "unfused", "rope-inductor")


def items(n: int, durations: list[int], mel_dim: int, seed: int) -> list[SampleItem]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, dur in enumerate(durations[:n]):
        ref = dur * 5 // 8
        cond = torch.randn(ref, mel_dim, generator=gen) * 1.5 - 4
        text = tuple(int(t) for t in torch.randint(1, 2000, (max(4, dur // 20),), generator=gen))
        out.append(SampleItem(cond=cond, text=text, duration=dur, seed=i))
    return out


def with_residual(module: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = module(x, mask) + x
    return out


def conv_sweep(dit: Any, device: torch.device) -> None:
    """The conv position embedding alone: cuDNN module vs the Triton kernel at each launch shape."""
    module = dit.input_embed.conv_pos_embed
    print("conv position embedding + residual, GPU µs per call (in a CUDA graph); error vs the module")
    for bsz, n, real in ((2, 768, 750), (32, 768, 750), (32, 1792, 1700)):
        gen = torch.Generator().manual_seed(bsz + n)
        x = (torch.randn(bsz, n, 1024, generator=gen) * 0.5).to(device, torch.float16)
        mask = (torch.arange(n)[None] < torch.full((bsz,), real)[:, None]).to(device)
        with torch.inference_mode():
            want = module(x, mask) + x
            base = graph_us(partial(with_residual, module, x, mask))
            print(f"  B{bsz} N{n}: cuDNN {base:8.1f} us")
            for tile in (Tile(32, 2, 3), Tile(32, 4, 3), Tile(64, 4, 2), Tile(64, 4, 3), Tile(64, 4, 4),
                         Tile(64, 8, 3), Tile(128, 4, 3), Tile(128, 8, 3), Tile(128, 8, 4)):  # fmt: skip
                runner = ConvPos(module, tile)
                got = runner(x, mask)
                err = rel_l2(got.float(), want.float())
                us = graph_us(partial(runner, x, mask))
                print(f"    {tile}: {us:8.1f} us ({base / us:4.1f}x)  rel L2 {err:.2e}")


def copy_qk(qkv: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(qkv[..., :2048]).copy_(qkv[..., :2048])


def rope_sweep(device: torch.device) -> None:
    """RoPE of q and k alone: inductor's kernel (the same function compiled apart) vs the Triton kernel at each
    launch shape, and the floor: a copy of the same bytes."""
    from ishow.engine.accel import rope as rp

    inductor = torch.compile(rp.split_rope_torch, dynamic=False, fullgraph=True)
    print("RoPE of q and k, GPU µs per call (in a CUDA graph); max abs error vs the torch ops")
    for rows, n in ((2, 768), (2, 1536), (32, 768)):
        gen = torch.Generator().manual_seed(rows + n)
        qkv = torch.randn(rows, n, 3 * 1024, generator=gen).to(device, torch.float16)
        ang = torch.randn(n, 32, generator=gen)
        rot = torch.stack((ang.cos(), ang.sin()), dim=-1).to(device)
        cos, sin = rot[..., 0], rot[..., 1]
        with torch.inference_mode():
            want = rp.split_rope_torch(qkv, cos, sin, 16)
            base = graph_us(partial(inductor, qkv, cos, sin, 16))
            floor = graph_us(partial(copy_qk, qkv))
            print(f"  {rows}x{n}: inductor {base:7.1f} us, copy of q and k {floor:7.1f} us")
            for tile in (rp.Tile(16, 8, 2), rp.Tile(16, 16, 2), rp.Tile(8, 8, 1), rp.Tile(16, 8, 1),
                         rp.Tile(16, 16, 4), rp.Tile(8, 16, 1), rp.Tile(32, 16, 4), rp.Tile(16, 4, 1),
                         rp.Tile(8, 32, 2), rp.Tile(16, 32, 4), rp.Tile(32, 8, 4)):  # fmt: skip
                got = rp.split_rope_triton(qkv, rot, 16, tile)
                err = max(float((g.float() - w.float()).abs().max()) for g, w in zip(got, want, strict=True))
                us = graph_us(partial(rp.split_rope_triton, qkv, rot, 16, tile))
                print(f"    {tile}: {us:7.1f} us ({base / us:4.2f}x)  err {err:.1e}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="F5TTS_v1_Base")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--settings", default=",".join(s or "new" for s in SETTINGS))
    p.add_argument("--no-sweep", action="store_true", help="neither launch-shape sweep")
    p.add_argument("--sweeps", default="conv,rope", help="which launch-shape sweeps: conv, rope")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    dit32, _ = random_models(model=args.model)
    dit32 = dit32.to(device)
    dit = copy.deepcopy(dit32).to(device, dtype)
    mel = dit.config.mel_dim
    batches = {"b1": items(1, [750], mel, 1), "b1L": items(1, [1560], mel, 4), "b16": items(16, [750] * 16, mel, 3),
               "mix16": items(16, [1700 - 75 * i for i in range(16)], mel, 2)}  # fmt: skip
    sweeps = set() if args.no_sweep else {w.strip() for w in args.sweeps.split(",")}
    if device.type == "cuda" and "conv" in sweeps:
        conv_sweep(dit, device)
    if device.type == "cuda" and "rope" in sweeps:
        rope_sweep(device)
    with torch.inference_mode():
        ref = {k: [m.float().cpu() for m in sample(dit32, b, SamplerConfig())] for k, b in batches.items()}
    del dit32
    print(f"{'setting':24} " + " ".join(f"{k + ' ms':>9}" for k in batches) + "  rel L2 vs eager fp32 (same order)")
    for setting in [s if s != "new" else "" for s in args.settings.split(",")]:
        os.environ[KERNELS_ENV] = setting.replace("+", ",")
        t0 = time.perf_counter()
        sampler = GraphSampler(dit, compile=device.type == "cuda", use_graphs=device.type == "cuda")
        row, errs = [], []
        for name, batch in batches.items():
            with torch.inference_mode():
                got = [m.float().cpu() for m in sampler.sample(batch)]
                reps = args.reps if name.startswith("b1") else max(3, args.reps // 3)
                row.append(time_calls(partial(sampler.sample, batch), device, reps, 0)[0])
            errs.append(max(rel_l2(a, b) for a, b in zip(got, ref[name], strict=True)))
        label = setting or "new (default)"
        print(f"{label:24} " + " ".join(f"{r:9.2f}" for r in row) + "  " + " ".join(f"{e:.2e}" for e in errs)
              + f"  compiled={sampler.compile} ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        del sampler
    os.environ.pop(KERNELS_ENV, None)


if __name__ == "__main__":
    main()
