"""The Triton kernel of :mod:`ishow.engine.accel.rope` (imported only where Triton is installed).

One program: ``BLOCK_M`` tokens × ``HEADS`` consecutive heads of the q∥k part of the q/k/v projection
(``qkv`` [M, 3·H·Dh], token m = b·N + n). It loads the rotation of each token once (``rot`` [N, Dh/2, 2] fp32:
cos, sin), then for each head loads the [BLOCK_M, Dh] slice, splits it into its adjacent pairs (a, b), rotates
them in fp32, (a·cos − b·sin, b·cos + a·sin), and stores the result interleaved again into ``q`` or ``k``
[M, H·Dh] (head h < H is q's head h, h ≥ H is k's head h − H).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _rope_qk(
    qkv_ptr,
    rot_ptr,
    q_ptr,
    k_ptr,
    M,
    N,
    H: tl.constexpr,
    DH: tl.constexpr,
    BLOCK_M: tl.constexpr,
    HEADS: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_h = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    inside = rows < M
    pos = rows % N
    half = tl.arange(0, DH // 2)
    rot = rot_ptr + pos[:, None] * DH + half[None, :] * 2
    c = tl.load(rot, mask=inside[:, None], other=0.0)
    s = tl.load(rot + 1, mask=inside[:, None], other=0.0)
    cols = tl.arange(0, DH)
    src_row = qkv_ptr + rows.to(tl.int64)[:, None] * (3 * H * DH) + cols[None, :]
    dst_row = rows.to(tl.int64)[:, None] * (H * DH) + cols[None, :]
    for j in range(HEADS):
        head = pid_h * HEADS + j
        x = tl.load(src_row + head * DH, mask=inside[:, None], other=0.0).to(tl.float32)
        a, b = tl.split(tl.reshape(x, (BLOCK_M, DH // 2, 2)))
        y = tl.reshape(tl.join(a * c - b * s, b * c + a * s), (BLOCK_M, DH))
        y = y.to(q_ptr.dtype.element_ty)
        if head < H:
            tl.store(q_ptr + dst_row + head * DH, y, mask=inside[:, None])
        else:
            tl.store(k_ptr + dst_row + (head - H) * DH, y, mask=inside[:, None])


def launch(qkv: Tensor, rot: Tensor, q: Tensor, k: Tensor, frames: int, heads: int, block_m: int, per_program: int,
           num_warps: int) -> None:  # fmt: skip
    """q, k [M, H·Dh] ← the rotated q and k parts of qkv [M, 3·H·Dh] (contiguous); rot [N, Dh/2, 2] fp32 contiguous
    (cos, sin of frame n), M a multiple of N; ``per_program`` divides 2·H."""
    m = qkv.shape[0]
    dh = q.shape[1] // heads
    grid = (triton.cdiv(m, block_m), 2 * heads // per_program)
    _rope_qk[grid](qkv, rot, q, k, m, frames, H=heads, DH=dh, BLOCK_M=block_m, HEADS=per_program,
                   num_warps=num_warps)  # fmt: skip
