"""The F5-TTS v1 DiT backbone, written for ishow and state-dict compatible with upstream ``f5_tts`` 1.1.22.

Parameter names and shapes follow upstream (``time_embed``, ``text_embed``, ``input_embed``, ``rotary_embed``,
``transformer_blocks``, ``norm_out``, ``proj_out``) so official checkpoints load unchanged. Unlike upstream, every
operation that mixes frames is padding-masked (attention keys, the convolutional position embedding, the ConvNeXt
text blocks including their GRN statistics), so an item of a padded batch gives the same result as on its own.

Shapes: ``B`` batch, ``N`` frames, ``M`` mel channels, ``Nt`` text tokens, ``D`` model dim, ``Dt`` text dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TIME_FREQ_DIM = 256
TEXT_MAX_POS = 8192


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of one DiT; ``text_num_embeds`` is the vocab size (the embedding has one more row)."""

    dim: int
    depth: int
    heads: int
    dim_head: int = 64
    ff_mult: int = 2
    mel_dim: int = 100
    text_num_embeds: int = 2545
    text_dim: int = 512
    conv_layers: int = 4

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiTConfig:
        fields = set(cls.__dataclass_fields__)
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown DiT config keys {sorted(unknown)}; expected a subset of {sorted(fields)}")
        return cls(**{k: int(v) for k, v in data.items()})


F5TTS_V1_BASE = DiTConfig(dim=1024, depth=22, heads=16, ff_mult=2, text_dim=512, conv_layers=4)
F5TTS_V1_SMALL = DiTConfig(dim=768, depth=18, heads=12, ff_mult=2, text_dim=512, conv_layers=4)
TINY = DiTConfig(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)
CONFIGS: dict[str, DiTConfig] = {"F5TTS_v1_Base": F5TTS_V1_BASE, "F5TTS_v1_Small": F5TTS_V1_SMALL, "tiny": TINY}


def _masked(x: Tensor, keep: Tensor | None) -> Tensor:
    """Zero ``x`` [B, N, C] where ``keep`` [B, N] is False (``None``: keep everything)."""
    return x if keep is None else x.masked_fill(~keep.unsqueeze(-1), 0.0)


def text_sinus_table(dim: int, length: int, theta: float = 10000.0) -> Tensor:
    """Upstream ``precompute_freqs_cis``: [length, dim] = cat(cos(pos·f), sin(pos·f)), f_k = theta^(-2k/dim)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    angles = torch.outer(torch.arange(length).float(), freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of t·1000 (256 features, sin then cos) followed by an MLP: [B] → [B, D]."""

    def __init__(self, dim: int, freq_dim: int = TIME_FREQ_DIM) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        rate = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -rate)
        angles = 1000.0 * t.float().unsqueeze(1) * freqs.unsqueeze(0)
        first: nn.Linear = self.time_mlp[0]  # type: ignore[assignment]
        hidden = torch.cat((angles.sin(), angles.cos()), dim=-1).to(first.weight.dtype)
        out: Tensor = self.time_mlp(hidden)
        return out


class GRN(nn.Module):
    """Global response normalisation over the frame axis, counting only frames where ``valid`` is True."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x: [B, N, C], valid: [B, N] → [B, N, C]. Statistics in fp32."""
        xf = _masked(x, valid).float()
        gx = torch.linalg.vector_norm(xf, ord=2, dim=1, keepdim=True)  # [B, 1, C]
        nx = (gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)).to(x.dtype)
        out: Tensor = self.gamma * (x * nx) + self.beta + x
        return out


class ConvNeXtV2Block(nn.Module):
    """Depthwise conv (k=7) → LayerNorm → Linear → GELU → GRN → Linear, residual. Input must be zero off-text."""

    def __init__(self, dim: int, intermediate_dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.grn = GRN(intermediate_dim)
        self.pwconv2 = nn.Linear(intermediate_dim, dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x: [B, N, C], valid: [B, N] (frames inside the item's duration) → [B, N, C]."""
        h = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        h = self.act(self.pwconv1(self.norm(h)))
        out: Tensor = x + self.pwconv2(self.grn(h, valid))
        return out


class TextEmbedding(nn.Module):
    """Token ids (−1 = batch padding) → per-frame text features [B, N, Dt], filler and padding zeroed."""

    def __init__(self, text_num_embeds: int, text_dim: int, conv_layers: int) -> None:
        super().__init__()
        self.text_embed = nn.Embedding(text_num_embeds + 1, text_dim)  # row 0 is the filler token
        self.register_buffer("freqs_cis", text_sinus_table(text_dim, TEXT_MAX_POS), persistent=False)
        self.text_blocks = nn.Sequential(*[ConvNeXtV2Block(text_dim, text_dim * 2) for _ in range(conv_layers)])

    def forward(self, text: Tensor, seq_lens: Tensor, n_frames: int, drop_text: bool = False) -> Tensor:
        """text: [B, Nt] int (−1 padded), seq_lens: [B] frames per item, n_frames: N → [B, N, Dt]."""
        ids = text[:, :n_frames] + 1
        ids = F.pad(ids, (0, n_frames - ids.shape[1]), value=0)
        valid = torch.arange(n_frames, device=ids.device).unsqueeze(0) < seq_lens.unsqueeze(1)  # [B, N]
        ids = ids.masked_fill(~valid, 0)
        filler = ids == 0  # upstream derives the mask before dropping the text, and keeps it for the drop
        if drop_text:
            ids = torch.zeros_like(ids)
        h = _masked(self.text_embed(ids), valid)
        if len(self.text_blocks) > 0:
            freqs: Tensor = self.freqs_cis  # type: ignore[assignment]
            h = h + _masked(freqs[:n_frames].to(h.dtype).unsqueeze(0).expand_as(h), valid)
            keep = ~filler
            h = _masked(h, keep)
            for block in self.text_blocks:
                h = _masked(block(h, valid), keep)
        return h


class ConvPositionEmbedding(nn.Module):
    """Two grouped convs (k=31, 16 groups) with Mish, padded frames zeroed before each conv: [B, N, D]."""

    def __init__(self, dim: int, kernel_size: int = 31, groups: int = 16) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
            nn.Conv1d(dim, dim, kernel_size, groups=groups, padding=pad),
            nn.Mish(),
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: [B, N, D], mask: [B, N] valid frames or None (all valid) → [B, N, D]."""
        h = _masked(x, mask).transpose(1, 2)
        h = self.conv1d[1](self.conv1d[0](h))
        h = _masked(h.transpose(1, 2), mask).transpose(1, 2)
        h = self.conv1d[3](self.conv1d[2](h))
        return _masked(h.transpose(1, 2), mask)


# Optional replacement of the conv position embedding plus its residual: (h [B, N, D], mask [B, N] or None) → h.
PosRunner = Callable[[Tensor, Tensor | None], Tensor]


class InputEmbedding(nn.Module):
    """Linear(cat(x, cond, text)) plus the conv position embedding: [B, N, 2M+Dt] → [B, N, D]."""

    def __init__(self, mel_dim: int, text_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(mel_dim * 2 + text_dim, out_dim)
        self.conv_pos_embed = ConvPositionEmbedding(out_dim)

    def forward(
        self, x: Tensor, cond: Tensor, text_embed: Tensor, mask: Tensor | None, pos: PosRunner | None = None
    ) -> Tensor:
        """``pos`` (optional) replaces ``conv_pos_embed(h, mask) + h`` by the same function (GPU kernels)."""
        h: Tensor = self.proj(torch.cat((x, cond, text_embed), dim=-1))
        if pos is not None:
            return pos(h, mask)
        out: Tensor = self.conv_pos_embed(h, mask) + h
        return out


class RotaryEmbedding(nn.Module):
    """x_transformers-style rotary embedding (adjacent pairs rotated); ``inv_freq`` is a persistent buffer."""

    def __init__(self, dim_head: int, base: float = 10000.0) -> None:
        super().__init__()
        self.dim_head = dim_head
        self.base = base
        self.register_buffer("inv_freq", self._inv_freq())

    def _inv_freq(self, device: torch.device | None = None) -> Tensor:
        return 1.0 / (self.base ** (torch.arange(0, self.dim_head, 2, device=device).float() / self.dim_head))

    def forward(self, n_frames: int) -> Tensor:
        """→ angles [N, dim_head] in fp32, each frequency repeated twice (f0, f0, f1, f1, ...).

        The frequencies are recomputed in fp32 (the buffer exists for state-dict compatibility and may be fp16,
        which would put angle errors of ~0.3 rad on frames beyond 500)."""
        buf: Tensor = self.inv_freq  # type: ignore[assignment]
        device = buf.device
        pos = torch.arange(n_frames, device=device, dtype=torch.float32)
        angles = torch.outer(pos, self._inv_freq(device))
        return torch.stack((angles, angles), dim=-1).flatten(-2)

    def table(self, n_frames: int) -> Tensor:
        """The rotation table for :func:`apply_rotary_qk`: complex64 [N, dim_head // 2] = exp(i·angle)."""
        angles = self.forward(n_frames)[:, ::2]
        return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """x: [B, H, N, Dh], angles: [N, Dh] → rotated x (computed in fp32, returned in x's dtype). Reference form."""
    xf = x.float()
    pairs = xf.reshape(*xf.shape[:-1], -1, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return (xf * angles.cos() + rotated * angles.sin()).to(x.dtype)


def apply_rotary_qk(qk: Tensor, table: Tensor) -> Tensor:
    """qk: [B, N, 2, H, Dh] (q and k), table: complex [N, Dh/2] from :meth:`RotaryEmbedding.table` → rotated qk.

    The same rotation as :func:`apply_rotary` (pair (a, b) ↦ (a·cos − b·sin, b·cos + a·sin)) as one complex product
    in fp32: three kernels for q and k together instead of ~18."""
    shape = qk.shape
    xc = torch.view_as_complex(qk.float().reshape(*shape[:-1], -1, 2))
    out = torch.view_as_real(xc * table[None, :, None, None, :]).flatten(-2)
    return out.to(qk.dtype)


# Per-block modulation: (shift, 1 + scale, gate, shift_mlp, 1 + scale_mlp, gate_mlp), each [D] when every row
# shares the time step (the sampler's case, precomputed once per step) or [B, 1, D] for per-row times.
Modulation = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _modulate(x: Tensor, scale1p: Tensor, shift: Tensor) -> Tensor:
    """LayerNorm(x) · (1 + scale) + shift: one fused layer_norm when the modulation is shared by all rows."""
    if scale1p.dim() == 1:
        return F.layer_norm(x, (x.shape[-1],), scale1p, shift, 1e-6)
    return torch.addcmul(shift, F.layer_norm(x, (x.shape[-1],), eps=1e-6), scale1p)


class Attention(nn.Module):
    """Multi-head self-attention (SDPA) with an additive key padding bias; q/k/v projections run as one GEMM."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])
        self._fused: tuple[Tensor, Tensor] | None = None

    def _qkv_params(self) -> tuple[Tensor, Tensor]:
        """One [3·inner, D] weight whose thirds ARE to_q/to_k/to_v's storage (re-fused after ``.to()``/reloads)."""
        mods = (self.to_q, self.to_k, self.to_v)
        fused = self._fused
        if fused is not None:
            w, b = fused
            step_w, step_b = w[0].numel() * w.shape[0] // 3, b.numel() // 3
            if all(
                m.weight.data_ptr() == w.data_ptr() + i * step_w * w.element_size()
                and m.bias.data_ptr() == b.data_ptr() + i * step_b * b.element_size()
                and m.weight.dtype == w.dtype
                and m.weight.device == w.device
                for i, m in enumerate(mods)
            ):
                return fused
        with torch.inference_mode(False), torch.no_grad():
            w = torch.cat([m.weight.detach() for m in mods])
            b = torch.cat([m.bias.detach() for m in mods])
            inner = self.heads * self.dim_head
            for i, m in enumerate(mods):
                m.weight.data = w[i * inner : (i + 1) * inner]
                m.bias.data = b[i * inner : (i + 1) * inner]
        self._fused = (w, b)
        return w, b

    def forward(self, x: Tensor, bias: Tensor | None, rope: Tensor) -> Tensor:
        """x: [B, N, D], bias: additive key bias [B, 1, 1, N] (0 or −inf, x's dtype) or None, rope: complex
        [N, Dh/2] → [B, N, D]. Padded query rows come out finite but meaningless (the DiT zeroes its output)."""
        b, n, _ = x.shape
        w, bb = self._qkv_params()
        qkv = F.linear(x, w, bb).view(b, n, 3, self.heads, self.dim_head)
        qk = apply_rotary_qk(qkv[:, :, :2], rope)
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head)
        proj: Tensor = self.to_out[0](out)
        return proj


class AdaLayerNorm(nn.Module):
    """LayerNorm modulated by the time embedding; ``linear`` maps silu(t) to the block's six modulations."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim * 6)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, emb: Tensor) -> Modulation:
        """emb: [B, D] → six [B, 1, D] tensors, or [1, D] → six [D] tensors (shared by every row)."""
        shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = self.linear(F.silu(emb)).chunk(6, dim=1)
        parts = (shift, 1 + scale, gate, shift_mlp, 1 + scale_mlp, gate_mlp)
        if emb.shape[0] == 1:
            shared = [p[0].contiguous() for p in parts]
            return shared[0], shared[1], shared[2], shared[3], shared[4], shared[5]
        rows = [p.unsqueeze(1) for p in parts]
        return rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]


class AdaLayerNormFinal(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim * 2)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def modulation(self, emb: Tensor) -> tuple[Tensor, Tensor]:
        """→ (1 + scale, shift), [D] each for emb [1, D], else [B, 1, D]."""
        scale, shift = self.linear(F.silu(emb)).chunk(2, dim=1)
        if emb.shape[0] == 1:
            return (1 + scale)[0].contiguous(), shift[0].contiguous()
        return (1 + scale).unsqueeze(1), shift.unsqueeze(1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale1p, shift = self.modulation(emb)
        return _modulate(x, scale1p, shift)


class FeedForward(nn.Module):
    """Linear → GELU(tanh) → Linear; keys ``ff.0.0`` and ``ff.2`` as upstream (dropout slot kept empty)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        inner = dim * mult
        self.ff = nn.Sequential(
            nn.Sequential(nn.Linear(dim, inner), nn.GELU(approximate="tanh")), nn.Identity(), nn.Linear(inner, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.ff(x)
        return out


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, ff_mult: int) -> None:
        super().__init__()
        self.attn_norm = AdaLayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)
        self.ff_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, ff_mult)

    def forward(self, x: Tensor, mod: Modulation, bias: Tensor | None, rope: Tensor) -> Tensor:
        """x: [B, N, D], mod: this block's modulation, bias: [B, 1, 1, N] or None, rope: complex [N, Dh/2]."""
        shift, scale1p, gate, shift_mlp, scale_mlp1p, gate_mlp = mod
        x = torch.addcmul(x, gate, self.attn(_modulate(x, scale1p, shift), bias, rope))
        return torch.addcmul(x, gate_mlp, self.ff(_modulate(x, scale_mlp1p, shift_mlp)))


@dataclass(frozen=True, eq=False)
class StepConditioning:
    """Everything the time step decides, computed once per step and shared by every row: block modulations and
    the final norm's (1 + scale, shift), all [D] in the model's dtype."""

    blocks: tuple[Modulation, ...]
    final: tuple[Tensor, Tensor]


def key_padding_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """mask: [B, N] bool valid frames → additive SDPA bias [B, 1, 1, N] (0 or −inf) in ``dtype``, its rows stored
    16-aligned so the memory-efficient kernel takes it without a copy."""
    b, n = mask.shape
    store = torch.zeros(b, 1, 1, (n + 15) // 16 * 16, dtype=dtype, device=mask.device)
    bias = store[..., :n]
    return bias.masked_fill_(~mask[:, None, None, :], float("-inf"))


class DiT(nn.Module):
    """The F5-TTS v1 transformer. Use :meth:`embed_text` once per sampling run, then :meth:`forward` per step."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        c = config
        if c.dim % 16:
            raise ValueError(f"DiT dim must be a multiple of 16 (conv position embedding groups), got {c.dim}")
        self.config = config
        self.time_embed = TimestepEmbedding(c.dim)
        self.text_embed = TextEmbedding(c.text_num_embeds, c.text_dim, c.conv_layers)
        self.input_embed = InputEmbedding(c.mel_dim, c.text_dim, c.dim)
        self.rotary_embed = RotaryEmbedding(c.dim_head)
        self.transformer_blocks = nn.ModuleList(
            [DiTBlock(c.dim, c.heads, c.dim_head, c.ff_mult) for _ in range(c.depth)]
        )
        self.norm_out = AdaLayerNormFinal(c.dim)
        self.proj_out = nn.Linear(c.dim, c.mel_dim)
        # Optional replacement of the block loop: (h, modulations, bias, rope table) → h. The graph sampler installs
        # :class:`ishow.engine.accel.fused.FusedBlocks` (torch.compile'd blocks) while it captures a bucket.
        self.block_runner: Callable[[Tensor, tuple[Modulation, ...], Tensor | None, Tensor], Tensor] | None = None

    def embed_text(self, text: Tensor, seq_lens: Tensor, n_frames: int, drop_text: bool = False) -> Tensor:
        """text: [B, Nt] ids (−1 padded), seq_lens: [B] → [B, N, Dt]. Constant over sampling steps."""
        out: Tensor = self.text_embed(text, seq_lens, n_frames, drop_text=drop_text)
        return out

    def _blocks(self) -> list[DiTBlock]:
        return [cast(DiTBlock, b) for b in self.transformer_blocks]

    def step_conditioning(self, time: float) -> StepConditioning:
        """The time conditioning of one step shared by every row (fp32 time embedding, modulations in the model's
        dtype). The sampler computes it once per step and reuses it for every row and every batch."""
        device = self.proj_out.weight.device
        t = self.time_embed(torch.tensor([time], device=device, dtype=torch.float32))
        blocks = tuple(block.attn_norm.modulation(t) for block in self._blocks())
        return StepConditioning(blocks=blocks, final=self.norm_out.modulation(t))

    def forward(
        self,
        x: Tensor,
        cond: Tensor,
        text_embed: Tensor,
        time: Tensor | StepConditioning,
        mask: Tensor | None,
        rope: Tensor | None = None,
        bias: Tensor | None = None,
        runner: Callable[[Tensor, tuple[Modulation, ...], Tensor | None, Tensor], Tensor] | None = None,
        pos: PosRunner | None = None,
    ) -> Tensor:
        """Predict the flow.

        x: [B, N, M] noisy mel, cond: [B, N, M] reference mel (zeros where generated, or all zeros for the
        unconditional row), text_embed: [B, N, Dt] from :meth:`embed_text`, time: [B] in [0, 1] (pass fp32: the
        time embedding is computed in fp32, and fp16 times are off by up to 2.4e-4, i.e. 0.24 rad at t·1000) or a
        :class:`StepConditioning` shared by all rows, mask: [B, N] bool valid frames, or None when no row is padded
        (lets SDPA use its fastest kernel). ``rope`` (:meth:`RotaryEmbedding.table` of N) and ``bias``
        (:func:`key_padding_bias` of mask) may be passed precomputed → [B, N, M], padded frames zero. ``runner``
        replaces the block loop and ``pos`` the conv position embedding (both: the same function, faster kernels).
        """
        if isinstance(time, StepConditioning):
            mods, final = time.blocks, time.final
        else:
            t = self.time_embed(time)
            mods = tuple(block.attn_norm.modulation(t) for block in self._blocks())
            final = self.norm_out.modulation(t)
        if rope is None:
            rope = self.rotary_embed.table(x.shape[1])
        if bias is None and mask is not None:
            bias = key_padding_bias(mask, x.dtype)
        h = self.input_embed(x, cond, text_embed, mask, pos)
        runner = runner if runner is not None else self.block_runner
        if runner is not None:
            h = runner(h, mods, bias, rope)
        else:
            for block, mod in zip(self.transformer_blocks, mods, strict=True):
                h = block(h, mod, bias, rope)
        out: Tensor = self.proj_out(_modulate(h, *final))
        return _masked(out, mask)

    def forward_cfg(self, x: Tensor, cond: Tensor, text: Tensor, time: Tensor, mask: Tensor) -> Tensor:
        """Upstream's ``cfg_infer=True`` call: conditional rows then unconditional rows → [2B, N, M]."""
        seq_lens = mask.sum(dim=1)
        n = x.shape[1]
        te = torch.cat([self.embed_text(text, seq_lens, n), self.embed_text(text, seq_lens, n, drop_text=True)])
        return self.forward(
            torch.cat([x, x]),
            torch.cat([cond, torch.zeros_like(cond)]),
            te,
            torch.cat([time, time]),
            torch.cat([mask, mask]),
        )
