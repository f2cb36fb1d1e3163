"""The DiT block's four GEMMs at the token counts the daemon runs (batch 1 at 768 and 1664 frames, CFG-doubled;
16 × 768), each timed inside a CUDA graph and profiled for the kernels and memsets it launches, under a few cuBLAS
settings: the default, ``allow_fp16_reduced_precision_reduction = False`` (no split-K with fp16 reduction), and
the GEMM without its bias (bias added apart). Shows which setting drops the memset cuBLASLt adds before some of
its kernels (3 per block at 1664 frames in the sampler profile) and what that costs or saves.

One device call: ``python3 tools/gemm_memsets.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ishow.bench.measure import graph_us

SHAPES = {"qkv": (1024, 3072), "out": (1024, 1024), "ff1+gelu": (1024, 2048), "ff2": (2048, 1024)}
TOKENS = (1536, 3328, 24576)


def launched(fn: Callable[[], object]) -> Counter[str]:
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names: Counter[str] = Counter()
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:  # type: ignore[attr-defined]
            names[ev.name[:70]] += 1
    return names


def main() -> None:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    for m in TOKENS:
        for name, (k, n) in SHAPES.items():
            x = torch.randn(m, k, device=dev, dtype=torch.float16)
            w = torch.randn(n, k, device=dev, dtype=torch.float16) * 0.02
            bias = torch.randn(n, device=dev, dtype=torch.float16)
            gelu = name.startswith("ff1")

            def with_bias(
                x: torch.Tensor = x, w: torch.Tensor = w, bias: torch.Tensor = bias, g: bool = gelu
            ) -> object:
                y = F.linear(x, w, bias)
                return F.gelu(y, approximate="tanh") if g else y

            def no_bias(x: torch.Tensor = x, w: torch.Tensor = w) -> object:
                return torch.mm(x, w.t())

            for setting in ("default", "no reduced-precision reduction", "mm without bias"):
                torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = setting != (
                    "no reduced-precision reduction"
                )
                fn = no_bias if setting == "mm without bias" else with_bias
                us = graph_us(fn)
                kern = launched(fn)
                memsets = sum(c for k_, c in kern.items() if "emset" in k_)
                gemm = [k_ for k_ in kern if "emset" not in k_]
                tflops = 2 * m * k * n / us / 1e6
                print(f"M {m:5d} {name:9s} {setting:32s} {us:7.2f} us {tflops:6.0f} TFLOP/s memsets {memsets} {gemm}")
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = True


if __name__ == "__main__":
    main()
