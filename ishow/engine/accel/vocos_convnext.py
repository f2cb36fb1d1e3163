"""The head of each Vocos ConvNeXt block (depthwise conv k7 + LayerNorm), with the previous block's masked residual
add, as ONE Triton kernel over channels-last activations [B, T, C].

Compiled by inductor per stage, this part was 5 kernels per block (cuDNN's depthwise conv, its bias, three
LayerNorm/transpose kernels: ~9.5 µs at 256 frames on an H200) plus 1 for the residual add (~1.3 µs), and the
whole decode ~97 kernels for 0.25 ms of GPU time (``tools/gpu_profile.py``, session 3). Here a block is this kernel,
then the two Linears with the GELU between them (:func:`ishow.engine.accel.fast_vocos.vocos_ff_epilogue`), and
the residual is finished by the next block's kernel (or the head). See :mod:`ishow.engine.accel.vocos_kernel`.
Through ``TorchVocoder.decode`` (``tools/vocoder_ab.py``, A/B in one process on an H200): 256 frames 0.400 →
0.320 ms, one item of 600 frames 0.514 → 0.447 ms, 8 × 600 1.352 → 1.144 ms; wave error vs fp32 6.7e-4 (7.0e-4).

fp16/bf16 on CUDA where Triton imports; :func:`dw_ln_torch` is the same function in torch ops (CPU, and the
fallback after a kernel failure, logged once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ishow.engine.accel.fallback import Fallback, triton_available
from ishow.engine.accel.mels import frame_mask

__all__ = ["DEFAULT_TILE", "LN_EPS", "Tile", "dw_ln", "dw_ln_torch", "dw_ln_triton", "kernel_failure", "stream",
           "triton_available", "usable"]  # fmt: skip

log = logging.getLogger(__name__)

LN_EPS = 1e-6  # every Vocos LayerNorm
_KERNEL = Fallback("the Triton Vocos block kernel", "torch ops", log)  # after its first failure: torch ops for good


@dataclass(frozen=True)
class Tile:
    """Launch shape: frames per program, warps. The default was the fastest of 8 tried on an H200
    (``tools/vocoder_ab.py``), GPU µs per call against the same torch ops compiled by inductor: 1 × 256 frames 3.9
    vs 4.2, 8 × 600 11.9 vs 19.7 (inductor's is one kernel there; in the per-stage path the same work is 6)."""

    block_t: int = 4
    num_warps: int = 4


DEFAULT_TILE = Tile()


def stream(x: Tensor, y: Tensor | None, gamma: Tensor | None, lens: Tensor) -> Tensor:
    """The residual stream after the previous block: mask·(x + gamma·y) in x's dtype (x itself without ``y``)."""
    if y is None or gamma is None:
        return x
    keep = frame_mask(lens.to(x.device), x.shape[1]).unsqueeze(-1)
    return torch.where(keep, x.float() + y.float() * gamma.float(), 0.0).to(x.dtype)


def dw_ln_torch(
    x: Tensor,
    y: Tensor | None,
    gamma: Tensor | None,
    lens: Tensor,
    w: Tensor,
    b: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
) -> tuple[Tensor, Tensor]:
    """x [B, T, C] (masked stream), y [B, T, C] and gamma [C] the previous block's FF output and layer scale (or
    None), lens [B], w [C, 1, K] → (stream, LayerNorm(depthwise conv(stream) + b)) in x's dtype, fp32 maths."""
    s = stream(x, y, gamma, lens)
    k, t = w.shape[-1], s.shape[1]
    xp = F.pad(s.float(), (0, 0, k // 2, k // 2))
    wf = w.float()
    acc = b.float() + xp[:, 0:t] * wf[:, 0, 0]
    for j in range(1, k):
        acc = acc + xp[:, j : j + t] * wf[:, 0, j]
    h = F.layer_norm(acc, (s.shape[-1],), ln_w.float(), ln_b.float(), LN_EPS)
    return s, h.to(x.dtype)


def usable(x: Tensor, w: Tensor) -> bool:
    """CUDA, fp16/bf16, contiguous [B, T, C] with C a power of two (one program holds a frame's channels), an odd
    kernel, Triton importable."""
    c = x.shape[-1]
    return (
        not _KERNEL.broken
        and x.is_cuda
        and x.dtype in (torch.float16, torch.bfloat16)
        and x.dim() == 3
        and x.is_contiguous()
        and c >= 16
        and c & (c - 1) == 0
        and w.shape[-1] % 2 == 1
        and triton_available()
    )


def dw_ln_triton(
    x: Tensor,
    y: Tensor | None,
    gamma: Tensor | None,
    lens: Tensor,
    w: Tensor,
    b: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    tile: Tile = DEFAULT_TILE,
) -> tuple[Tensor, Tensor]:
    """:func:`dw_ln_torch` as one Triton launch (lens int32 on x's device)."""
    from ishow.engine.accel.vocos_kernel import launch

    res = y is not None and gamma is not None
    s = torch.empty_like(x) if res else x
    h = torch.empty_like(x)
    yc = y.contiguous() if y is not None else None
    launch(x, yc, gamma, lens, w.contiguous(), b, ln_w, ln_b, s, h, LN_EPS, tile.block_t, tile.num_warps)
    return s, h


def dw_ln(
    x: Tensor,
    y: Tensor | None,
    gamma: Tensor | None,
    lens: Tensor,
    w: Tensor,
    b: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    tile: Tile = DEFAULT_TILE,
) -> tuple[Tensor, Tensor]:
    """The kernel where :func:`usable`, the torch ops otherwise (and for good after a kernel failure)."""
    if usable(x, w):
        try:
            return dw_ln_triton(x, y, gamma, lens, w, b, ln_w, ln_b, tile)
        except Exception as e:  # noqa: BLE001 (triton compile/launch errors have many types)
            _KERNEL.fail(e)
    return dw_ln_torch(x, y, gamma, lens, w, b, ln_w, ln_b)


def kernel_failure() -> str | None:
    return _KERNEL.failure
