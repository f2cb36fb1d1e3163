"""A synthetic reference voice for warm-up and benchmarks: no recording needed, the same every time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ishow.audio_format import SAMPLE_RATE

REF_TEXT = "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。"  # ~5 s of speech


def write_reference(path: Path, seconds: float = 5.0) -> Path:
    """A speech-like 5 s reference: a gliding harmonic tone with a syllable-rate envelope, RMS ≈ 0.1."""
    import soundfile

    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 160 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    wave = env * sum(np.sin(k * phase) / k for k in range(1, 6))
    wave = 0.1 * wave / np.sqrt(np.mean(wave**2))
    soundfile.write(str(path), wave.astype(np.float32), SAMPLE_RATE)
    return path
