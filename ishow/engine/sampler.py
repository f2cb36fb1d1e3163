"""Conditional flow matching sampler for F5-TTS: Euler steps on the EPSS/sway time grid with packed CFG.

Every item of a batch carries its own reference mel, tokens, total duration and noise seed; padding is masked in
the DiT, so an item's result does not depend on what else is in the batch.

Shapes: ``B`` batch, ``N`` frames (padded), ``M`` mel channels, ``Nt`` tokens.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ishow.engine.dit import DiT

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


def item_noise(seed: int, frames: int, mel_dim: int) -> Tensor:
    """Standard normal noise [frames, M] fp32 from a CPU generator seeded with ``seed`` (device independent)."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return torch.randn(frames, mel_dim, generator=gen, dtype=torch.float32)


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
) -> Tensor:
    """Like :func:`sample` but returns the padded batch [B, N, M] fp32, reference frames restored (as upstream)."""
    if not items:
        raise ValueError("sample() needs at least one item")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    mel_dim = model.config.mel_dim
    b = len(items)
    durs = [it.total_frames() for it in items]
    n = max(durs)
    seq_lens = torch.tensor(durs, device=device)
    mask = torch.arange(n, device=device).unsqueeze(0) < seq_lens.unsqueeze(1)  # [B, N]

    cond = torch.zeros(b, n, mel_dim, device=device, dtype=torch.float32)
    x = torch.zeros(b, n, mel_dim, device=device, dtype=torch.float32)
    n_text = max(1, max(len(it.text) for it in items))
    text = torch.full((b, n_text), -1, dtype=torch.long)
    for i, it in enumerate(items):
        if it.cond.ndim != 2 or it.cond.shape[1] != mel_dim:
            raise ValueError(f"item {i}: cond must be [frames, {mel_dim}], got {list(it.cond.shape)}")
        cond[i, : it.cond.shape[0]] = it.cond.to(device=device, dtype=torch.float32)
        if it.text:
            text[i, : len(it.text)] = torch.tensor(it.text, dtype=torch.long)
        eps = noise[i] if noise is not None else item_noise(it.seed, durs[i], mel_dim)
        if tuple(eps.shape) != (durs[i], mel_dim):
            raise ValueError(f"item {i}: noise must be [{durs[i]}, {mel_dim}], got {list(eps.shape)}")
        x[i, : durs[i]] = eps.to(device=device, dtype=torch.float32)
    text = text.to(device)

    cfg = config.cfg_strength
    use_cfg = cfg >= 1e-5
    cond_m = cond.to(dtype)
    te = model.embed_text(text, seq_lens, n)
    if use_cfg:
        te = torch.cat([te, model.embed_text(text, seq_lens, n, drop_text=True)])
        cond_m = torch.cat([cond_m, torch.zeros_like(cond_m)])
        mask_m = torch.cat([mask, mask])
    else:
        mask_m = mask
    rows = cond_m.shape[0]
    fwd_mask = None if len(set(durs)) == 1 else mask_m  # no padding: unmasked kernels, same result

    ts = timesteps(config.nfe_step, config.sway_coef, config.use_epss)
    for t0, t1 in itertools.pairwise(ts):
        xm = x.to(dtype)
        if use_cfg:
            xm = torch.cat([xm, xm])
        time = torch.full((rows,), t0, device=device, dtype=torch.float32)
        pred = model(xm, cond_m, te, time, fwd_mask).float()
        if use_cfg:
            pos, neg = pred.chunk(2, dim=0)
            pred = pos + (pos - neg) * cfg
        x = x + (t1 - t0) * pred

    ref_keep = torch.zeros(b, n, 1, dtype=torch.bool, device=device)
    for i, it in enumerate(items):
        ref_keep[i, : it.cond.shape[0]] = True
    out = torch.where(ref_keep, cond, x)
    return out.masked_fill(~mask.unsqueeze(-1), 0.0)
