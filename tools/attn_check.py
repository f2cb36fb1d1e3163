"""GPU check of the varlen flash attention against the masked SDPA it replaces (ishow.engine.accel.fused.attend).

At the DiT's real attention shapes (16 heads × 64, fp16; B = 2 is one message's CFG pair, 32 is batch 16), with
mixed key lengths: the error of each path against an fp32 masked reference (valid query rows), and the time of one
call (CUDA events, median of graph-free repeats). Usage: python3 tools/attn_check.py"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ishow.engine.accel.fused import attend, flash_varlen, key_lens
from ishow.engine.f5.dit import key_padding_bias


def timed(call: Callable[[], object], reps: int = 50) -> float:
    for _ in range(5):
        call()
    times: list[float] = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        b = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        a.record()
        call()
        b.record()
        b.synchronize()
        times.append(float(a.elapsed_time(b)))
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    head = ("B", "N", "masked us", "varlen us", "nomask us", "err masked", "err varlen")
    print("{:>3} {:>5} {:>10} {:>10} {:>10} {:>11} {:>11}".format(*head))
    for b, n in ((2, 896), (2, 1792), (32, 896), (32, 1792)):
        row(b, n, dev, gen)


def row(b: int, n: int, dev: torch.device, gen: torch.Generator) -> None:
    qkv = torch.randn(b, n, 3, 16, 64, device=dev, dtype=torch.float16, generator=gen)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    lens = torch.randint(n // 2, n + 1, (b,), device=dev, generator=gen)
    lens[0] = n - 37
    mask = torch.arange(n, device=dev)[None] < lens[:, None]
    bias = key_padding_bias(mask, torch.float16)
    kl = key_lens(bias)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias.float())
    keep = mask[:, None, :, None]

    def err(x: torch.Tensor) -> float:
        d = (x.float() - ref).masked_fill(~keep, 0).norm()
        return float(d / ref.masked_fill(~keep, 0).norm())

    masked = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    varlen = flash_varlen(q, k, v, kl)
    assert torch.isfinite(varlen).all()
    assert torch.equal(attend(q, k, v, bias, kl), varlen)
    t_m = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias))
    t_v = timed(lambda: flash_varlen(q, k, v, kl))
    t_n = timed(lambda: F.scaled_dot_product_attention(q, k, v))
    print(f"{b:3d} {n:5d} {t_m:10.1f} {t_v:10.1f} {t_n:10.1f} {err(masked):11.2e} {err(varlen):11.2e}")


if __name__ == "__main__":
    main()
