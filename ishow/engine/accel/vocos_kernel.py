"""The Triton kernel of :mod:`ishow.engine.accel.vocos_convnext` (imported only where Triton is installed).

One program: frames ``[pid·BLOCK_T, (pid + 1)·BLOCK_T)`` × all ``C`` channels of row ``b`` (channels-last
[B, T, C]). For each of the ``K`` taps it loads the residual stream at frames ``t + j − K//2`` (zero outside
``[0, len_b)``: the frame mask and the conv's zero padding at once), with ``RES`` first finishing the previous
block there: stream = (stream + gamma·y) rounded to the stream's dtype, as the unfused path stores it. It
accumulates the depthwise conv in fp32, stores the finished stream at the centre tap, adds the bias, normalises
each frame over C (LayerNorm, fp32 statistics) and stores the normalised frames for the block's first Linear.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _dw_ln(
    x_ptr,
    y_ptr,
    g_ptr,
    lens_ptr,
    w_ptr,
    b_ptr,
    lnw_ptr,
    lnb_ptr,
    xout_ptr,
    h_ptr,
    T,
    eps,
    C: tl.constexpr,
    K: tl.constexpr,
    BLOCK_T: tl.constexpr,
    RES: tl.constexpr,
):
    pid_t = tl.program_id(0)
    b = tl.program_id(1)
    length = tl.load(lens_ptr + b)
    t = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.arange(0, C)
    base = b.to(tl.int64) * T * C
    inside = (t < T)[:, None]
    acc = tl.zeros((BLOCK_T, C), dtype=tl.float32)
    if RES:
        gamma = tl.load(g_ptr + c).to(tl.float32)
    for j in tl.static_range(K):
        src = t + (j - K // 2)
        ok = ((src >= 0) & (src < length))[:, None]
        off = base + src[:, None] * C + c[None, :]
        xv = tl.load(x_ptr + off, mask=ok, other=0.0).to(tl.float32)
        if RES:
            yv = tl.load(y_ptr + off, mask=ok, other=0.0).to(tl.float32)
            xv = (xv + yv * gamma[None, :]).to(x_ptr.dtype.element_ty).to(tl.float32)
            if j == K // 2:
                tl.store(xout_ptr + off, xv.to(xout_ptr.dtype.element_ty), mask=inside)
        wj = tl.load(w_ptr + c * K + j).to(tl.float32)
        acc += xv * wj[None, :]
    acc += tl.load(b_ptr + c).to(tl.float32)[None, :]
    mean = tl.sum(acc, axis=1) / C
    d = acc - mean[:, None]
    var = tl.sum(d * d, axis=1) / C
    rstd = 1.0 / tl.sqrt(var + eps)
    lnw = tl.load(lnw_ptr + c).to(tl.float32)
    lnb = tl.load(lnb_ptr + c).to(tl.float32)
    h = d * rstd[:, None] * lnw[None, :] + lnb[None, :]
    out = base + t[:, None] * C + c[None, :]
    tl.store(h_ptr + out, h.to(h_ptr.dtype.element_ty), mask=inside)


def launch(
    x: Tensor,
    y: Tensor | None,
    gamma: Tensor | None,
    lens: Tensor,
    w: Tensor,
    b: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    x_out: Tensor,
    h: Tensor,
    eps: float,
    block_t: int,
    num_warps: int,
) -> None:
    """h [B, T, C] ← LayerNorm(depthwise conv(stream) + b); with ``y``: stream = mask·(x + gamma·y), written to
    ``x_out``; without: stream = x (already masked). w [C, 1, K], lens int32 [B], everything contiguous."""
    bsz, t, c = x.shape
    res = y is not None and gamma is not None
    grid = (triton.cdiv(t, block_t), bsz)
    _dw_ln[grid](
        x, y if res else x, gamma if res else b, lens, w, b, ln_w, ln_b, x_out, h, t, eps,
        C=c, K=w.shape[-1], BLOCK_T=block_t, RES=res, num_warps=num_warps,
    )  # fmt: skip
