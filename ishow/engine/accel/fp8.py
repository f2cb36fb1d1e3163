"""``engine.precision = "fp8"``: the DiT blocks' four GEMMs (q/k/v, out, FF in, FF out) as fp8 (e4m3) matmuls with
per-output-channel weight scales and per-row (per-token) activation scales, on GPUs with fp8 tensor cores (compute
capability 8.9+: Ada, Hopper and newer). Everything else (attention, norms, the conv position embedding, text
embedding, vocoder, the Euler state) stays as in fp16.

* Weights: quantized once per model load, ``w ≈ w8 · s_w`` with ``s_w[n] = max|w[n, :]| / 448`` (the largest
  e4m3 value), so every output channel uses the whole fp8 range.
* Activations: inside the compiled block functions, ``x ≈ x8 · s_x`` with ``s_x[m] = max|x[m, :]| / 448``; inductor
  fuses this row reduction and the cast into the kernel that produces x (the modulated LayerNorm, the GELU).
* ``torch._scaled_mm(x8, w8ᵀ, s_x, s_w)`` accumulates in fp32 and writes bf16; the bias is added in fp32.

Opt-in: ``ishow bench --precision fp8`` reports its mel error against the eager fp32 path next to fp16's (the gate
is 2e-2 for fp8, 1e-2 for fp16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ishow.engine.f5.dit import DiT

FP8_MAX = 448.0  # the largest finite float8_e4m3fn value
MIN_CAPABILITY = (8, 9)


@dataclass(frozen=True, eq=False)
class Fp8Linear:
    """One quantized Linear: ``w8`` [N, K] e4m3, ``scale`` [1, N] fp32 per output channel, ``bias`` [N] fp32."""

    w8: Tensor
    scale: Tensor
    bias: Tensor


@dataclass(frozen=True, eq=False)
class Fp8Block:
    qkv: Fp8Linear
    out: Fp8Linear
    ff1: Fp8Linear
    ff2: Fp8Linear


def unsupported(device: torch.device) -> str | None:
    """Why fp8 GEMMs cannot run on ``device`` (None when they can)."""
    if device.type != "cuda":
        return "fp8 needs a CUDA GPU"
    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return f"this torch ({torch.__version__}) has no fp8 matmul"
    cap = torch.cuda.get_device_capability(device)
    if cap < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"fp8 needs compute capability 8.9 or newer (Ada, Hopper); {name} is {cap[0]}.{cap[1]}"
    return None


def quantize(w: Tensor, b: Tensor) -> Fp8Linear:
    """w [N, K], b [N] (any float dtype) → per-output-channel e4m3 weights and scales."""
    wf = w.detach().float()
    scale = (wf.abs().amax(dim=1) / FP8_MAX).clamp_min(1e-12)
    w8 = (wf / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return Fp8Linear(w8=w8.contiguous(), scale=scale[None, :].contiguous(), bias=b.detach().float().contiguous())


def quantize_blocks(model: DiT) -> list[Fp8Block]:
    """Every transformer block's four GEMM weights, quantized (upstream's key layout)."""
    out: list[Fp8Block] = []
    blocks: list[Any] = list(model.transformer_blocks)
    for block in blocks:
        attn = block.attn
        w, b = attn._qkv_params()
        o = attn.to_out[0]
        ff1, ff2 = block.ff.ff[0][0], block.ff.ff[2]
        out.append(Fp8Block(quantize(w, b), quantize(o.weight, o.bias), quantize(ff1.weight, ff1.bias),
                            quantize(ff2.weight, ff2.bias)))  # fmt: skip
    return out


def linear8(x: Tensor, w8: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """x [..., K] (fp16/bf16) · dequantized wᵀ + bias → [..., N] in x's dtype, through one fp8 matmul with a
    per-row activation scale (computed here; inductor fuses it into x's producer)."""
    flat = x.reshape(-1, x.shape[-1])
    sx = (flat.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp_min(1e-12)
    x8 = (flat.float() / sx).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    y = torch._scaled_mm(x8, w8.t(), scale_a=sx, scale_b=scale, out_dtype=torch.bfloat16)
    return (y.float() + bias).to(x.dtype).view(*x.shape[:-1], w8.shape[0])


def dequantize(q: Fp8Linear) -> Tensor:
    """The weight the fp8 GEMM multiplies by (for tests): w8 · scale, fp32 [N, K]."""
    return q.w8.float() * q.scale.t()
