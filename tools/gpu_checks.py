"""GPU checks for the background bucket warm-up (run by tools/gpu_session.sh on a CUDA machine).

Real-size F5TTS_v1_Base + Vocos with random weights, fp16. While the warm-up thread captures (and compiles) the
planned buckets, this thread keeps sampling: every result must equal the eager reference (same seeds) and no call
may wait for a capture. Afterwards: the padded path equals the exact one, and per-bucket capture time and memory.
Prints one JSON object (also written to argv[1]).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from ishow.bench.local import make_engine, random_models
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.warmer import BucketWarmer
from ishow.engine.base import SynthRequest
from ishow.engine.warm_reference import REF_TEXT, write_reference


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12))


def main() -> int:
    out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    dev = torch.device("cuda")
    dit, vocos = random_models()
    tmp = Path(tempfile.mkdtemp())
    voice = VoiceSpec(id="zh", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    eng = make_engine(EngineConfig(device="cuda", precision="fp16"), dit, vocos, dev, torch.float16)
    texts = ["666", "主播晚上好", "这个游戏真的太好玩了，主播加油！", "love the stream, keep going! see you tomorrow"]
    reqs = [SynthRequest(text=t, voice=voice, seed=i) for i, t in enumerate(texts)]
    items = [eng._item(r)[0] for r in reqs]
    assert eng.sampler is not None
    eng.sampler.use_graphs = False
    ref = [m.clone() for m in eng.sampler.sample(items)]
    ref_single = [eng.sampler.sample([it])[0].clone() for it in items]
    eng.sampler.use_graphs = True
    torch.cuda.synchronize()
    tasks = eng.warmup_tasks([voice], max_batch=4)  # fewer buckets: this is about concurrency
    warmer = BucketWarmer(tasks)
    t0 = time.perf_counter()
    warmer.start()
    calls: list[dict[str, object]] = []
    worst = 0.0
    for i in range(100_000):
        if warmer.wait_ready(0) or time.perf_counter() - t0 > 400:
            break
        k = i % (len(items) + 1)
        batch = items if k == len(items) else [items[k]]
        want = ref if k == len(items) else [ref_single[k]]
        c0 = time.perf_counter()
        got = eng.sampler.sample(batch)
        torch.cuda.current_stream().synchronize()  # as .cpu() does (device-wide: illegal mid-capture)
        ms = (time.perf_counter() - c0) * 1000
        err = max(rel_l2(g, w) for g, w in zip(got, want, strict=True))
        worst = max(worst, err)
        calls.append({"t": round(time.perf_counter() - t0, 2), "b": len(batch), "ms": round(ms, 1), "err": err,
                      "progress": warmer.progress().done})  # fmt: skip
    ready_s = time.perf_counter() - t0
    warmer.stop()
    # after ready: every planned batch runs on a graph; padded == exact
    s = eng.sampler
    before = (s.replays, s.eager_runs)
    after = [s.sample([it])[0] for it in items]
    after_err = max(rel_l2(a, w) for a, w in zip(after, ref_single, strict=True))
    full_b = s.sample(items)
    batch_err = max(rel_l2(a, w) for a, w in zip(full_b, ref, strict=True))
    result = {
        "gpu": torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
        "tasks": len(tasks),
        "ready_s": round(ready_s, 1),
        "failed": warmer.progress().failed,
        "records": [{"label": r.label, "s": round(r.seconds, 3), "ok": r.ok, **dict(r.info)} for r in warmer.records],
        "calls_while_warming": len(calls),
        "max_call_ms_while_warming": max((float(c["ms"]) for c in calls), default=None),  # type: ignore[arg-type]
        "worst_rel_l2_while_warming": worst,
        "calls": calls[:400],
        "after_ready_single_rel_l2": after_err,
        "after_ready_batch_rel_l2": batch_err,
        "after_ready_replays": s.replays - before[0],
        "after_ready_eager": s.eager_runs - before[1],
        "compile_error": s.compile_error,
        "vocoder_compile_error": getattr(eng.vocoder_backend, "compile_error", None),
        "max_memory_allocated_mb": round(torch.cuda.max_memory_allocated(dev) / 2**20),
        "memory_reserved_mb": round(torch.cuda.memory_reserved(dev) / 2**20),
    }
    text = json.dumps(result, indent=1, default=str)
    if out_path is not None:
        out_path.write_text(text)
    summary = {k: v for k, v in result.items() if k not in ("records", "calls")}
    print(json.dumps(summary, indent=1, default=str))
    ok = result["failed"] == 0 and worst < 2e-2 and after_err < 2e-2 and batch_err < 2e-2
    print("GPU CHECKS", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
