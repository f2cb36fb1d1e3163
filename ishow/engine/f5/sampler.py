"""Conditional flow matching sampler for F5-TTS: Euler steps on the EPSS/sway time grid with packed CFG.

Every item of a batch carries its own reference mel, tokens, total duration and noise seed; padding is masked in
the DiT, so an item's result does not depend on what else is in the batch.

Shapes: ``B`` batch, ``N`` frames (padded), ``M`` mel channels, ``Nt`` tokens.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ishow.engine.f5.dit import DiT, StepConditioning, key_padding_bias

# Empirically Pruned Step Sampling grids (in 1/32 units), upstream ``get_epss_timesteps``.
EPSS_GRIDS: dict[int, tuple[int, ...]] = {
    5: (0, 2, 4, 8, 16, 32),
    6: (0, 2, 4, 6, 8, 16, 32),
    7: (0, 2, 4, 6, 8, 16, 24, 32),
    10: (0, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32),
    12: (0, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32),
    16: (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32),
}


@dataclass(frozen=True)
class SamplerConfig:
    nfe_step: int = 7
    cfg_strength: float = 2.0
    sway_coef: float | None = -1.0
    use_epss: bool = True


@dataclass(frozen=True, eq=False)
class SampleItem:
    """One item: ``cond`` [Tref, M] reference mel, ``text`` ids of ref+gen text, ``duration`` total frames."""

    cond: Tensor
    text: tuple[int, ...]
    duration: int
    seed: int = 0

    def total_frames(self) -> int:
        """Upstream rule: at least max(text tokens, reference frames) + 1, so something is generated."""
        return max(self.duration, max(len(self.text), int(self.cond.shape[0])) + 1)


def timesteps(nfe_step: int, sway_coef: float | None = -1.0, use_epss: bool = True) -> list[float]:
    """The nfe_step+1 time points: EPSS grid (or uniform), then sway t ↦ t + s·(cos(π/2·t) − 1 + t)."""
    if nfe_step < 1:
        raise ValueError(f"nfe_step must be >= 1, got {nfe_step}")
    grid = EPSS_GRIDS.get(nfe_step) if use_epss else None
    ts = [g / 32 for g in grid] if grid is not None else [i / nfe_step for i in range(nfe_step + 1)]
    if sway_coef is not None:
        ts = [t + sway_coef * (math.cos(math.pi / 2 * t) - 1 + t) for t in ts]
    return ts


# An item's noise is built from blocks of NOISE_BLOCK frames, each drawn once from its own (seed, index) generator and
# kept (bounded LRU), so the noise of n frames is a prefix of the noise of more, and a message costs a few slices
# instead of a fresh draw: chat repeats its seed (engine.seed) and lengths (~0.3 ms per message on the H200 host,
# ~5 ms for a batch of 16).
NOISE_BLOCK = 256
NOISE_BLOCKS_KEPT = 512  # 51 MB at 100 mel channels, at most


@functools.lru_cache(maxsize=NOISE_BLOCKS_KEPT)
def _noise_block(seed: int, index: int, mel_dim: int) -> Tensor:
    gen = torch.Generator(device="cpu")
    gen.manual_seed((seed * 1_000_003 + index) % 2**63)
    return torch.randn(NOISE_BLOCK, mel_dim, generator=gen, dtype=torch.float32)


def noise_parts(seed: int, frames: int, mel_dim: int) -> list[Tensor]:
    """:func:`item_noise` as the cached blocks' views, in order (read them, never write them)."""
    return [
        _noise_block(seed, j, mel_dim)[: min(NOISE_BLOCK, frames - j * NOISE_BLOCK)]
        for j in range(-(-frames // NOISE_BLOCK))
    ]


def item_noise(seed: int, frames: int, mel_dim: int) -> Tensor:
    """Standard normal noise [frames, M] fp32 from CPU generators seeded from ``seed`` (device independent); the
    noise of fewer frames is a prefix of it."""
    parts = noise_parts(seed, frames, mel_dim)
    return torch.cat(parts) if parts else torch.zeros(0, mel_dim)


@dataclass(frozen=True, eq=False)
class BatchInputs:
    """Padded inputs of one sampling run, all on one device (``B`` rows, ``N`` frames).

    ``x0`` [B, N, M] fp32 noise (zero on padding), ``cond`` [B, N, M] fp32 reference mel (zero after the
    reference), ``text`` [B, N] long ids (−1 padded, already cut to N), ``seq_lens`` [B] long total frames,
    ``ref_lens`` [B] long reference frames. Rows past the real items (batch-size buckets) are 1-frame dummies."""

    x0: Tensor
    cond: Tensor
    text: Tensor
    seq_lens: Tensor
    ref_lens: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.x0.shape[0]), int(self.x0.shape[1])

    def copy_(self, other: BatchInputs) -> None:
        """Copy ``other`` (same shape, any device) into these tensors (static graph inputs)."""
        for name in ("x0", "cond", "text", "seq_lens", "ref_lens"):
            getattr(self, name).copy_(getattr(other, name), non_blocking=True)


def prepare_inputs(
    items: Sequence[SampleItem],
    mel_dim: int,
    noise: Sequence[Tensor] | None = None,
    n_frames: int | None = None,
    n_rows: int | None = None,
    out: BatchInputs | None = None,
) -> BatchInputs:
    """Build the CPU :class:`BatchInputs` of ``items``, padded to ``n_frames`` frames and ``n_rows`` rows
    (default: exactly the longest item and ``len(items)``). ``out`` (CPU tensors of that shape, e.g. pinned
    staging memory): filled in place and returned instead of new tensors."""
    if not items:
        raise ValueError("sample() needs at least one item")
    durs = [it.total_frames() for it in items]
    n = max(durs) if n_frames is None else n_frames
    b = len(items) if n_rows is None else n_rows
    if n < max(durs) or b < len(items):
        raise ValueError(f"cannot pad {len(items)} items of up to {max(durs)} frames into [{b}, {n}]")
    if out is None:
        x0 = torch.zeros(b, n, mel_dim)
        cond = torch.zeros(b, n, mel_dim)
        text = torch.full((b, n), -1, dtype=torch.long)
        seq_lens = torch.ones(b, dtype=torch.long)
        ref_lens = torch.zeros(b, dtype=torch.long)
    else:
        if out.shape != (b, n) or out.x0.shape[2] != mel_dim or out.x0.device.type != "cpu":
            raise ValueError(f"out must be CPU inputs of [{b}, {n}, {mel_dim}], got {list(out.x0.shape)}")
        x0, cond, text, seq_lens, ref_lens = out.x0, out.cond, out.text, out.seq_lens, out.ref_lens
        for i, d in enumerate(durs):  # only what the items below do not overwrite
            x0[i, d:].zero_()
            cond[i, int(items[i].cond.shape[0]) :].zero_()
        x0[len(items) :].zero_()
        cond[len(items) :].zero_()
        text.fill_(-1)
        seq_lens.fill_(1)
        ref_lens.zero_()
    for i, it in enumerate(items):
        if it.cond.ndim != 2 or it.cond.shape[1] != mel_dim:
            raise ValueError(f"item {i}: cond must be [frames, {mel_dim}], got {list(it.cond.shape)}")
        ref = int(it.cond.shape[0])
        cond[i, :ref] = it.cond.to(dtype=torch.float32, device="cpu")
        ids = it.text[:n]
        if ids:
            text[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        if noise is None:
            for j, part in enumerate(noise_parts(it.seed, durs[i], mel_dim)):  # cached blocks, copied in place
                x0[i, j * NOISE_BLOCK : j * NOISE_BLOCK + part.shape[0]] = part
        else:
            eps = noise[i]
            if tuple(eps.shape) != (durs[i], mel_dim):
                raise ValueError(f"item {i}: noise must be [{durs[i]}, {mel_dim}], got {list(eps.shape)}")
            x0[i, : durs[i]] = eps.to(dtype=torch.float32, device="cpu")
        seq_lens[i] = durs[i]
        ref_lens[i] = ref
    return BatchInputs(x0=x0, cond=cond, text=text, seq_lens=seq_lens, ref_lens=ref_lens)


def step_conditionings(model: DiT, ts: Sequence[float]) -> list[StepConditioning]:
    """The shared time conditioning of every step (all but the last time point)."""
    return [model.step_conditioning(t) for t in ts[:-1]]


def uses_cfg(cfg_strength: float) -> bool:
    """Whether sampling runs classifier-free guidance: each item then runs as two rows (conditional and not)."""
    return cfg_strength >= 1e-5


def run_nfe(
    model: DiT,
    inp: BatchInputs,
    ts: Sequence[float],
    steps: Sequence[StepConditioning],
    cfg_strength: float,
    masked: bool = True,
    runner: Any = None,
    pos: Any = None,
) -> Tensor:
    """The whole NFE loop on device tensors: text embedding once, then Euler steps → [B, N, M] fp32 with the
    reference frames restored and padding zeroed. No host synchronisation: CUDA graphs capture it whole.

    ``masked=False`` (only valid when no row is padded) runs the unmasked fast kernels. ``runner`` (optional)
    runs the transformer blocks instead of the model's own and ``pos`` the conv position embedding (see
    ``DiT.forward``)."""
    dtype = model.proj_out.weight.dtype
    _b, n = inp.shape
    frames = torch.arange(n, device=inp.x0.device)
    mask = frames.unsqueeze(0) < inp.seq_lens.unsqueeze(1)  # [B, N]
    use_cfg = uses_cfg(cfg_strength)
    cond_m = inp.cond.to(dtype)
    te = model.embed_text(inp.text, inp.seq_lens, n)
    if use_cfg:
        te = torch.cat([te, model.embed_text(inp.text, inp.seq_lens, n, drop_text=True)])
        cond_m = torch.cat([cond_m, torch.zeros_like(cond_m)])
        mask_m = torch.cat([mask, mask])
    else:
        mask_m = mask
    fwd_mask = mask_m if masked else None
    rope = model.rotary_embed.table(n)
    bias = key_padding_bias(mask_m, dtype) if masked else None
    x = inp.x0
    for (t0, t1), step in zip(itertools.pairwise(ts), steps, strict=True):
        xm = x.to(dtype)
        if use_cfg:
            xm = torch.cat([xm, xm])
        pred = model(xm, cond_m, te, step, fwd_mask, rope=rope, bias=bias, runner=runner, pos=pos).float()
        if use_cfg:
            cond_pred, uncond_pred = pred.chunk(2, dim=0)
            pred = torch.lerp(uncond_pred, cond_pred, 1.0 + cfg_strength)  # cond + (cond − uncond)·cfg
        x = torch.add(x, pred, alpha=t1 - t0)
    ref_keep = (frames.unsqueeze(0) < inp.ref_lens.unsqueeze(1)).unsqueeze(-1)
    out = torch.where(ref_keep, inp.cond, x)
    return out.masked_fill(~mask.unsqueeze(-1), 0.0)


def model_device_dtype(model: DiT) -> tuple[torch.device, torch.dtype]:
    param = model.proj_out.weight
    return param.device, param.dtype


@torch.inference_mode()
def sample(
    model: DiT,
    items: Sequence[SampleItem],
    config: SamplerConfig = SamplerConfig(),
    noise: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Sample every item in one batch; returns the generated mel of each, [duration_i − Tref_i, M] fp32.

    ``noise`` (optional, one [duration_i, M] tensor per item) replaces the seeded noise. The Euler state is kept in
    fp32; the model runs in its own dtype. Conditional and unconditional (CFG) rows share one forward.
    """
    full = sample_full(model, items, config, noise)
    return [full[i, int(it.cond.shape[0]) : it.total_frames()] for i, it in enumerate(items)]


@torch.inference_mode()
def sample_full(
    model: DiT,
    items: Sequence[SampleItem],
    config: SamplerConfig = SamplerConfig(),
    noise: Sequence[Tensor] | None = None,
    n_frames: int | None = None,
    n_rows: int | None = None,
) -> Tensor:
    """Like :func:`sample` but returns the padded batch [B, N, M] fp32, reference frames restored (as upstream).

    ``n_frames``/``n_rows`` pad the batch further (bucketing); the first ``len(items)`` rows and the items' frames
    do not change (masks make padding exact)."""
    device, _ = model_device_dtype(model)
    inp = prepare_inputs(items, model.config.mel_dim, noise, n_frames, n_rows)
    inp = BatchInputs(**{k: getattr(inp, k).to(device) for k in ("x0", "cond", "text", "seq_lens", "ref_lens")})
    ts = timesteps(config.nfe_step, config.sway_coef, config.use_epss)
    durs = [it.total_frames() for it in items]
    b, n = inp.shape
    unpadded = b == len(items) and all(d == n for d in durs)
    return run_nfe(model, inp, ts, step_conditionings(model, ts), config.cfg_strength, masked=not unpadded)
