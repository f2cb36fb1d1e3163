"""Padded batches: mels of different lengths padded into one tensor with a frame mask (every vocoder backend), and
the frame mask of a padded batch from its lengths (the vocoder's and the DiT's torch paths)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_mels(mels: Sequence[Tensor], n_rows: int, n_frames: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """[T_i, M] mels → (mel [n_rows, M, n_frames] zero-padded, frame_mask [n_rows, n_frames] fp32) on ``device``.
    Rows past the items are 1-frame dummies (a valid frame keeps every envelope positive)."""
    n_mels = int(mels[0].shape[1])
    mel = torch.zeros(n_rows, n_mels, n_frames, device=device)
    mask = torch.zeros(n_rows, n_frames, device=device)
    mask[len(mels) :, 0] = 1.0
    for i, m in enumerate(mels):
        t = int(m.shape[0])
        mel[i, :, :t] = m.to(device=device, dtype=torch.float32).transpose(0, 1)
        mask[i, :t] = 1.0
    return mel, mask


def frame_mask(lens: Tensor, t: int) -> Tensor:
    """[B, T] bool: frame < its row's length (``lens`` [B], any integer dtype; the mask is on its device)."""
    return torch.arange(t, device=lens.device)[None, :] < lens[:, None]
