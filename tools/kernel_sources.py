"""Which torch op launches each GPU kernel (and memset/memcpy) of one DiT Euler step, at the bucket shapes the
daemon replays: the step runs eagerly with the compiled blocks (as the warm-up before a capture does), under the
profiler, and every GPU activity is attributed to the innermost CPU op around the runtime call that launched it.

Answers questions like "where do the 3 memsets per block at 1664 frames come from" (a CUDA graph hides the op).

Usage (GPU machine, repo root): ``python3 tools/kernel_sources.py OUT_DIR [rows:frames ...]`` (default 1:768
1:1664 16:768). Writes ``OUT_DIR/kernel_sources.txt``. Random weights at the real F5TTS_v1_Base size, fp16.
"""

from __future__ import annotations

import bisect
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from ishow.bench.local import random_models
from ishow.engine.accel.graphs import GraphSampler, _to_device, dummy_inputs
from ishow.engine.f5.sampler import run_nfe

LINES: list[str] = []
GPU_CATS = {"kernel", "gpu_memset", "gpu_memcpy"}


def say(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def attribute(trace: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    """(category, activity name, innermost CPU op) → count, from a chrome trace of the profiler."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    launch: dict[int, dict[str, Any]] = {}
    ops_by_tid: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        cat = e.get("cat", "")
        if cat in ("cuda_runtime", "cuda_driver"):
            corr = e.get("args", {}).get("correlation")
            if corr is not None:
                launch[int(corr)] = e
        elif cat in ("cpu_op", "user_annotation"):
            ops_by_tid[e.get("tid")].append(e)
    starts: dict[Any, list[float]] = {}
    for tid, ops in ops_by_tid.items():
        ops.sort(key=lambda o: float(o["ts"]))
        starts[tid] = [float(o["ts"]) for o in ops]
    out: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        if e.get("cat") not in GPU_CATS:
            continue
        rt = launch.get(int(e.get("args", {}).get("correlation", -1)))
        owner = "?"
        if rt is not None:
            ts, tid = float(rt["ts"]), rt.get("tid")
            ops = ops_by_tid.get(tid, [])
            i = bisect.bisect_right(starts.get(tid, []), ts)
            best: dict[str, Any] | None = None
            for o in reversed(ops[max(0, i - 400) : i]):  # innermost = latest start that still contains ts
                if float(o["ts"]) <= ts <= float(o["ts"]) + float(o.get("dur", 0)):
                    best = o
                    break
            owner = f"{best['name'] if best is not None else '(no op)'} < {rt['name']}"
        out[(e["cat"], str(e["name"])[:90], owner[:120])] += 1
    return out


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/out")
    out.mkdir(parents=True, exist_ok=True)
    shapes = [tuple(int(x) for x in s.split(":")) for s in sys.argv[2:]] or [(1, 768), (1, 1664), (16, 768)]
    dev = torch.device("cuda")
    dit, _ = random_models()
    model = dit.to(dev, torch.float16)
    sampler = GraphSampler(model, compile=True)
    from ishow.engine.accel.fused import FusedBlocks

    runner = FusedBlocks(model, compile=True)
    ts, steps = sampler._conditioning(sampler_config())
    from torch.profiler import ProfilerActivity, profile

    for rows, frames in shapes:
        static = _to_device(dummy_inputs(rows, frames, model.config.mel_dim), dev)
        with torch.inference_mode():
            for _ in range(3):
                run_nfe(model, static, ts[:2], steps[:1], 2.0, runner=runner, pos=sampler.conv_pos)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                run_nfe(model, static, ts[:2], steps[:1], 2.0, runner=runner, pos=sampler.conv_pos)
                torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(path))
            counts = attribute(json.loads(path.read_text()))
        say(f"== {rows}x{frames}: one eager compiled step, {sum(counts.values())} GPU activities")
        for (cat, name, owner), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if cat != "kernel" or c >= 20:
                say(f"  {c:5d}  {cat:10s} {name:90s} <- {owner}")
        (out / "kernel_sources.txt").write_text("\n".join(LINES) + "\n")
    return 0


def sampler_config() -> Any:
    from ishow.engine.f5.sampler import SamplerConfig

    return SamplerConfig()


if __name__ == "__main__":
    sys.exit(main())
