"""The DiT's convolutional position embedding on the GPU: each grouped conv (k 31, 16 groups of 64 channels) as ONE
Triton kernel over the [B, N, C] activations, with the bias, Mish, the frame mask and the residual in its epilogue.

cuDNN runs this grouped conv as 16 per-group kernels plus NCHW↔NHWC transposes (~900 kernels per batch-1
synthesis, the largest single cost of a batch-1 sampler run on an H200). Here each program computes a
[BLOCK_N frames × 64 channels] tile of one group as 31 small tensor-core dots (one per tap) over the frames it
needs, reading the input where it lies (no transpose, no im2col) and zero outside ``0 ≤ frame < len``:

    y1 = mask · mish(conv1(mask · x))      y = mask · mish(conv2(y1)) + x

the same function as :class:`ishow.engine.f5.dit.ConvPositionEmbedding` followed by :class:`InputEmbedding`'s
residual add. fp16/bf16 on CUDA only (fp32 keeps cuDNN: it is the accuracy reference). :func:`conv_pos_torch`
computes the same maths with plain torch ops from the same rearranged weights (CPU tests, and the shape checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ishow.engine.accel.fallback import Fallback, triton_available
from ishow.engine.accel.mels import frame_mask

log = logging.getLogger(__name__)

MISH_LINEAR_FROM = 20.0  # softplus(x) == x above this (torch's threshold), so mish(x) == x there
_KERNEL = Fallback("the Triton conv position kernel", "cuDNN", log)  # after its first failure: cuDNN for good


@dataclass(frozen=True)
class Tile:
    """Launch shape of the kernel: frames per program, warps, pipeline stages."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 3


def tile_for(rows: int, frames: int) -> Tile:
    """Launch shape measured best on an H200 (``tools/dit_kernels_ab.py``): 64-frame tiles for a batch-1 CFG pair
    (more programs than SMs), 128-frame tiles (4 warps, 3 stages) for larger batches (4.2× cuDNN at 32 × 768)."""
    return Tile(64, 4, 3) if rows * frames <= 4096 else Tile(128, 4, 3)


def convs(module: nn.Module) -> tuple[nn.Conv1d, nn.Conv1d]:
    """The two convs of a :class:`ishow.engine.f5.dit.ConvPositionEmbedding` (``conv1d.0`` and ``conv1d.2``)."""
    seq = module.get_submodule("conv1d")
    first, second = seq.get_submodule("0"), seq.get_submodule("2")
    if not isinstance(first, nn.Conv1d) or not isinstance(second, nn.Conv1d):
        raise TypeError("expected a ConvPositionEmbedding (conv1d.0 and conv1d.2 are Conv1d)")
    return first, second


def rearrange(conv: nn.Conv1d) -> tuple[Tensor, Tensor]:
    """conv1d weight [C_out, C_in/G, K] (groups G) → [G, K, C_in/G, C_out/G] (tap t of group g is one contiguous
    [in, out] matrix), and the bias [C_out]; in the weight's dtype and device."""
    w = conv.weight.detach()
    c_out, cg_in, k = w.shape
    g = conv.groups
    cg_out = c_out // g
    r = w.view(g, cg_out, cg_in, k).permute(0, 3, 2, 1).contiguous()
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out, dtype=w.dtype, device=w.device)
    return r, b.contiguous()


def mish(x: Tensor) -> Tensor:
    """x · tanh(softplus(x)) written as the kernel computes it: x · e(e + 2) / (e(e + 2) + 2), e = exp(x)."""
    e = torch.exp(torch.clamp(x, max=MISH_LINEAR_FROM))
    num = e * (e + 2.0)
    return torch.where(x > MISH_LINEAR_FROM, x, x * num / (num + 2.0))


def conv_mish_torch(x: Tensor, w: Tensor, b: Tensor, lens: Tensor, residual: Tensor | None = None) -> Tensor:
    """The kernel's function in torch ops (fp32 maths): x [B, N, C], w from :func:`rearrange`, lens [B] → [B, N, C]
    = mask · mish(grouped conv(mask · x) + b) (+ residual), in x's dtype."""
    bsz, n, _ = x.shape
    g, k, cg_in, cg_out = w.shape
    keep = frame_mask(lens.to(x.device), n).unsqueeze(-1)
    xf = torch.where(keep, x.float(), 0.0)
    xp = F.pad(xf, (0, 0, k // 2, k // 2))  # [B, N + K - 1, C]
    win = xp.unfold(1, k, 1).reshape(bsz, n, g, cg_in, k)  # [B, N, G, in, K]
    y = torch.einsum("bngit,gtio->bngo", win, w.float()).reshape(bsz, n, g * cg_out) + b.float()
    y = torch.where(keep, mish(y), 0.0)
    if residual is not None:
        y = y + residual.float()
    return y.to(x.dtype)


def conv_pos_torch(x: Tensor, lens: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Both convs and the residual: :class:`InputEmbedding`'s ``conv_pos_embed(x, mask) + x``."""
    return conv_mish_torch(conv_mish_torch(x, w1, b1, lens), w2, b2, lens, residual=x)


def conv_mish_triton(
    x: Tensor, w: Tensor, b: Tensor, lens: Tensor, residual: Tensor | None = None, tile: Tile | None = None
) -> Tensor:
    """:func:`conv_mish_torch` as one Triton launch. x [B, N, C] contiguous, lens int32 [B], same device."""
    from ishow.engine.accel.conv_pos_kernel import launch

    tile = tile if tile is not None else tile_for(x.shape[0], x.shape[1])
    out = torch.empty_like(x)
    launch(x, w, b, lens, residual, out, tile.block_n, tile.num_warps, tile.num_stages, MISH_LINEAR_FROM)
    return out


class ConvPos:
    """``InputEmbedding``'s conv position embedding plus residual for one model: the Triton kernels on CUDA fp16/bf16
    when Triton imports, else the module itself. Call with the projected input [B, N, D] and the frame mask [B, N]
    (valid frames are a prefix of each row; None: all valid). Weights are rearranged once, and again when the convs'
    weights change (a reload)."""

    def __init__(self, module: nn.Module, tile: Tile | None = None) -> None:
        self.module = module
        self.tile = tile
        self._weights: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._key: tuple[int, ...] = ()

    def _params(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c1, c2 = convs(self.module)
        key = (c1.weight.data_ptr(), c2.weight.data_ptr(), c1.weight._version, c2.weight._version)
        if self._weights is None or key != self._key:
            (w1, b1), (w2, b2) = rearrange(c1), rearrange(c2)
            self._weights, self._key = (w1, b1, w2, b2), key
        return self._weights

    def usable(self, x: Tensor) -> bool:
        """CUDA, fp16/bf16, channels per group a power of two ≥ 16 (tensor-core dot tiles), Triton importable."""
        conv = convs(self.module)[0]
        cg = conv.in_channels // conv.groups
        return (
            not _KERNEL.broken
            and x.is_cuda
            and x.dtype in (torch.float16, torch.bfloat16)
            and cg >= 16
            and cg & (cg - 1) == 0
            and triton_available()
        )

    def __call__(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if self.usable(x):
            lens = (
                mask.sum(dim=1, dtype=torch.int32)
                if mask is not None
                else torch.full((x.shape[0],), x.shape[1], dtype=torch.int32, device=x.device)
            )
            w1, b1, w2, b2 = self._params()
            xc = x.contiguous()
            try:
                mid = conv_mish_triton(xc, w1, b1, lens, None, self.tile)
                return conv_mish_triton(mid, w2, b2, lens, xc, self.tile)
            except Exception as e:  # noqa: BLE001 (triton compile/launch errors have many types)
                _KERNEL.fail(e)
        out: Tensor = self.module(x, mask) + x
        return out


def kernel_failure() -> str | None:
    return _KERNEL.failure
