"""Audio I/O and features for the F5/Vocos path: read, resample, RMS rule, log-mel spectrogram.

No torchaudio: the mel spectrogram is ``torch.stft`` plus a filterbank computed here with the same formula as
``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale="htk")``, so it matches
``torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_fft=1024, win_length=1024, hop_length=256, n_mels=100,
power=1, center=True, normalized=False, norm=None)``, the "vocos" mel of F5-TTS and of Vocos.

Importing this module does no work; soundfile and soxr are imported when first used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.errors import EngineError, VoiceError

N_FFT = 1024
WIN_LENGTH = 1024
N_MELS = 100
TARGET_RMS = 0.1
F5_LOG_FLOOR = 1e-5  # F5-TTS: mel.clamp(min=1e-5).log()

FloatArray = npt.NDArray[np.float32]


def load_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> FloatArray:
    """Read an audio file as float32 mono ``[N]`` at ``sample_rate`` (channels averaged, resampled with soxr).

    Raises ``VoiceError`` naming the path when the file is missing, unreadable, empty or holds non-finite samples.
    """
    import soundfile

    path = Path(path)
    if not path.exists():
        raise VoiceError(f"reference audio {str(path)!r} does not exist")
    if not path.is_file():
        raise VoiceError(f"reference audio {str(path)!r} is not a regular file")
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise VoiceError(f"reference audio {str(path)!r} is unreadable (expected WAV/FLAC/OGG/MP3): {e}") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise VoiceError(f"reference audio {str(path)!r} is empty (0 samples)")
    mono: FloatArray = np.asarray(data.mean(axis=1, dtype=np.float32), dtype=np.float32)
    if not np.isfinite(mono).all():
        raise VoiceError(f"reference audio {str(path)!r} contains NaN or infinite samples")
    return resample(mono, int(sr), sample_rate)


def resample(x: npt.ArrayLike, sr_in: int, sr_out: int) -> FloatArray:
    """Resample float mono audio ``[N]`` from ``sr_in`` to ``sr_out`` Hz with soxr (HQ); float32 ``[M]`` out.

    ``M`` is ``round(N * sr_out / sr_in)`` as soxr computes it; same-rate input is returned as a float32 copy.
    """
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 1:
        raise EngineError(f"resample expects mono audio of shape [N], got shape {a.shape}")
    if sr_in <= 0 or sr_out <= 0:
        raise EngineError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out or a.size == 0:
        return a.copy()
    import soxr

    out = soxr.resample(a, sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def rms_normalize(x: npt.ArrayLike, target: float = TARGET_RMS) -> tuple[FloatArray, float]:
    """Upstream F5 rule: if ``rms(x) < target``, scale ``x`` up to RMS ``target``; louder audio is left alone.

    Returns ``(audio, original_rms)``. When ``original_rms < target`` the caller rescales generated audio by
    ``original_rms / target`` so the output is as quiet as the reference. Raises ``VoiceError`` for empty or
    silent (RMS below 1e-8) audio, where upstream would divide by zero.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.size == 0:
        raise VoiceError("reference audio is empty (0 samples)")
    rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))
    if not np.isfinite(rms):
        raise VoiceError("reference audio contains NaN or infinite samples")
    if rms < 1e-8:
        raise VoiceError(f"reference audio is silent (rms {rms:.3g}); expected speech")
    if rms < target:
        return (a * np.float32(target / rms)).astype(np.float32), rms
    return a.copy(), rms


def mel_filterbank(
    n_freqs: int = N_FFT // 2 + 1,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular HTK-scale mel filterbank without area normalization: float32 ``[n_freqs, n_mels]``.

    Same math as torchaudio's ``melscale_fbanks(mel_scale="htk", norm=None)``: ``n_freqs`` bins spaced evenly on
    ``[0, sample_rate // 2]``; ``n_mels + 2`` points evenly spaced on ``mel = 2595 log10(1 + f / 700)`` between
    ``f_min`` and ``f_max`` (default ``sample_rate / 2``); filter ``m`` rises from point ``m`` to ``m + 1`` and falls
    to ``m + 2``, peak 1.
    """
    f_hi = float(sample_rate) / 2 if f_max is None else float(f_max)
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float32)
    m_lo = 2595.0 * float(np.log10(1.0 + f_min / 700.0))
    m_hi = 2595.0 * float(np.log10(1.0 + f_hi / 700.0))
    m_pts = torch.linspace(m_lo, m_hi, n_mels + 2, dtype=torch.float32)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # [n_mels + 1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


class _Spectrogram(nn.Module):
    """Holds the Hann window; named like torchaudio's ``Spectrogram`` so state-dict keys match (``window``)."""

    window: torch.Tensor

    def __init__(self, win_length: int, persistent: bool) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(win_length), persistent=persistent)


class _MelScale(nn.Module):
    """Holds the filterbank; named like torchaudio's ``MelScale`` so state-dict keys match (``fb``)."""

    fb: torch.Tensor

    def __init__(self, fb: torch.Tensor, persistent: bool) -> None:
        super().__init__()
        self.register_buffer("fb", fb, persistent=persistent)


class MelSpectrogram(nn.Module):
    """Log-magnitude mel spectrogram, the F5-TTS/Vocos "vocos" mel: ``[B, N]`` or ``[N]`` → ``[B, n_mels, T]``.

    ``T = 1 + N // hop_length`` (centered frames, reflect padding; inputs of at most ``n_fft // 2`` samples, too
    short to reflect, are zero-padded instead of failing). Magnitude (power 1) STFT with a periodic Hann window,
    HTK mel filterbank without norm, then ``log(clamp(mel, min=log_floor))``. Computed in float32 whatever the
    input dtype.

    ``center=False`` (Vocos "same" feature padding, which pads by itself) gives ``1 + (N - n_fft) // hop_length``
    frames instead. ``persistent_buffers``: whether ``spectrogram.window`` and ``mel_scale.fb`` are saved in
    ``state_dict`` (Vocos checkpoints carry them; F5 checkpoints do not): embed it with the flag its checkpoint needs.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        win_length: int = WIN_LENGTH,
        hop_length: int = HOP,
        n_mels: int = N_MELS,
        log_floor: float = F5_LOG_FLOOR,
        persistent_buffers: bool = False,
        center: bool = True,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.log_floor = log_floor
        self.center = center
        self.spectrogram = _Spectrogram(win_length, persistent_buffers)
        self.mel_scale = _MelScale(mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate), persistent_buffers)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear mel magnitudes: ``[B, N]`` or ``[N]`` float → float32 ``[B, n_mels, 1 + N // hop_length]``."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise EngineError(f"mel spectrogram expects audio of shape [B, N] or [N], got {tuple(audio.shape)}")
        if audio.shape[-1] == 0:
            raise EngineError("mel spectrogram got empty audio (0 samples)")
        x = audio.to(torch.float32)
        window = self.spectrogram.window.to(device=x.device, dtype=torch.float32)
        fb = self.mel_scale.fb.to(device=x.device, dtype=torch.float32)
        pad_mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        if not self.center and x.shape[-1] < self.n_fft:
            raise EngineError(f"mel spectrogram without centering needs >= {self.n_fft} samples, got {x.shape[-1]}")
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=window,
            center=self.center,
            pad_mode=pad_mode,
            normalized=False,
            onesided=True,
            return_complex=True,
        ).abs()  # [B, n_fft // 2 + 1, T]
        return torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` or ``[N]`` → float32 ``[B, n_mels, 1 + N // hop_length]`` log mel."""
        return torch.log(torch.clamp(self.magnitude(audio), min=self.log_floor))
