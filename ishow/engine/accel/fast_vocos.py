"""The Vocos vocoder for the GPU path as pure tensor functions for ``torch.compile`` (inductor), captured inside
:class:`ishow.engine.accel.vocoder_backends.TorchVocoder`'s per-bucket CUDA graphs.

Three compiled forms of the same function as :class:`ishow.engine.f5.vocos.Vocos` (with frame masks, so a padded
batch decodes exactly like its items alone):

* the default on CUDA fp16/bf16 with Triton: channels-last, each ConvNeXt block as the Triton kernel of
  :mod:`ishow.engine.accel.vocos_convnext` (the previous block's masked residual, depthwise conv, LayerNorm) and
  :func:`vocos_ff_epilogue` (Linear with the bias + GELU epilogue, Linear: two cuBLASLt GEMMs), between
  :func:`vocos_embed_gemm` (the embedding conv as one GEMM: 3 kernels) and :func:`vocos_tail`: 3 kernels a block,
  every frame mask built inside them from the lengths. At 256 frames on an H200 (``tools/gpu_profile.py``): 38
  kernels, 0.18 ms of GPU time (session 6: 58 kernels with a compiled FF and cuDNN's embedding conv); through
  ``TorchVocoder.decode`` (``ishow bench``) 0.28 → 0.23 ms.
  ``vocos-exact-gelu`` compiles the FF as :func:`vocos_ff` instead (the exact GELU, one more kernel a block),
  ``vocos-conv-embed`` the embedding as :func:`vocos_embed_cl` (cuDNN's conv);
* per stage (``ISHOW_DIT_KERNELS=vocos-stages``, and fp32): :func:`vocos_embed`, :func:`vocos_block` (one compiled
  graph shared by the 8 blocks, ~12 kernels each);
* ``ISHOW_DIT_KERNELS=vocos-fused``: the whole backbone as ONE compiled graph over channels-last activations
  [B, T, C] (:func:`vocos_backbone`): each depthwise conv written as its 7 shifted multiply-adds, so inductor fuses
  it with the previous block's masked residual and this block's LayerNorm, no transpose between blocks (~4 kernels
  per ConvNeXt block instead of ~9). Measured on an H200 at 256 frames: 0.28–0.32 ms vs 0.33–0.40 ms per decode
  in ``tools/vocoder_ab.py``, but its first compile takes 19.6 s (batch 1) + 28.8 s (batch 8) instead of ~3 s, and
  ``ishow bench``'s vocoder row did not move (0.34 ms), so it is opt-in.

The head (final LayerNorm, Linear to log-magnitude/phase, ``exp``, the inverse real DFT as one GEMM and the
overlap-add) runs in fp32 in all three (:func:`vocos_head`), except that the fp16 vocoder on CUDA runs its two
GEMMs on fp16 operands with fp32 accumulation and output (``vocos-fp32-head`` keeps them fp32).

Shapes: ``B`` batch, ``T`` frames, ``C`` channels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ishow.engine.accel.fallback import triton_available
from ishow.engine.accel.fused import compiled, mark_dynamic
from ishow.engine.accel.kernel_choice import from_env
from ishow.engine.accel.mels import frame_mask
from ishow.engine.accel.vocos_convnext import dw_ln
from ishow.engine.f5.vocos import LOG_MAG_MAX, Vocos

BlockWeights = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """frames [B, T, W] with W a multiple of hop → [B, (T - 1)·hop + W], frame t added at t·hop (R = W/hop pads)."""
    b, t, w = frames.shape
    r = w // hop
    parts = frames.reshape(b, t, r, hop)
    out = F.pad(parts[:, :, 0], (0, 0, 0, r - 1))
    for j in range(1, r):
        out = out + F.pad(parts[:, :, j], (0, 0, j, r - 1 - j))
    return out.flatten(1)


def vocos_embed(mel: Tensor, mask: Tensor, w: Tensor, b: Tensor, ln_w: Tensor, ln_b: Tensor) -> Tensor:
    """mel [B, n_mels, T] (anything finite or not on padding), mask [B, 1, T] bool → embedded, normed, masked
    [B, C, T] in the weights' dtype."""
    mel = torch.where(mask, mel.to(w.dtype), 0.0)
    x = F.conv1d(mel, w, b, padding=w.shape[-1] // 2)
    x = F.layer_norm(x.transpose(1, 2), (x.shape[1],), ln_w, ln_b, 1e-6).transpose(1, 2)
    return x * mask


def vocos_block(
    x: Tensor,
    mask: Tensor,
    dw_w: Tensor,
    dw_b: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    gamma: Tensor,
) -> Tensor:
    """One ConvNeXt block on masked x [B, C, T] → masked [B, C, T] (``gamma`` all ones when the block has none)."""
    h = F.conv1d(x, dw_w, dw_b, padding=dw_w.shape[-1] // 2, groups=x.shape[1]).transpose(1, 2)
    h = F.layer_norm(h, (h.shape[-1],), ln_w, ln_b, 1e-6)
    h = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2) * gamma
    return (x + h.transpose(1, 2)) * mask


def depthwise_cl(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Depthwise conv1d (zero padding k//2) of channels-last x [B, T, C] with w [C, 1, k], b [C] → [B, T, C], as k
    shifted multiply-adds (one fused pointwise expression for inductor; fp32 inside the kernel)."""
    k, t = w.shape[-1], x.shape[1]
    xp = F.pad(x, (0, 0, k // 2, k // 2))
    out = b + xp[:, 0:t] * w[:, 0, 0]
    for j in range(1, k):
        out = out + xp[:, j : j + t] * w[:, 0, j]
    return out


def vocos_backbone(
    mel: Tensor,
    mask: Tensor,
    keep: Tensor,
    embed: tuple[Tensor, Tensor, Tensor, Tensor],
    blocks: Sequence[BlockWeights],
) -> Tensor:
    """mel [B, n_mels, T] (anything past the lengths), mask [B, 1, T] bool, keep [B, T, 1] in the weights' dtype →
    the backbone's features before its final LayerNorm (which :func:`vocos_head` applies) [B, T, C]: embedding
    conv + LayerNorm, the ConvNeXt blocks (depthwise conv, LayerNorm, Linear, GELU, Linear, layer scale, masked
    residual), all channels-last."""
    w, b, ln_w, ln_b = embed
    mel = torch.where(mask, mel.to(w.dtype), 0.0)
    x = F.conv1d(mel, w, b, padding=w.shape[-1] // 2).transpose(1, 2)  # [B, T, C]
    c = x.shape[-1]
    x = F.layer_norm(x, (c,), ln_w, ln_b, 1e-6) * keep
    for dw_w, dw_b, n_w, n_b, w1, b1, w2, b2, gamma in blocks:
        h = F.layer_norm(depthwise_cl(x, dw_w, dw_b), (c,), n_w, n_b, 1e-6)
        h = F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2) * gamma
        x = (x + h) * keep
    return x


def vocos_embed_cl(mel: Tensor, lens: Tensor, w: Tensor, b: Tensor, ln_w: Tensor, ln_b: Tensor) -> Tensor:
    """:func:`vocos_embed` channels-last, the mask from ``lens`` [B]: → embedded, normed, masked [B, T, C]
    (contiguous)."""
    mask = frame_mask(lens, mel.shape[-1]).unsqueeze(1)
    return vocos_embed(mel, mask, w, b, ln_w, ln_b).transpose(1, 2).contiguous()


def im2col_weight(w: Tensor) -> Tensor:
    """A conv1d weight [C_out, C_in, k] → [C_out, K] for :func:`vocos_embed_gemm`: tap-major columns (tap j's C_in
    inputs side by side), K = k·C_in rounded up to a multiple of 8 with zero columns (16-byte rows in fp16)."""
    c_out, c_in, k = w.shape
    cols = w.permute(0, 2, 1).reshape(c_out, k * c_in)
    return F.pad(cols, (0, -(-k * c_in // 8) * 8 - k * c_in)).contiguous()


def vocos_embed_gemm(
    mel: Tensor, lens: Tensor, w_cols: Tensor, b: Tensor, ln_w: Tensor, ln_b: Tensor, k: int
) -> Tensor:
    """:func:`vocos_embed_cl` with the conv (zero padding k//2) as ONE GEMM over each frame's k neighbours (im2col,
    ``w_cols`` from :func:`im2col_weight`), so inductor builds the columns in one kernel instead of cuDNN's
    layout transposes around its conv: mel [B, n_mels, T] (any strides; anything past an item's length), lens [B]
    → embedded, normed, masked [B, T, C] contiguous."""
    t = mel.shape[-1]
    keep = frame_mask(lens, t).unsqueeze(-1)  # [B, T, 1]
    x = torch.where(keep, mel.transpose(1, 2).to(w_cols.dtype), 0.0)  # [B, T, n_mels]
    xp = F.pad(x, (0, 0, k // 2, k // 2))
    cols = torch.cat([xp[:, j : j + t] for j in range(k)], dim=-1)  # [B, T, k·n_mels]
    h = F.linear(F.pad(cols, (0, w_cols.shape[1] - cols.shape[-1])), w_cols, b)
    return F.layer_norm(h, (h.shape[-1],), ln_w, ln_b, 1e-6) * keep


def vocos_ff(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """A ConvNeXt block's Linear, exact GELU, Linear on its normalised frames h [B, T, C] → [B, T, C] (the layer
    scale and the residual add are the next stage's)."""
    return F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2)


def vocos_ff_epilogue(h: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """:func:`vocos_ff` as two GEMMs and nothing between them: on CUDA cuBLASLt with the bias + GELU epilogue on the
    first, whose GELU is the tanh approximation (at most 5e-4 from the exact one; fp16 rounds the activations by
    up to 1e-3), and the bias epilogue on the second (CPU: the exact GELU). Run eagerly (captured in the
    vocoder's CUDA graphs): inductor would split the epilogue back out."""
    flat = h.reshape(-1, h.shape[-1])
    a = torch._addmm_activation(b1, flat, w1.t(), use_gelu=True)
    return torch.addmm(b2, a, w2.t()).view(*h.shape[:-1], w2.shape[0])


def vocos_tail(
    x: Tensor,
    y: Tensor,
    gamma: Tensor,
    lens: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    basis: Tensor,
    win_sq: Tensor,
    hop: int,
) -> Tensor:
    """The last block's masked residual add (stream x, FF output y, layer scale gamma; the mask from lens [B]), then
    :func:`vocos_head`."""
    maskf = frame_mask(lens, x.shape[1]).to(torch.float32)
    keep = maskf.unsqueeze(-1).to(x.dtype)
    return vocos_head((x + y * gamma) * keep, maskf, ln_w, ln_b, w_out, b_out, basis, win_sq, hop)


def mm_f32(a: Tensor, b: Tensor) -> Tensor:
    """a [..., K] @ b [K, N] in fp32 from ``b``'s half dtype: one tensor-core GEMM of half operands with fp32
    accumulation and output (``torch.mm(out_dtype=)``, CUDA only); a is cast to b's dtype first."""
    flat = a.reshape(-1, a.shape[-1]).to(b.dtype)
    return torch.mm(flat, b, out_dtype=torch.float32).view(*a.shape[:-1], b.shape[1])


def vocos_head(
    h: Tensor,
    maskf: Tensor,
    ln_w: Tensor,
    ln_b: Tensor,
    w_out: Tensor,
    b_out: Tensor,
    basis: Tensor,
    win_sq: Tensor,
    hop: int,
) -> Tensor:
    """h [B, T, C] backbone features (any strides) → final LayerNorm (backbone dtype), then in fp32: Linear to
    log-magnitude/phase, ``exp(min(logmag, log 100))``,
    the windowed inverse real DFT as one GEMM with ``basis`` [n_fft + 2, n_fft] and the overlap-add, normalised by
    each item's own window envelope (``maskf`` [B, T] fp32) → [B, (T - 1)·hop]: equal to ``torch.istft(center=True)``
    of each item alone on its first (T_i − 1)·hop samples. With ``w_out`` and ``basis`` in fp16 (the fp16 vocoder
    on CUDA; ``vocos-fp32-head`` turns it off), both GEMMs take fp16 operands on the tensor cores with fp32
    accumulation and output (:func:`mm_f32`) instead of fp32 FMA GEMMs (56 µs of a 250 µs decode of 256 frames
    on an H200)."""
    h = F.layer_norm(h, (h.shape[-1],), ln_w, ln_b, 1e-6)
    half = w_out.dtype != torch.float32
    h = mm_f32(h, w_out.t()) + b_out if half else F.linear(h.float(), w_out, b_out)  # [B, T, n_fft + 2]
    log_mag, phase = h.chunk(2, dim=-1)
    mag = torch.exp(torch.clamp(log_mag, max=LOG_MAG_MAX)) * maskf.unsqueeze(-1)
    coeffs = torch.cat((mag * torch.cos(phase), mag * torch.sin(phase)), dim=-1)
    n_fft = basis.shape[1]
    y = overlap_add(coeffs @ basis if basis.dtype == torch.float32 else mm_f32(coeffs, basis), hop)
    env = overlap_add(maskf.unsqueeze(-1) * win_sq, hop)
    start = n_fft // 2
    total = y.shape[1]
    return y[:, start : total - start] / env[:, start : total - start].clamp_min(1e-11)


class FastVocos(nn.Module):
    """Vocos for the GPU path: backbone in ``dtype`` (fp16 on CUDA), head (exp/ISTFT) in fp32, the ISTFT as one GEMM
    plus an overlap-add (no complex tensors, so inductor can fuse it), compiled when ``compile``: per stage, or the
    whole backbone as one graph (:func:`vocos_backbone`) with ``fused=True``, or the Triton block kernel with
    ``triton=True`` (defaults: ``ISHOW_DIT_KERNELS``; the kernel on CUDA fp16/bf16 with Triton, torch ops elsewhere).

    ``forward(mel [B, n_mels, T], lens [B] long)`` → waveform [B, (T - 1)·hop] fp32; item i is valid on its first
    (lens_i − 1)·hop samples. Values of ``mel`` past ``lens`` are ignored (even non-finite ones)."""

    basis: Tensor
    win_sq: Tensor

    def __init__(
        self,
        vocos: Vocos,
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
        fused: bool | None = None,
        triton: bool | None = None,
    ) -> None:
        super().__init__()
        from ishow.engine.accel.onnx_export import istft_basis

        cfg = vocos.config
        if cfg.head_padding != "center" or cfg.head_n_fft % cfg.head_hop_length:
            raise ValueError("FastVocos needs head padding 'center' and n_fft a multiple of hop (vocos-mel-24khz)")
        device = vocos.backbone.embed.weight.device
        self.backbone = copy.deepcopy(vocos.backbone).to(device=device, dtype=dtype).eval()
        self.out = copy.deepcopy(vocos.head.out).to(device=device, dtype=torch.float32).eval()
        window = vocos.head.istft.window.detach().to("cpu", torch.float32)
        self.register_buffer("basis", istft_basis(cfg.head_n_fft, window)[:, 0].to(device))
        self.register_buffer("win_sq", window.square().to(device))
        self.hop = cfg.head_hop_length
        self.dtype = dtype
        kernels = from_env()
        self.fused = kernels.vocos_fused if fused is None else fused
        has_out_dtype = hasattr(torch.ops.aten.mm, "dtype")  # torch.mm(out_dtype=), torch 2.8 and later
        half_head = kernels.vocos_half_head and dtype == torch.float16 and device.type == "cuda" and has_out_dtype
        self._w_head = self.out.weight.detach().half() if half_head else self.out.weight
        self._basis_head = self.basis.half() if half_head else self.basis
        fast_dtype = dtype in (torch.float16, torch.bfloat16) and device.type == "cuda" and triton_available()
        self.triton = not self.fused and (kernels.vocos_triton and fast_dtype if triton is None else triton)
        # the Triton path's embedding and FF (see vocos_embed_gemm, vocos_ff_epilogue)
        self.gemm_embed = self.triton and kernels.vocos_gemm_embed
        self.gelu_epilogue = self.triton and kernels.vocos_gelu_epilogue and device.type == "cuda"
        self._w_embed = im2col_weight(self.backbone.embed.weight.detach()) if self.gemm_embed else None
        if self.fused:
            names: tuple[str, ...] = ("vocos.backbone", "vocos.head")
        elif self.triton:
            embed = "vocos.embed_gemm" if self.gemm_embed else "vocos.embed_cl"
            names = (embed, "vocos.tail") if self.gelu_epilogue else (embed, "vocos.ff", "vocos.tail")
        else:
            names = ("vocos.embed", "vocos.block", "vocos.head")
        fns: dict[str, Callable[..., Any]] = {
            "vocos.backbone": vocos_backbone,
            "vocos.embed": vocos_embed,
            "vocos.block": vocos_block,
            "vocos.head": vocos_head,
            "vocos.embed_cl": vocos_embed_cl,
            "vocos.embed_gemm": vocos_embed_gemm,
            "vocos.ff": vocos_ff,
            "vocos.tail": vocos_tail,
        }
        parts = {n: compiled(n, fns[n]) if compile else None for n in names}
        self.compiled = all(p is not None for p in parts.values())
        self._fn: dict[str, Callable[..., Any]] = {
            n: (p if self.compiled and p is not None else fns[n]) for n, p in parts.items()
        }
        self._blocks: list[Any] = list(self.backbone.convnext)
        ones = {i: torch.ones_like(blk.pwconv2.bias) for i, blk in enumerate(self._blocks) if blk.gamma is None}
        self._weights: list[BlockWeights] = [
            (blk.dwconv.weight, blk.dwconv.bias, blk.norm.weight, blk.norm.bias, blk.pwconv1.weight, blk.pwconv1.bias,
             blk.pwconv2.weight, blk.pwconv2.bias, blk.gamma if blk.gamma is not None else ones[i])
            for i, blk in enumerate(self._blocks)
        ]  # fmt: skip

    def forward(self, mel: Tensor, lens: Tensor) -> Tensor:
        lens = lens.to(mel.device)
        if self.triton:
            return self._forward_blocks(mel, lens)
        maskb = frame_mask(lens, mel.shape[-1])  # [B, T]
        maskf = maskb.to(torch.float32)
        mask = maskb.unsqueeze(1)
        if self.compiled:
            for tensor in (mel, maskf, mask):
                mark_dynamic(tensor, 0, tensor.dim() - 1)
        bb = self.backbone
        fl = bb.final_layer_norm
        if self.fused:
            keep = maskb.unsqueeze(-1).to(self.dtype)
            if self.compiled:
                mark_dynamic(keep, 0, 1)
            h = self._fn["vocos.backbone"](mel, mask, keep, (bb.embed.weight, bb.embed.bias, bb.norm.weight,
                                           bb.norm.bias), self._weights)  # fmt: skip
        else:
            x = self._fn["vocos.embed"](mel, mask, bb.embed.weight, bb.embed.bias, bb.norm.weight, bb.norm.bias)
            maskd = mask.to(x.dtype)
            if self.compiled:
                mark_dynamic(maskd, 0, 2)
            for w in self._weights:
                if self.compiled:
                    mark_dynamic(x, 0, 2)
                x = self._fn["vocos.block"](x, maskd, *w)
            h = x.transpose(1, 2)
        if self.compiled:
            mark_dynamic(h, 0, 1)
        out: Tensor = self._fn["vocos.head"](h, maskf, fl.weight, fl.bias, self._w_head, self.out.bias,
                                             self._basis_head, self.win_sq, self.hop)  # fmt: skip
        return out

    def _forward_blocks(self, mel: Tensor, lens: Tensor) -> Tensor:
        """The backbone as its embedding (:func:`vocos_embed_gemm`, or :func:`vocos_embed_cl`), then per block the
        kernel of :mod:`ishow.engine.accel.vocos_convnext` (the previous block's residual, depthwise conv,
        LayerNorm) and the FF (:func:`vocos_ff_epilogue`, or :func:`vocos_ff` compiled), then :func:`vocos_tail`
        (the last residual and the head). Every mask comes from ``lens`` inside these kernels."""
        bb = self.backbone
        fl = bb.final_layer_norm
        if self.compiled:
            mark_dynamic(mel, 0, 2)
            mark_dynamic(lens, 0)
        if self._w_embed is not None:
            x = self._fn["vocos.embed_gemm"](mel, lens, self._w_embed, bb.embed.bias, bb.norm.weight, bb.norm.bias,
                                             bb.embed.weight.shape[-1])  # fmt: skip
        else:
            x = self._fn["vocos.embed_cl"](mel, lens, bb.embed.weight, bb.embed.bias, bb.norm.weight, bb.norm.bias)
        y: Tensor | None = None
        gamma: Tensor | None = None
        for dw_w, dw_b, n_w, n_b, w1, b1, w2, b2, g in self._weights:
            x, h = dw_ln(x, y, gamma, lens, dw_w, dw_b, n_w, n_b)
            if self.gelu_epilogue:
                y = vocos_ff_epilogue(h, w1, b1, w2, b2)
            else:
                if self.compiled:
                    mark_dynamic(h, 0, 1)
                y = self._fn["vocos.ff"](h, w1, b1, w2, b2)
            gamma = g
        if y is None or gamma is None:
            raise ValueError("a Vocos backbone has at least one ConvNeXt block")
        if self.compiled:
            for t in (x, y):
                mark_dynamic(t, 0, 1)
        out: Tensor = self._fn["vocos.tail"](x, y, gamma, lens, fl.weight, fl.bias, self._w_head, self.out.bias,
                                             self._basis_head, self.win_sq, self.hop)  # fmt: skip
        return out
