"""The Triton kernel of :mod:`ishow.engine.accel.conv_pos` (imported only where Triton is installed).

One program: frames ``[pid·BLOCK_N, (pid + 1)·BLOCK_N)`` × the ``CG`` output channels of group ``g`` of row ``b``.
For each tap t it loads the input frames ``n + t − K//2`` of the group's ``CG`` input channels (zero outside
``[0, len_b)``: the input mask and the conv's zero padding at once) and the tap's [CG, CG] weight, and accumulates
their product on the tensor cores in fp32. Epilogue: + bias, Mish, zero past ``len_b``, + residual, store.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _conv_mish(
    x_ptr,
    w_ptr,
    b_ptr,
    lens_ptr,
    res_ptr,
    out_ptr,
    N,
    C: tl.constexpr,
    CG: tl.constexpr,
    K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ADD_RES: tl.constexpr,
    LINEAR_FROM: tl.constexpr,
):
    pid_n = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.program_id(2)
    length = tl.load(lens_ptr + b)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_c = tl.arange(0, CG)
    row = b.to(tl.int64) * N * C
    x_base = x_ptr + row + g * CG
    acc = tl.zeros((BLOCK_N, CG), dtype=tl.float32)
    for t in range(K):
        src = offs_n + (t - K // 2)
        ok = (src >= 0) & (src < length)
        xt = tl.load(x_base + src[:, None] * C + offs_c[None, :], mask=ok[:, None], other=0.0)
        wt = tl.load(w_ptr + ((g * K + t) * CG + offs_c[:, None]) * CG + offs_c[None, :])
        acc += tl.dot(xt, wt)
    acc += tl.load(b_ptr + g * CG + offs_c).to(tl.float32)[None, :]
    e = tl.exp(tl.minimum(acc, LINEAR_FROM))
    num = e * (e + 2.0)
    y = tl.where(acc > LINEAR_FROM, acc, acc * num / (num + 2.0))
    y = tl.where((offs_n < length)[:, None], y, 0.0)
    out_off = row + offs_n[:, None] * C + g * CG + offs_c[None, :]
    inside = (offs_n < N)[:, None]
    if ADD_RES:
        y += tl.load(res_ptr + out_off, mask=inside, other=0.0).to(tl.float32)
    tl.store(out_ptr + out_off, y.to(out_ptr.dtype.element_ty), mask=inside)


def launch(
    x: Tensor,
    w: Tensor,
    b: Tensor,
    lens: Tensor,
    residual: Tensor | None,
    out: Tensor,
    block_n: int,
    num_warps: int,
    num_stages: int,
    linear_from: float,
) -> None:
    """out[B, N, C] = mask · mish(grouped conv(mask · x) + b) (+ residual); w [G, K, CG, CG], lens int32 [B];
    Mish is the identity above ``linear_from``."""
    bsz, n, c = x.shape
    g, k, cg, _ = w.shape
    grid = (triton.cdiv(n, block_n), g, bsz)
    _conv_mish[grid](
        x, w, b, lens, residual if residual is not None else x, out, n,
        C=c, CG=cg, K=k, BLOCK_N=block_n, ADD_RES=residual is not None, LINEAR_FROM=linear_from,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
