"""Vocos → ONNX: log mel + frame mask in, waveform out, with the ISTFT as two ``ConvTranspose`` ops.

The graph (``VocosOnnx``) is what TensorRT builds its engine from and what onnxruntime runs on CPU:

* inputs ``mel`` [B, 100, T] float32 (zero on padding) and ``frame_mask`` [B, T] float32 (1 valid, 0 padding);
* output ``wave`` [B, (T - 1) * 256] float32; item ``i`` is valid on its first ``(T_i - 1) * 256`` samples;
* backbone as in :mod:`ishow.engine.f5.vocos`, padding zeroed before every convolution (batching is exact);
* head: ``mag = exp(min(logmag, log 100))`` (equal to upstream's ``clip(exp(x), max=100)``, and it cannot
  overflow in fp16), then the inverse real DFT, the synthesis window and the overlap-add fused into ONE
  ``conv_transpose1d`` whose kernel is the windowed inverse-DFT basis [n_fft + 2, 1, n_fft] (stride hop); the
  window envelope is a second ``conv_transpose1d`` of the frame mask with the squared window, so each item is
  normalised by its own frames, exactly like ``torch.istft(center=True)`` on the item alone.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from ishow.engine.f5.vocos import LOG_MAG_MAX, Vocos
from ishow.errors import EngineError

INPUT_NAMES = ("mel", "frame_mask")
OUTPUT_NAME = "wave"
OPSET = 17


def istft_basis(n_fft: int, window: torch.Tensor) -> torch.Tensor:
    """Windowed inverse real-DFT basis [n_fft + 2, 1, n_fft] (fp32): rows 0..n_fft/2 take the real parts, the rest
    the imaginary parts, so ``conv_transpose1d(cat(re, im), basis, stride=hop)`` = overlap-added ``irfft · window``
    (imaginary parts of the DC and Nyquist bins are ignored, as ``irfft`` does)."""
    n_bins = n_fft // 2 + 1
    k = torch.arange(n_fft, dtype=torch.float64)
    m = torch.arange(n_bins, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(m, k) / n_fft  # [bins, n_fft]
    scale = torch.full((n_bins, 1), 2.0, dtype=torch.float64)
    scale[0] = 1.0
    scale[-1] = 1.0 if n_fft % 2 == 0 else 2.0
    w = window.to(torch.float64)[None, :]
    re = scale * torch.cos(angle) * w / n_fft
    im = -scale * torch.sin(angle) * w / n_fft
    return torch.cat([re, im]).unsqueeze(1).to(torch.float32)


class VocosOnnx(nn.Module):
    """Export wrapper: ``forward(mel [B, n_mels, T], frame_mask [B, T]) → wave [B, (T - 1) * hop]`` (fp32)."""

    basis: torch.Tensor
    env_kernel: torch.Tensor

    def __init__(self, vocos: Vocos) -> None:
        super().__init__()
        cfg = vocos.config
        if cfg.head_padding != "center":
            raise EngineError(f"ONNX export supports head padding 'center' (vocos-mel-24khz), got {cfg.head_padding!r}")
        self.backbone = vocos.backbone
        self.out = vocos.head.out
        self.n_fft = cfg.head_n_fft
        self.hop = cfg.head_hop_length
        window = vocos.head.istft.window.detach().to("cpu", torch.float32)
        self.register_buffer("basis", istft_basis(self.n_fft, window))
        self.register_buffer("env_kernel", window.square().reshape(1, 1, -1))

    def forward(self, mel: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        m = frame_mask.unsqueeze(1)  # [B, 1, T]
        h = self.out(self.backbone(mel, m)).transpose(1, 2)  # [B, n_fft + 2, T]
        n_bins = self.n_fft // 2 + 1
        log_mag, phase = h[:, :n_bins], h[:, n_bins:]
        mag = torch.exp(torch.clamp(log_mag, max=LOG_MAG_MAX)) * m
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=1)
        y = nn.functional.conv_transpose1d(spec, self.basis, stride=self.hop)[:, 0]  # [B, (T-1)·hop + n_fft]
        env = nn.functional.conv_transpose1d(m, self.env_kernel, stride=self.hop)[:, 0]
        start = self.n_fft // 2
        out: torch.Tensor = y[:, start:-start] / env[:, start:-start].clamp_min(1e-11)
        return out


def export_vocos_onnx(vocos: Vocos, path: Path, frames: int = 64, batch: int = 2) -> Path:
    """Write ``vocos`` as ONNX (opset 17, dynamic batch and frames, fp32 weights) to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = VocosOnnx(vocos.to("cpu").float().eval()).eval()
    mel = torch.randn(batch, vocos.config.n_mels, frames) - 4
    mask = torch.ones(batch, frames)
    mask[1:, frames // 2 :] = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (mel, mask),
                str(tmp),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    "mel": {0: "batch", 2: "frames"},
                    "frame_mask": {0: "batch", 1: "frames"},
                    OUTPUT_NAME: {0: "batch", 1: "samples"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types (RuntimeError, torch.onnx errors, ...)
        tmp.unlink(missing_ok=True)
        raise EngineError(f"exporting Vocos to ONNX failed: {type(e).__name__}: {e}") from e
    tmp.replace(path)
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
