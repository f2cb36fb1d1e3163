"""GPU memory of one captured DiT bucket alone: for each (rows, frames), a fresh :class:`GraphSampler` captures only
that bucket (compiled blocks, as the daemon does) and the growth of ``torch.cuda.memory_reserved`` is reported, in
MB and in KB per token (rows × 2 CFG halves × frames), then everything is freed before the next. Random weights at
the real size, fp16.

One device call: ``python3 tools/bucket_memory.py [rows×frames ...]`` (default: the daemon's largest buckets)."""

from __future__ import annotations

import gc
import sys

import torch

from ishow.bench.local import random_models
from ishow.engine.accel.graphs import GraphSampler


def main() -> None:
    args = sys.argv[1:] or ["1x768", "1x1664", "8x768", "8x1024", "8x1280", "4x1792", "8x1792", "16x768", "16x1024"]
    buckets = [tuple(int(x) for x in a.split("x")) for a in args]
    dit, _ = random_models()
    model = dit.to("cuda", torch.float16)
    torch.cuda.synchronize()
    for rows, frames in buckets:
        gc.collect()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        sampler = GraphSampler(model, compile=True, capture_on_miss=False)
        info = sampler.capture_bucket((rows, frames))
        torch.cuda.synchronize()
        grown = (torch.cuda.memory_reserved() - before) / 2**20
        tokens = rows * 2 * frames
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"dit {rows}x{frames}: reserved +{grown:.0f} MB ({grown * 1024 / tokens:.1f} KB per token), "
              f"peak allocated {peak:.0f} MB, capture {info.get('seconds')} s")  # fmt: skip
        del sampler
    gc.collect()
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
