"""A/B of key-padded attention kernels for the DiT on CUDA: q, k, v [B, H, N, Dh] fp16 (views of [B, N, H, Dh], as
:class:`ishow.engine.accel.fused.FusedBlocks` hands them over), keys of row b valid on their first ``lens[b]``
frames. Each kernel's GPU time inside a CUDA graph (µs per call) and its error on the valid query rows against the
fp32 masked reference. Rows marked "floor" ignore the padding (wrong when a row is padded): what no mask would cost.

Tried and dropped (device call 2, session 4): cuDNN's ragged (nested-tensor) entry with each padded row split into
a valid and a padding sequence ran eagerly but its CUDA-graph capture failed, and a relaxed capture killed the
process; our graphs need capture.

One device call: ``python3 tools/attn_ab.py``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ishow.bench.measure import graph_us
from ishow.engine.accel import fused
from ishow.engine.f5.dit import key_padding_bias

Kernel = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def cudnn_bias_dim(q: Tensor, k: Tensor, v: Tensor, lens: Tensor, pad_v: bool) -> Tensor:
    """Dense cuDNN, no mask: q and k get 8 more channels; q's first extra one is 1, k's is 0 on valid keys and
    −60000 on padding keys, so padding logits are −7500 (exp → 0) at the unchanged scale 1/√Dh."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, h, n, d = q.shape
    valid = torch.arange(n, device=q.device)[None, :] < lens[:, None]  # [B, N]
    q2 = torch.zeros(b, n, h, d + 8, device=q.device, dtype=q.dtype)
    k2 = torch.zeros_like(q2)
    q2[..., :d] = q.transpose(1, 2)
    q2[..., d] = 1.0
    k2[..., :d] = k.transpose(1, 2)
    k2[..., d] = (~valid).to(q.dtype)[:, :, None] * -60000.0
    vv = v
    if pad_v:
        v2 = torch.zeros_like(q2)
        v2[..., :d] = v.transpose(1, 2)
        vv = v2.transpose(1, 2)
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        out = F.scaled_dot_product_attention(q2.transpose(1, 2), k2.transpose(1, 2), vv, scale=d**-0.5)
    return out[..., :d]


def split_tail(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
    """For buckets whose rows are all longer than N − 128 (batch 1: both CFG rows have the message's length): cuDNN
    without a mask over the first N − 128 keys, flash varlen over the last 128 (per-row key lengths), the two
    merged by their log-sum-exp. Exact; one extra small kernel and an elementwise merge."""
    b, h, n, d = q.shape
    head = n - 128
    got = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k[:, :, :head], v[:, :, :head], None, True)
    o1, l1 = got[0], got[1].reshape(b, h, n, 1).float()
    qp = q.transpose(1, 2).reshape(b * n, h, d)
    kp = k.transpose(1, 2)[:, head:].reshape(b * 128, h, d)
    vp = v.transpose(1, 2)[:, head:].reshape(b * 128, h, d)
    cu_q = torch.arange(0, (b + 1) * n, n, device=q.device, dtype=torch.int32)
    cu_k = torch.arange(0, (b + 1) * 128, 128, device=q.device, dtype=torch.int32)
    tail = torch.ops.aten._flash_attention_forward(
        qp, kp, vp, cu_q, cu_k, n, 128, 0.0, False, False, seqused_k=(lens - head).to(torch.int32)
    )
    o2 = tail[0].view(b, n, h, d).transpose(1, 2)
    l2 = tail[1]
    l2 = (l2.view(h, b, n).permute(1, 0, 2) if l2.dim() == 2 else l2.reshape(b, h, n))[..., None].float()
    m = torch.maximum(l1, l2)
    w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
    out: Tensor = ((o1.float() * w1 + o2.float() * w2) / (w1 + w2)).to(q.dtype)
    return out


def cudnn_fe_kernel() -> Kernel:
    """cuDNN's fused attention through the cuDNN frontend's torch op (``nvidia-cudnn-frontend``), dense BHSD with
    per-row lengths (its padding mask): every query row, keys of row b up to ``lens[b]``."""
    from cudnn.sdpa.fwd.torch_op import sdpa as fe_sdpa  # type: ignore[import-not-found]

    def run(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
        b, _h, n, _d = q.shape
        full = torch.full((b,), n, device=q.device, dtype=torch.int32)
        out: Tensor = fe_sdpa(q, k, v, seq_len_q=full, seq_len_kv=lens.to(torch.int32))
        return out

    return run


def flex_kernel() -> Kernel:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    flex = torch.compile(flex_attention, dynamic=False, fullgraph=True)

    def run(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
        b, _h, n, _d = q.shape
        bs = 128
        nb = n // bs
        lens32 = lens.to(torch.int32)
        full = lens32 // bs
        part = (lens32 % bs > 0).to(torch.int32)
        idx = torch.arange(nb, device=q.device, dtype=torch.int32)
        full_num = full[:, None, None].expand(b, 1, nb).contiguous()
        full_idx = idx.expand(b, 1, nb, nb).contiguous()
        kv_num = part[:, None, None].expand(b, 1, nb).contiguous()
        kv_idx = torch.minimum(full, torch.full_like(full, nb - 1))[:, None, None, None].expand(b, 1, nb, nb)
        kv_idx = kv_idx.contiguous()

        def mask_mod(bi: Tensor, hi: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return ki < lens32[bi]

        bm = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=bs, mask_mod=mask_mod,
                                      seq_lengths=(n, n))  # fmt: skip
        out: Tensor = flex(q, k, v, block_mask=bm)
        return out

    return run


def kernels() -> dict[str, Kernel]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def cudnn_masked(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=padding_bias(lens, q.shape[2], q.dtype))

    def cudnn_nomask(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    def flash_nomask(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v)

    out: dict[str, Kernel] = {
        "flash-varlen (now)": lambda q, k, v, lens: fused.flash_varlen(q, k, v, lens.to(torch.int32)),
        "cudnn-masked": cudnn_masked,
        "split: cudnn head + tail": split_tail,
        "cudnn d+8 (v 64)": lambda q, k, v, lens: cudnn_bias_dim(q, k, v, lens, False),
        "cudnn d+8 (v d+8)": lambda q, k, v, lens: cudnn_bias_dim(q, k, v, lens, True),
    }
    try:
        out["cudnn-fe padded"] = cudnn_fe_kernel()
    except Exception as e:  # noqa: BLE001
        print("cudnn frontend unavailable:", type(e).__name__, e)
    try:
        out["flex"] = flex_kernel()
    except Exception as e:  # noqa: BLE001
        print("flex unavailable:", type(e).__name__, e)
    out["floor: flash no mask"] = flash_nomask
    out["floor: cudnn no mask"] = cudnn_nomask
    return out


def eager_us(fn: Callable[[], object], reps: int = 50) -> float:
    """GPU µs per call run eagerly (CUDA events around ``reps`` calls, after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    torch.cuda.synchronize()
    return float(a.elapsed_time(b) * 1000 / reps)


def relaxed_graph_us(fn: Callable[[], object], reps: int = 20) -> float:
    """Like ``graph_us``, captured in ``relaxed`` mode (unsafe API calls allowed during the capture)."""
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, capture_error_mode="relaxed"):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    a.record()
    g.replay()
    b.record()
    torch.cuda.synchronize()
    return float(a.elapsed_time(b) * 1000 / reps)


def case(b: int, n: int, lens: list[int], gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    h, d = 16, 64
    dev = torch.device("cuda")
    qkv = torch.randn(b, n, 3, h, d, generator=gen).to(dev, torch.float16)
    q = qkv[:, :, 0].contiguous().transpose(1, 2)
    k = qkv[:, :, 1].contiguous().transpose(1, 2)
    v = qkv[:, :, 2].transpose(1, 2)
    return q, k, v, torch.tensor(lens, device=dev, dtype=torch.long)


def padding_bias(lens: Tensor, n: int, dtype: torch.dtype) -> Tensor:
    """The DiT's −inf key bias [B, 1, 1, N] for rows valid on their first ``lens`` frames."""
    return key_padding_bias(torch.arange(n, device=lens.device)[None, :] < lens[:, None], dtype)


def reference(q: Tensor, k: Tensor, v: Tensor, lens: Tensor) -> Tensor:
    bias = padding_bias(lens, q.shape[2], torch.float32)
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias)


def main() -> None:
    gen = torch.Generator().manual_seed(3)
    cases = {
        "b1 (2 rows) 768, lens 750": (2, 768, [750, 750]),
        "b1 (2 rows) 768, lens 768 (no padding)": (2, 768, [768, 768]),
        "b1 (2 rows) 1664, lens 1650": (2, 1664, [1650, 1650]),
        "b16 (32 rows) 768, lens 700-768": (32, 768, [700 + (i * 5) % 68 for i in range(16)] * 2),
        "b8 (16 rows) 1792, mixed 300-1792": (16, 1792, [300 + i * 199 for i in range(8)] * 2),
    }
    ks = kernels()
    cudnn = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {cudnn}")
    for name, (b, n, lens) in cases.items():
        q, k, v, lt = case(b, n, lens, gen)
        want = reference(q, k, v, lt)
        print(f"\n{name}")
        for kname, fn in ks.items():
            if kname.startswith("split") and min(lens) <= n - 128:
                print(f"  {kname:24s} (not for this case: a row is not longer than N − 128)")
                continue
            try:
                got = fn(q, k, v, lt)
                torch.cuda.synchronize()
                errs = []
                for i, ln in enumerate(lens):
                    a, r = got[i, :, :ln].float(), want[i, :, :ln]
                    errs.append(float((a - r).norm() / r.norm()))
                eager = eager_us(lambda fn=fn, a=(q, k, v, lt): fn(*a))  # type: ignore[misc]
                try:
                    us = f"{graph_us(lambda fn=fn, a=(q, k, v, lt): fn(*a)):8.1f} µs"  # type: ignore[misc]
                except Exception as e:  # noqa: BLE001
                    us = f"no graph ({type(e).__name__}: {str(e)[:80]})"
                    torch.cuda.synchronize()
                    try:
                        us += f"; relaxed capture {relaxed_graph_us(lambda fn=fn, a=(q, k, v, lt): fn(*a)):.1f} µs"  # type: ignore[misc]
                    except Exception as e2:  # noqa: BLE001
                        us += f"; relaxed capture fails too ({type(e2).__name__}: {str(e2)[:80]})"
                print(f"  {kname:24s} {us}  eager {eager:7.1f} µs  max rel L2 over rows {max(errs):.1e}")
            except Exception as e:  # noqa: BLE001 (report and go on)
                print(f"  {kname:24s} failed: {type(e).__name__}: {str(e)[:300]}")


if __name__ == "__main__":
    main()
