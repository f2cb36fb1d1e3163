"""Every execution plan cuDNN offers for the DiT's key-padded attention (:mod:`ishow.engine.accel.cudnn_attention`),
timed: which plan the heuristics pick (index 0 of the ranked list, what the daemon runs) and whether another one
is faster, for the buckets that matter (batch 1's CFG pair at 768 and 1536 frames, batch 16 at 768).

Each plan: GPU µs per call inside a CUDA graph, and its max relative L2 error over rows against the fp32 masked
reference. One device call: ``python3 tools/attn_plans.py``."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from ishow.bench.measure import graph_us
from ishow.engine.accel import cudnn_attention as ca
from tools.attn_ab import case, reference


def row_err(got: torch.Tensor, want: torch.Tensor) -> float:
    d = (got.float() - want).flatten(1).norm(dim=1) / want.flatten(1).norm(dim=1)
    return float(d.max())


def execute(g: Any, ptrs: dict[int, int], ws: torch.Tensor, index: int, device: torch.device, cudnn: Any) -> None:
    g.execute_plan_at_index(ptrs, ws.data_ptr(), index, handle=ca._handle(cudnn, device))


def main() -> None:
    cudnn: Any = ca._cudnn()
    if cudnn is None:
        raise SystemExit(f"cuDNN frontend unavailable: {ca.failure()}")
    version = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {version}, "
          f"frontend {getattr(cudnn, '__version__', '?')}")  # fmt: skip
    modes = [m for m in (getattr(cudnn.heur_mode, n, None) for n in ("A", "B", "FALLBACK")) if m is not None]
    gen = torch.Generator().manual_seed(3)
    cases = {
        "b1 (2 rows) 768, lens 750": (2, 768, [750, 750]),
        "b1 (2 rows) 1536, lens 1480": (2, 1536, [1480, 1480]),
        "b16 (32 rows) 768, lens 700-768": (32, 768, [700 + (i * 5) % 68 for i in range(16)] * 2),
    }
    for label, (b, n, lens) in cases.items():
        q, k, v, lens_t = case(b, n, lens, gen)
        want = reference(q, k, v, lens_t)
        o = torch.empty_like(q)
        key = ca.layout_key(q, k, v, o)
        g = ca.planned(cudnn, key, modes)
        g.check_support()
        count = g.get_execution_plan_count()
        l32 = lens_t.to(torch.int32)
        full = torch.full_like(l32, n)
        ptrs = {ca._Q: q.data_ptr(), ca._K: k.data_ptr(), ca._V: v.data_ptr(), ca._O: o.data_ptr(),
                ca._LEN_Q: full.data_ptr(), ca._LEN_KV: l32.data_ptr()}  # fmt: skip
        print(f"{label}: {count} plans")
        for i in range(count):
            name = g.get_plan_name_at_index(i)
            try:
                g.build_plan_at_index(i)
                ws = torch.empty(max(int(g.get_workspace_size_plan_at_index(i)), 1), dtype=torch.uint8, device="cuda")

                run = partial(execute, g, ptrs, ws, i, q.device, cudnn)

                o.zero_()
                run()
                torch.cuda.synchronize()
                err = row_err(o, want)
                us = graph_us(run)
            except Exception as e:  # noqa: BLE001 (a plan that does not build or run here: report and go on)
                print(f"  [{i:2d}] {name[:60]:60} failed: {type(e).__name__}: {str(e)[:120]}")
                continue
            print(f"  [{i:2d}] {name[:60]:60} {us:8.1f} us  err {err:.1e}  workspace {ws.numel()} B", flush=True)


if __name__ == "__main__":
    main()
