"""Where a DiT bucket's captured graph keeps GPU memory, per attention kernel: for each kernel setting (a value of
``ISHOW_DIT_KERNELS``, "" = the default), a fresh :class:`GraphSampler` captures one bucket while torch records
allocation history; afterwards the blocks still allocated are summed by the first call site outside torch, so a
kernel that keeps memory alive shows up with its file and line. Random weights at the real size, fp16.

One device call: ``python3 -m tools.attn_memory [rows×frames] [setting ...]`` (default: 2x768 varlen "")."""

from __future__ import annotations

import gc
import os
import sys

import torch

from ishow.bench.local import random_models
from ishow.engine.accel.graphs import GraphSampler
from tools.warm_memory import live_sites


def main() -> None:
    args = sys.argv[1:]
    bucket_arg = args.pop(0) if args and "x" in args[0] else "2x768"
    rows, frames = (int(x) for x in bucket_arg.split("x"))
    settings = args or ["varlen", ""]
    dit, _ = random_models()
    model = dit.to("cuda", torch.float16)
    torch.cuda.synchronize()
    for setting in settings:
        os.environ["ISHOW_DIT_KERNELS"] = setting
        gc.collect()
        torch.cuda.empty_cache()
        alloc0 = torch.cuda.memory_allocated()
        torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python")
        sampler = GraphSampler(model, compile=True, capture_on_miss=False)
        info = sampler.capture_bucket((rows, frames))
        torch.cuda.synchronize()
        gc.collect()
        grown = (torch.cuda.memory_allocated() - alloc0) / 2**20
        sites = live_sites()
        torch.cuda.memory._record_memory_history(enabled=None)
        print(f"== {setting or 'default'} {rows}x{frames}: allocated +{grown:.1f} MB after capture "
              f"({info.get('seconds')} s); live blocks by site:")  # fmt: skip
        for where, size, blocks in sites[:12]:
            print(f"   {size / 2**20:9.2f} MB in {blocks:4d} blocks  {where}")
        del sampler
    try:
        from cudnn.sdpa.fwd import torch_op  # type: ignore[import-not-found]

        for key, entry in list(torch_op._graph_cache.items())[:4]:
            g = entry[0]
            print("cuDNN frontend graph", key[2:8], "workspace", entry[1], "engine", getattr(g, "selected_engine", "?"),
                  type(g).__name__)  # fmt: skip
    except Exception as e:  # noqa: BLE001 (a probe only)
        print("no frontend graphs:", type(e).__name__, e)
    gc.collect()
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
