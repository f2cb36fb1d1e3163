"""Fused GPU paths: the DiT blocks as pure tensor functions for ``torch.compile`` (inductor).

Everything here computes the same functions as :mod:`ishow.engine.f5.dit`, written so that inductor can fuse the
elementwise chains around the GEMMs (modulated LayerNorm, RoPE in fp32 registers, gated residuals) while the GEMMs
(the first FF GEMM with its GELU as a cuBLASLt epilogue) and attention stay on cuBLAS and cuDNN (or flash). The
compiled callables are captured inside our own per-bucket CUDA graphs (:mod:`ishow.engine.accel.graphs`): compile
once (the first warm-up run of a bucket, on a side stream), then every replay is one graph launch. The vocoder's
counterpart is :mod:`ishow.engine.accel.fast_vocos`.

* The functions take weights as arguments, so the 22 DiT blocks share ONE compiled graph; batch and frame dims are
  marked dynamic, so new buckets do not recompile.
* Compiling is optional and CUDA-only: the functions run eagerly anywhere (CPU tests check them against the
  reference modules), and :func:`compiled` returns ``None`` when ``torch.compile`` is unavailable, so callers keep
  the plain path. Nothing is compiled at import.

Shapes: ``B`` batch, ``N``/``T`` frames, ``D``/``C`` channels, ``H`` heads, ``Dh`` head dim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ishow.engine.accel.fallback import Fallback
from ishow.engine.accel.kernel_choice import Kernels, from_env
from ishow.engine.accel.rope import split_rope, split_rope_torch

if TYPE_CHECKING:
    from ishow.engine.f5.dit import DiT, Modulation

log = logging.getLogger(__name__)

_COMPILED: dict[str, Callable[..., Any]] = {}


def compiled(name: str, fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """``torch.compile(fn)`` (inductor, default mode: no CUDA graphs of its own, we capture it in ours), cached per
    process under ``name``; None when torch.compile is unavailable. (``max-autotune-no-cudagraphs`` was measured
    slower on an H200: batch 1 +7 %, batch 16 +23 %, and a 3× longer first compile.)"""
    got = _COMPILED.get(name)
    if got is None:
        try:
            got = torch.compile(fn, dynamic=False, fullgraph=True)
        except Exception as e:  # noqa: BLE001 (RuntimeError on unsupported platforms, ImportError without inductor)
            log.warning("torch.compile is unavailable (%s: %s); using the plain path", type(e).__name__, e)
            return None
        _COMPILED[name] = got
    return got


def mark_dynamic(t: Tensor, *dims: int) -> Tensor:
    """Let these dims vary without a recompile (sizes 0/1 still specialise)."""
    import torch._dynamo

    for d in dims:
        torch._dynamo.maybe_mark_dynamic(t, d)
    return t


# -- DiT --------------------------------------------------------------------------------------------------------


def _modulate(x: Tensor, scale1p: Tensor, shift: Tensor) -> Tensor:
    if scale1p.dim() == 1:
        return F.layer_norm(x, (x.shape[-1],), scale1p, shift, 1e-6)
    return torch.addcmul(shift, F.layer_norm(x, (x.shape[-1],), eps=1e-6), scale1p)


def qkv_in(x: Tensor, shift: Tensor, scale1p: Tensor, w_qkv: Tensor, b_qkv: Tensor) -> Tensor:
    """Modulated LayerNorm → fused q/k/v GEMM: [B, N, 3·H·Dh], RoPE not applied yet (:func:`rope.split_rope`)."""
    return F.linear(_modulate(x, scale1p, shift), w_qkv, b_qkv)


def attn_in(
    x: Tensor, shift: Tensor, scale1p: Tensor, w_qkv: Tensor, b_qkv: Tensor, cos: Tensor, sin: Tensor, heads: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Modulated LayerNorm → fused q/k/v GEMM → RoPE on q and k (in the same graph, by inductor): → q, k, v
    [B, H, N, Dh] (for SDPA)."""
    return split_rope_torch(qkv_in(x, shift, scale1p, w_qkv, b_qkv), cos, sin, heads)


def ff_in(x: Tensor, w1: Tensor, b1: Tensor, gelu_epilogue: bool) -> Tensor:
    """GELU(tanh)(x·w1ᵀ + b1). ``gelu_epilogue`` on CUDA: one cuBLASLt GEMM with the bias + GELU epilogue (its GELU
    is the tanh form) instead of a GEMM and a pointwise kernel that reads and writes the [rows, 2·D] result again."""
    if gelu_epilogue and x.is_cuda:
        flat = x.reshape(-1, x.shape[-1])
        out = torch._addmm_activation(b1, flat, w1.t(), use_gelu=True)
        return out.view(*x.shape[:-1], w1.shape[0])
    return F.gelu(F.linear(x, w1, b1), approximate="tanh")


def attn_out_ff(
    x: Tensor,
    attn: Tensor,
    gate: Tensor,
    shift_mlp: Tensor,
    scale_mlp1p: Tensor,
    gate_mlp: Tensor,
    w_o: Tensor,
    b_o: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    gelu_epilogue: bool = False,
) -> Tensor:
    """attn: SDPA output [B, H, N, Dh] → out projection, gated residual, modulated LayerNorm, FF (GELU tanh), gated
    residual: the rest of a DiT block → [B, N, D]."""
    x = torch.addcmul(x, gate, F.linear(attn.transpose(1, 2).flatten(2), w_o, b_o))
    h = ff_in(_modulate(x, scale_mlp1p, shift_mlp), w1, b1, gelu_epilogue)
    return torch.addcmul(x, gate_mlp, F.linear(h, w2, b2))


def attn_out_ff_qkv(
    x: Tensor,
    attn: Tensor,
    gate: Tensor,
    shift_mlp: Tensor,
    scale_mlp1p: Tensor,
    gate_mlp: Tensor,
    w_o: Tensor,
    b_o: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    shift: Tensor,
    scale1p: Tensor,
    w_qkv: Tensor,
    b_qkv: Tensor,
    gelu_epilogue: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`attn_out_ff` of one block then :func:`qkv_in` of the next, as ONE compiled graph, so the FF's gated
    residual add is fused into the next block's modulated LayerNorm (one kernel, x read once) → x, qkv."""
    x = attn_out_ff(x, attn, gate, shift_mlp, scale_mlp1p, gate_mlp, w_o, b_o, w1, b1, w2, b2, gelu_epilogue)
    return x, qkv_in(x, shift, scale1p, w_qkv, b_qkv)


def attn_out_ff_in(
    x: Tensor,
    attn: Tensor,
    gate: Tensor,
    shift_mlp: Tensor,
    scale_mlp1p: Tensor,
    gate_mlp: Tensor,
    w_o: Tensor,
    b_o: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    shift: Tensor,
    scale1p: Tensor,
    w_qkv: Tensor,
    b_qkv: Tensor,
    cos: Tensor,
    sin: Tensor,
    heads: int,
    gelu_epilogue: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`attn_out_ff_qkv` with RoPE in the same graph (by inductor) → x, q, k, v."""
    x, qkv = attn_out_ff_qkv(x, attn, gate, shift_mlp, scale_mlp1p, gate_mlp, w_o, b_o, w1, b1, w2, b2, shift,
                             scale1p, w_qkv, b_qkv, gelu_epilogue)  # fmt: skip
    q, k, v = split_rope_torch(qkv, cos, sin, heads)
    return x, q, k, v


# after its first failure, padded attention takes the key padding mask for good
_VARLEN = Fallback("varlen flash attention", "the key padding mask", log)
_CUDNN = Fallback("cuDNN attention", "the key padding mask", log)


def key_lens(bias: Tensor) -> Tensor:
    """bias: the key padding bias [B, 1, 1, N] (0 valid, −inf padding; valid keys are a prefix) → int32 [B]."""
    return (bias[:, 0, 0, :] == 0).sum(dim=-1, dtype=torch.int32)


def row_starts(b: int, n: int, device: torch.device) -> Tensor:
    """int32 [B + 1]: 0, N, 2N, … (each padded row is one varlen sequence)."""
    return torch.arange(0, (b + 1) * n, n, device=device, dtype=torch.int32)


def varlen_usable(q: Tensor) -> bool:
    """Whether :func:`attend` can run ``q`` [B, H, N, Dh] through the flash kernel's varlen entry point."""
    return (
        not _VARLEN.broken
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 256
        and torch.backends.cuda.flash_sdp_enabled()  # type: ignore[no-untyped-call]
        and torch.backends.cuda.is_flash_attention_available()
    )


def flash_varlen(q: Tensor, k: Tensor, v: Tensor, lens: Tensor, cu: Tensor | None = None) -> Tensor:
    """Key-padded attention without a mask: q, k, v [B, H, N, Dh] (keys of row b valid on their first ``lens[b]``
    frames) → [B, H, N, Dh]. The rows go to the flash kernel as B sequences of N frames (``cu_seqlens`` 0, N, 2N, …)
    with ``seqused_k = lens``: row b's queries see only its first lens[b] keys, exactly what the −inf bias did, but
    padding keys are never read. Device tensors only, so CUDA graphs capture it. ``cu``: :func:`row_starts`."""
    b, h, n, d = q.shape
    cu = row_starts(b, n, q.device) if cu is None else cu

    def packed(t: Tensor) -> Tensor:
        return t.transpose(1, 2).reshape(b * n, h, d)

    out: Tensor = torch.ops.aten._flash_attention_forward(
        packed(q), packed(k), packed(v), cu, cu, n, n, 0.0, False, False, seqused_k=lens
    )[0]
    return out.view(b, n, h, d).transpose(1, 2)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor | None,
    lens: Tensor | None,
    cu: Tensor | None = None,
    mode: str = "varlen",
    rows_full: Tensor | None = None,
) -> Tensor:
    """SDPA of q, k, v [B, H, N, Dh]: no mask at all when no row is padded (flash). Padded rows (``bias``, and
    ``lens`` = :func:`key_lens` of it): ``mode`` "cudnn-fe" cuDNN's fused kernel with per-row lengths through the
    cuDNN frontend (:mod:`ishow.engine.accel.cudnn_attention`; ``rows_full``: int32 [B] of N, else made here), falling
    back to "varlen" the flash kernel's varlen call; "cudnn" cuDNN's fused kernel with the bias; "masked" (and the
    last fallback) the memory-efficient kernel with the bias."""
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v)
    if mode == "cudnn-fe" and lens is not None:
        from ishow.engine.accel import cudnn_attention

        if cudnn_attention.usable(q):
            full = rows_full if rows_full is not None else torch.full_like(lens, q.shape[2])
            try:
                return cudnn_attention.padded(q, k, v, lens, full)
            except Exception as e:  # noqa: BLE001 (the frontend raises its own error types; flash varlen still works)
                cudnn_attention.disable(e)
        mode = "varlen"
    if mode == "varlen" and lens is not None and varlen_usable(q):
        try:
            return flash_varlen(q, k, v, lens, cu)
        except RuntimeError as e:  # an older torch without seqused_k, or a GPU the kernel does not support
            _VARLEN.fail(e)
    if mode == "cudnn" and q.is_cuda and not _CUDNN.broken:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        try:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        except RuntimeError as e:  # no cuDNN attention for these shapes / this GPU
            _CUDNN.fail(e)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class FusedBlocks:
    """Runs ``model``'s transformer blocks through :func:`attn_in` / :func:`attend` / :func:`attn_out_ff_in` /
    :func:`attn_out_ff`, compiled when ``compile`` (and torch.compile is available), eagerly otherwise. Install as
    ``model.block_runner``. ``kernels`` (default: :func:`ishow.engine.accel.kernel_choice.from_env`) picks the
    attention kernel for padded rows, merged block boundaries, the GELU epilogue and RoPE (the Triton kernel of
    :mod:`ishow.engine.accel.rope` after the compiled projection, or inductor's inside it); ``varlen=True/False``
    and ``merge=`` override the first two (varlen vs the key padding bias on the memory-efficient kernel)."""

    def __init__(
        self,
        model: DiT,
        compile: bool = True,
        varlen: bool | None = None,
        merge: bool | None = None,
        kernels: Kernels | None = None,
    ) -> None:
        self.model = model
        k = kernels if kernels is not None else from_env()
        self.attention = k.attention if varlen is None else ("varlen" if varlen else "masked")
        self.varlen = self.attention in ("varlen", "cudnn-fe")  # both take per-row key lengths
        self.merge = k.merge if merge is None else merge
        self.gelu_epilogue = k.gelu_epilogue
        self.rope_kernel = k.triton_rope
        head_fn: Callable[..., Any] = qkv_in if self.rope_kernel else attn_in
        mid_fn: Callable[..., Any] = attn_out_ff_qkv if self.rope_kernel else attn_out_ff_in
        pre = compiled(f"dit.{head_fn.__name__}", head_fn) if compile else None
        post = compiled("dit.attn_out_ff", attn_out_ff) if compile else None
        mid = compiled(f"dit.{mid_fn.__name__}", mid_fn) if compile and self.merge else None
        self.compiled = pre is not None and post is not None and (not self.merge or mid is not None)
        self.pre: Callable[..., Any] = pre if self.compiled and pre is not None else head_fn
        self.post: Callable[..., Any] = post if self.compiled and post is not None else attn_out_ff
        self.mid: Callable[..., Any] = mid if self.compiled and mid is not None else mid_fn

    def __call__(self, h: Tensor, mods: tuple[Modulation, ...], bias: Tensor | None, rope_table: Tensor) -> Tensor:
        ri = torch.view_as_real(rope_table)  # [N, Dh/2, 2] fp32
        cos, sin = ri[..., 0], ri[..., 1]
        if self.compiled:
            mark_dynamic(cos, 0)
            mark_dynamic(sin, 0)
        lens = key_lens(bias) if bias is not None and self.varlen else None
        cu = row_starts(h.shape[0], h.shape[1], h.device) if lens is not None else None
        full = torch.full_like(lens, h.shape[1]) if lens is not None and self.attention == "cudnn-fe" else None
        blocks: list[Any] = list(self.model.transformer_blocks)
        qkv: tuple[Tensor, Tensor, Tensor] | None = None
        for i, (block, mod) in enumerate(zip(blocks, mods, strict=True)):
            shift, scale1p, gate, shift_mlp, scale_mlp1p, gate_mlp = mod
            attn = block.attn
            if qkv is None:
                w, b = attn._qkv_params()
                if self.compiled:
                    mark_dynamic(h, 0, 1)
                if self.rope_kernel:
                    qkv = split_rope(self.pre(h, shift, scale1p, w, b), ri, attn.heads)
                else:
                    qkv = self.pre(h, shift, scale1p, w, b, cos, sin, attn.heads)
            q, k, v = qkv
            out = attend(q, k, v, bias, lens, cu, self.attention, full)
            if self.compiled:
                mark_dynamic(h, 0, 1)
                mark_dynamic(out, 0, 2)
            ff1, ff2 = block.ff.ff[0][0], block.ff.ff[2]  # upstream's key layout
            o = attn.to_out[0]
            tail = (h, out, gate, shift_mlp, scale_mlp1p, gate_mlp, o.weight, o.bias, ff1.weight, ff1.bias,
                    ff2.weight, ff2.bias)  # fmt: skip
            if not self.merge or i + 1 == len(blocks):
                h, qkv = self.post(*tail, gelu_epilogue=self.gelu_epilogue), None
                continue
            nxt = blocks[i + 1].attn
            w, b = nxt._qkv_params()
            nshift, nscale1p = mods[i + 1][0], mods[i + 1][1]
            if self.rope_kernel:
                h, raw = self.mid(*tail, nshift, nscale1p, w, b, gelu_epilogue=self.gelu_epilogue)
                qkv = split_rope(raw, ri, nxt.heads)
            else:
                h, q, k, v = self.mid(*tail, nshift, nscale1p, w, b, cos, sin, nxt.heads,
                                      gelu_epilogue=self.gelu_epilogue)  # fmt: skip
                qkv = (q, k, v)
        return h
