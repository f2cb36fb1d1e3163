"""A/B of the compiled vocoder forms (:mod:`ishow.engine.accel.fast_vocos`): the Triton block kernel (default) vs
per-stage graphs (``vocos-stages``) vs the whole channels-last backbone as one graph (``vocos-fused``), and the fp32
graph, through ``TorchVocoder.decode`` (what ``ishow bench`` times: host work, graph replay, copy out) at 256 frames
(batch 1) and 8 × 600 frames, with each output vs the eager fp32 vocoder; first, the fp32 module's batch of 8 vs
each item alone, and a launch-shape sweep of the block kernel.

One device call: ``python3 tools/vocoder_ab.py [--settings ,vocos-stages,vocos-exact-gelu+vocos-conv-embed,1-row]``
(``+`` joins words into one setting; ``1-row`` is the default kernels with 1-row graph buckets, so one mel
decodes on its own frames instead of a 2-row bucket with a 1-frame dummy row)."""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch

from ishow.bench.local import random_models, rel_l2
from ishow.engine.accel.kernel_choice import KERNELS_ENV
from ishow.engine.accel.vocoder_backends import VOCODER_BATCH_BUCKETS, TorchVocoder, VocoderBuckets


def block_kernel_sweep(device: torch.device) -> None:
    """The ConvNeXt block head alone (previous residual + depthwise conv + LayerNorm, C 512): torch ops compiled by
    inductor vs the Triton kernel at each launch shape, GPU µs per call inside a CUDA graph."""
    from functools import partial

    from ishow.bench.measure import graph_us
    from ishow.engine.accel import vocos_convnext as vc

    inductor = torch.compile(vc.dw_ln_torch, dynamic=False, fullgraph=True)
    print("ConvNeXt block head (residual + depthwise conv + LayerNorm), GPU µs per call; max abs error vs torch ops")
    for b, t in ((1, 256), (8, 600)):
        gen = torch.Generator().manual_seed(t)
        x = torch.randn(b, t, 512, generator=gen).to(device, torch.float16)
        y = torch.randn(b, t, 512, generator=gen).to(device, torch.float16)
        gamma, bias, lnw, lnb = (torch.randn(512, generator=gen).to(device, torch.float16) for _ in range(4))
        w = (torch.randn(512, 1, 7, generator=gen) * 0.3).to(device, torch.float16)
        lens = torch.full((b,), t, dtype=torch.int32, device=device)
        args = (x, y, gamma, lens, w, bias, lnw, lnb)
        with torch.inference_mode():
            want = vc.dw_ln_torch(*args)
            base = graph_us(partial(inductor, *args))
            print(f"  {b}x{t}: inductor {base:6.1f} us")
            for tile in (vc.Tile(8, 4), vc.Tile(4, 4), vc.Tile(16, 4), vc.Tile(8, 2), vc.Tile(4, 2), vc.Tile(16, 8),
                         vc.Tile(2, 1), vc.Tile(32, 8)):  # fmt: skip
                got = vc.dw_ln_triton(*args, tile=tile)
                err = max(float((g.float() - r.float()).abs().max()) for g, r in zip(got, want, strict=True))
                us = graph_us(partial(vc.dw_ln_triton, *args, tile=tile))
                print(f"    {tile}: {us:6.1f} us ({base / us:4.2f}x)  err {err:.1e}", flush=True)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument(
        "--settings",
        default=",vocos-stages,vocos-fused,,vocos-stages,fp32 graph",
        help="comma-separated ISHOW_DIT_KERNELS values ('' the default; 'fp32 graph' the plain fp32 one)",
    )
    args = p.parse_args()
    device = torch.device("cuda")
    _, vocos = random_models()
    vocos = vocos.to(device)
    gen = torch.Generator().manual_seed(7)
    cases = {
        "b1 256f": [(torch.randn(256, 100, generator=gen) * 1.5 - 4).to(device)],
        "b8 600f": [(torch.randn(600 - 20 * i, 100, generator=gen) * 1.5 - 4).to(device) for i in range(8)],
    }
    cases["b1 600f"] = cases["b8 600f"][:1]
    ref = TorchVocoder(copy.deepcopy(vocos), use_graphs=False)
    want = {k: ref.decode(v) for k, v in cases.items()}
    # the fp32 module alone: a batch must decode like its items alone (cuFFT and non-Hermitian DC/Nyquist bins)
    b8 = cases["b8 600f"]
    alone = [ref.decode([m])[0] for m in b8]
    errs = [rel_l2(a, b) for a, b in zip(want["b8 600f"], alone, strict=True)]
    print("fp32 module, batch of 8 vs each alone:", " ".join(f"{e:.1e}" for e in errs))
    block_kernel_sweep(device)
    for setting in args.settings.split(","):
        os.environ[KERNELS_ENV] = "" if setting in ("fp32 graph", "1-row") else setting.replace("+", ",")
        buckets = VocoderBuckets(batch_sizes=(1, *VOCODER_BATCH_BUCKETS)) if setting == "1-row" else VocoderBuckets()
        voc = TorchVocoder(vocos, half=setting != "fp32 graph", compile=setting != "fp32 graph", buckets=buckets)
        for label, mels in cases.items():
            got = voc.decode(mels)
            errs = [rel_l2(a, b) for a, b in zip(got, want[label], strict=True)]
            err = max(errs)
            if len(errs) > 1:
                print(f"  per item: {' '.join(f'{e:.1e}' for e in errs)}")
            times = []
            for _ in range(200):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                voc.decode(mels)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1000)
            med = statistics.median(times)
            name = setting or "default"
            print(f"{name:16} {label}: {med:.3f} ms (median of 200), min {min(times):.3f}, rel L2 vs fp32 eager "
                  f"{err:.2e}, compiled={voc.compile}", flush=True)  # fmt: skip
    os.environ.pop(KERNELS_ENV, None)


if __name__ == "__main__":
    main()
