"""The DiT's rotary position embedding of q and k as ONE Triton kernel over the q/k/v projection.

Inductor compiles RoPE (``fused.rope``: adjacent pairs rotated in fp32) into a pointwise kernel that gathers each
pair twice and divides indices by the dynamic frame count: on an H200 it took 7.75 µs per block at batch 1
(2 × 768 tokens, 12.6 MB moved, ~3 µs of bandwidth) and 115 µs at batch 16 (~50 µs of bandwidth), 1.1 ms and
17 ms of a synthesis (``tools/gpu_profile.py``, session 3). The kernel of :mod:`ishow.engine.accel.rope_kernel`
reads each token's cos/sin once for several heads, loads whole head rows (no strided gathers) and writes q and k
straight in the layout attention reads ([B, N, H, Dh]); v stays a view of the projection. In the graphed sampler
(``tools/dit_kernels_ab.py``, A/B in one process on an H200): batch 16 177.6/178.8 → 173.3/173.3 ms, 16 mixed
lengths 453/456 → 441/442 ms, batch 1 about −1 %; the same mel error vs fp32 (1.48e-3).

fp16/bf16 on CUDA where Triton imports; :func:`split_rope_torch` computes the same function with torch ops (CPU,
fp32 reference, and the fallback after a kernel failure, logged once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from ishow.engine.accel.fallback import Fallback, triton_available

__all__ = ["DEFAULT_TILE", "Tile", "kernel_failure", "rope", "split_rope", "split_rope_torch", "split_rope_triton",
           "triton_available", "usable"]  # fmt: skip

log = logging.getLogger(__name__)

_KERNEL = Fallback("the Triton RoPE kernel", "torch ops", log)  # after its first failure: the torch ops for good


@dataclass(frozen=True)
class Tile:
    """Launch shape: tokens per program, heads per program (divides 2·H), warps. The default was the fastest of the
    19 tried on an H200 (``tools/dit_kernels_ab.py --sweeps rope``, two device calls), GPU µs per call against
    inductor's RoPE compiled alone: 2 × 768 tokens 5.0 vs 6.4, 2 × 1536 6.4 vs 12.0, 32 × 768 61.1 vs 81.4."""

    block_m: int = 8
    heads: int = 8
    num_warps: int = 1


DEFAULT_TILE = Tile()


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: [B, N, H, Dh], cos/sin: [N, Dh/2] fp32 → adjacent pairs (a, b) ↦ (a·cos − b·sin, b·cos + a·sin), fp32 math,
    x's dtype out (the same rotation as :func:`ishow.engine.f5.dit.apply_rotary_qk`)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((a * c - b * s, b * c + a * s), dim=-1).flatten(-2).to(x.dtype)


def split_rope_torch(qkv: Tensor, cos: Tensor, sin: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """qkv [B, N, 3·H·Dh] (the fused projection) → q, k (rotated), v as [B, H, N, Dh]."""
    parts = qkv.reshape(qkv.shape[0], qkv.shape[1], 3, heads, -1)  # [B, N, 3, H, Dh]
    q = rope(parts[:, :, 0], cos, sin).transpose(1, 2)
    k = rope(parts[:, :, 1], cos, sin).transpose(1, 2)
    return q, k, parts[:, :, 2].transpose(1, 2)


def usable(qkv: Tensor, heads: int, tile: Tile = DEFAULT_TILE) -> bool:
    """Whether :func:`split_rope` runs the kernel for ``qkv`` [B, N, 3·H·Dh]: CUDA, fp16/bf16, contiguous, a head
    dim that is a power of two ≥ 4 (whole-row loads), ``tile.heads`` dividing 2·H, Triton importable."""
    dh = qkv.shape[-1] // (3 * heads) if heads > 0 else 0
    return (
        not _KERNEL.broken
        and qkv.is_cuda
        and qkv.dtype in (torch.float16, torch.bfloat16)
        and qkv.dim() == 3
        and qkv.is_contiguous()
        and dh * 3 * heads == qkv.shape[-1]
        and dh >= 4
        and dh & (dh - 1) == 0
        and (2 * heads) % tile.heads == 0
        and triton_available()
    )


def split_rope_triton(qkv: Tensor, rot: Tensor, heads: int, tile: Tile = DEFAULT_TILE) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`split_rope_torch` as one Triton launch. ``rot`` [N, Dh/2, 2] fp32 (cos, sin per frame and pair)."""
    from ishow.engine.accel.rope_kernel import launch

    b, n, width = qkv.shape
    hd = width // 3
    q = torch.empty(b, n, hd, dtype=qkv.dtype, device=qkv.device)
    k = torch.empty_like(q)
    launch(qkv.view(b * n, width), rot.contiguous(), q.view(b * n, hd), k.view(b * n, hd), n, heads, tile.block_m,
           tile.heads, tile.num_warps)  # fmt: skip
    dh = hd // heads
    v = qkv.view(b, n, 3, heads, dh)[:, :, 2].transpose(1, 2)
    return q.view(b, n, heads, dh).transpose(1, 2), k.view(b, n, heads, dh).transpose(1, 2), v


def split_rope(qkv: Tensor, rot: Tensor, heads: int, tile: Tile = DEFAULT_TILE) -> tuple[Tensor, Tensor, Tensor]:
    """q, k (rotated), v [B, H, N, Dh] from the projection ``qkv`` [B, N, 3·H·Dh] and ``rot`` [N, Dh/2, 2] fp32: the
    Triton kernel where :func:`usable`, the torch ops otherwise (and for good after a kernel failure)."""
    if usable(qkv, heads, tile):
        try:
            return split_rope_triton(qkv, rot, heads, tile)
        except Exception as e:  # noqa: BLE001 (triton compile/launch errors have many types)
            _KERNEL.fail(e)
    return split_rope_torch(qkv, rot[..., 0], rot[..., 1], heads)


def kernel_failure() -> str | None:
    return _KERNEL.failure
