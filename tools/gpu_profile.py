"""Where the GPU time of one synthesis goes: kernel-level profile of the graphed sampler (batch 1 and 16) and of the
compiled vocoder, plus micro-benchmarks of the DiT's parts (GEMMs fp16 and fp8, attention kernels, the conv
position embedding), each timed as GPU time inside a CUDA graph (no host gaps).

Usage (GPU machine, repo root): ``python3 tools/gpu_profile.py OUT_DIR [profile] [micro]``. Writes
``OUT_DIR/profile.txt`` and ``OUT_DIR/profile.json``. Random weights at the real F5TTS_v1_Base + Vocos size.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ishow.bench.local import random_models
from ishow.bench.measure import graph_us, time_calls
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.accel.vocoder_backends import TorchVocoder
from ishow.engine.f5.sampler import SampleItem

LINES: list[str] = []
RESULT: dict[str, Any] = {}


def say(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def category(name: str) -> str:
    n = name.lower()
    if "flash" in n or "fmha" in n or "attention" in n or "attn" in n:
        return "attention"
    if "gemm" in n or "nvjet" in n or "sm90_xmma" in n or "cutlass" in n or "splitk" in n or "cublas" in n:
        return "gemm"
    if "conv" in n or "cudnn" in n or "implicit" in n or "winograd" in n:
        return "conv"
    if n.startswith("triton"):
        return "triton"
    return "other"


def kernel_table(prof: Any, per: int, label: str) -> dict[str, Any]:
    """Kernels of ``per`` runs: per-run µs by kernel and by category."""
    by_name: dict[str, list[float]] = defaultdict(list)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:  # type: ignore[attr-defined]
            by_name[ev.name].append(ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total)
    rows = sorted(((sum(v) / per, len(v) / per, k) for k, v in by_name.items()), reverse=True)
    total = sum(r[0] for r in rows)
    cats: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for us, cnt, name in rows:
        cats[category(name)] += us
        counts[category(name)] += cnt
    say(f"== {label}: GPU kernel time per run {total / 1000:.2f} ms, {sum(r[1] for r in rows):.0f} kernels")
    for c, us in sorted(cats.items(), key=lambda kv: -kv[1]):
        say(f"   {c:10s} {us / 1000:8.3f} ms  {100 * us / max(total, 1e-9):5.1f}%  {counts[c]:6.0f} kernels")
    for us, cnt, name in rows[:28]:
        say(f"   {us:9.1f} us {cnt:6.0f}x  {us / max(cnt, 1e-9):7.2f} us/k  {name[:110]}")
    return {"total_us": total, "categories": dict(cats), "top": [(n, u, c) for u, c, n in rows[:40]]}


def profile_run(fn: Callable[[], Any], per: int, label: str) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(per):
            fn()
        torch.cuda.synchronize()
    out = kernel_table(prof, per, label)
    out["wall_ms"] = time_calls(fn, torch.device("cuda"), 10, 0)[0]
    say(f"   wall per run (median of 10, synchronized): {out['wall_ms']:.2f} ms")
    return out


def items(n: int, frames: int, ref: int = 469, tokens: int = 120, seed: int = 0) -> list[SampleItem]:
    g = torch.Generator().manual_seed(seed)
    return [
        SampleItem(cond=torch.randn(ref, 100, generator=g) * 2 - 4, text=tuple(range(1, tokens + 1)), duration=frames,
                   seed=i)
        for i in range(n)
    ]  # fmt: skip


def section_profile(dit: Any, vocos: Any) -> None:
    dev = torch.device("cuda")
    model = dit.to(dev, torch.float16)
    sampler = GraphSampler(model, compile=True)
    for label, batch in (("sampler b1 (750 frames, bucket 768)", items(1, 750)),
                         ("sampler b1 (1560 frames, bucket 1664: a 40-character danmaku)", items(1, 1560)),
                         ("sampler b16 (750 frames, bucket 16x768)", items(16, 750))):  # fmt: skip
        t0 = time.perf_counter()
        sampler.sample(batch)
        torch.cuda.synchronize()
        say(f"{label}: first call (capture) {time.perf_counter() - t0:.1f} s, compiled={sampler.compile}")
        RESULT[label] = profile_run(partial(sampler.sample, batch), 3, label)
    # eager compiled forward (no graph) of one CFG step at b1, for the per-part split
    voc = TorchVocoder(vocos.to(dev), half=True, compile=True)
    mel = [(torch.randn(256, 100) * 1.5 - 4).to(dev)]
    voc.decode(mel)
    RESULT["vocoder 256f"] = profile_run(lambda: voc.decode(mel), 20, "vocoder compile fp16 256 frames")


def section_micro() -> None:
    dev, h = torch.device("cuda"), torch.float16
    res: dict[str, float] = {}

    def rec(name: str, fn: Callable[[], Any], flops: float = 0.0) -> None:
        try:
            us = graph_us(fn)
        except Exception as e:  # noqa: BLE001
            say(f"   {name:58s} FAILED {type(e).__name__}: {str(e)[:120]}")
            return
        res[name] = us
        tf = f"  {flops / us / 1e6:7.1f} TFLOP/s" if flops else ""
        say(f"   {name:58s} {us:9.2f} us{tf}")

    say("== micro: GEMMs (F.linear with bias, fp16) and fp8 rowwise scaled_mm")
    for m in (1536, 24576):
        x = torch.randn(m, 2048, device=dev, dtype=h)
        for k, n in ((1024, 3072), (1024, 1024), (1024, 2048), (2048, 1024)):
            w = torch.randn(n, k, device=dev, dtype=h) * 0.02
            b = torch.zeros(n, device=dev, dtype=h)
            a = x[:, :k].contiguous()
            rec(f"linear fp16 M{m} K{k} N{n}", partial(F.linear, a, w, b), 2.0 * m * k * n)
            a8 = a.to(torch.float8_e4m3fn)
            w8 = w.to(torch.float8_e4m3fn)
            sa = torch.ones(m, 1, device=dev)
            sb = torch.ones(1, n, device=dev)

            def rowwise(a8: Tensor = a8, w8: Tensor = w8, sa: Tensor = sa, sb: Tensor = sb) -> Tensor:
                return torch._scaled_mm(a8, w8.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)

            rec(f"scaled_mm fp8 rowwise M{m} K{k} N{n} (bf16 out)", rowwise, 2.0 * m * k * n)
            st = torch.ones((), device=dev)

            def tensorwise(a8: Tensor = a8, w8: Tensor = w8, st: Tensor = st) -> Tensor:
                return torch._scaled_mm(a8, w8.t(), scale_a=st, scale_b=st, out_dtype=torch.float16)

            rec(f"scaled_mm fp8 tensorwise M{m} K{k} N{n} (fp16 out)", tensorwise, 2.0 * m * k * n)
    say("== micro: attention (H 16, Dh 64, fp16)")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ishow.engine.accel.fused import flash_varlen, row_starts

    for bsz, n in ((2, 768), (32, 768), (2, 1792), (32, 1792)):
        q, kk, v = (torch.randn(bsz, 16, n, 64, device=dev, dtype=h) for _ in range(3))
        fl = 4.0 * bsz * 16 * n * n * 64
        lens = torch.full((bsz,), n - 18, device=dev, dtype=torch.int32)
        cu = row_starts(bsz, n, dev)
        bias = torch.zeros(bsz, 1, 1, n, device=dev, dtype=h)
        bias[..., n - 18 :] = float("-inf")
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("efficient", SDPBackend.EFFICIENT_ATTENTION)):  # fmt: skip

            def run(q: Tensor = q, kk: Tensor = kk, v: Tensor = v, backend: Any = backend) -> Any:
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(q, kk, v)

            rec(f"sdpa {name} no mask B{bsz} N{n}", run, fl)
        rec(
            f"flash varlen seqused_k B{bsz} N{n}",
            partial(flash_varlen, q, kk, v, lens, cu),
            fl,
        )

        def masked(q: Tensor = q, kk: Tensor = kk, v: Tensor = v, bias: Tensor = bias) -> Any:
            with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
                return F.scaled_dot_product_attention(q, kk, v, attn_mask=bias)

        rec(f"efficient masked B{bsz} N{n}", masked, fl)

        def cudnn_masked(q: Tensor = q, kk: Tensor = kk, v: Tensor = v, bias: Tensor = bias) -> Any:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return F.scaled_dot_product_attention(q, kk, v, attn_mask=bias)

        rec(f"cudnn masked B{bsz} N{n}", cudnn_masked, fl)
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            lens_l = lens.long()

            def keep(b: Tensor, hh: Tensor, qi: Tensor, ki: Tensor, lens_l: Tensor = lens_l) -> Tensor:
                return ki < lens_l[b]

            bm = create_block_mask(keep, bsz, None, n, n, device="cuda")
            flex = torch.compile(flex_attention, dynamic=False)

            def flexed(q: Tensor = q, kk: Tensor = kk, v: Tensor = v, bm: Any = bm, flex: Any = flex) -> Any:
                return flex(q, kk, v, block_mask=bm)

            rec(f"flex_attention block mask B{bsz} N{n}", flexed, fl)
        except Exception as e:  # noqa: BLE001
            say(f"   flex_attention unavailable: {type(e).__name__}: {str(e)[:120]}")
    say("== micro: conv position embedding (grouped conv1d k31 g16, D 1024) and text/vocoder depthwise convs")
    for bsz, n in ((2, 768), (32, 768)):
        x = torch.randn(bsz, 1024, n, device=dev, dtype=h)
        conv = torch.nn.Conv1d(1024, 1024, 31, groups=16, padding=15).to(dev, h)
        fl = 2.0 * bsz * n * 1024 * 64 * 31
        rec(f"conv1d grouped k31 B{bsz} N{n}", partial(conv, x), fl)
        x2 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        c2 = torch.nn.Conv2d(1024, 1024, (1, 31), groups=16, padding=(0, 15)).to(dev, h)
        c2 = c2.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        rec(f"conv2d channels_last grouped k31 B{bsz} N{n}", partial(c2, x2), fl)
        # as 16 batched GEMMs over unfolded windows: [B·N, 16, 64·31] @ [16, 64·31, 64]
        wg = conv.weight.view(16, 64, 64, 31).permute(0, 2, 3, 1).reshape(16, 64 * 31, 64).contiguous()
        xt = x.transpose(1, 2).contiguous()  # [B, N, C]

        def unfold_bmm(xt: Tensor = xt, wg: Tensor = wg, bsz: int = bsz, n: int = n) -> Any:
            p = F.pad(xt, (0, 0, 15, 15))  # [B, N+30, C]
            win = p.unfold(1, 31, 1)  # [B, N, C, 31]
            win = win.reshape(bsz * n, 16, 64 * 31).transpose(0, 1)  # [16, B·N, 64·31]
            return torch.bmm(win, wg)

        rec(f"unfold+bmm grouped k31 B{bsz} N{n}", unfold_bmm, fl)
    res_path = RESULT.setdefault("micro_us", {})
    res_path.update(res)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/out")
    out.mkdir(parents=True, exist_ok=True)
    parts = sys.argv[2:] or ["profile", "micro"]
    say(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    dit, vocos = random_models()
    for p in parts:
        t0 = time.perf_counter()
        try:
            {"profile": lambda: section_profile(dit, vocos), "micro": section_micro}[p]()
        except Exception as e:  # noqa: BLE001
            import traceback

            say(f"section {p} FAILED: {type(e).__name__}: {e}")
            say(traceback.format_exc()[-2000:])
        say(f"[section {p}: {time.perf_counter() - t0:.1f} s]")
        (out / "profile.txt").write_text("\n".join(LINES) + "\n")
        (out / "profile.json").write_text(json.dumps(RESULT, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
