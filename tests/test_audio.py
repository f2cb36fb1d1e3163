"""ishow.engine.f5.audio: mel spectrogram (vs torchaudio golden), filterbank, resampling, RMS rule, file loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.engine.f5.audio import (
    MelSpectrogram,
    load_audio,
    mel_filterbank,
    resample,
    rms_normalize,
)
from ishow.errors import EngineError, VoiceError

GOLDEN = Path(__file__).parent / "golden"


def _hz_to_mel(f: float) -> float:
    return 2595.0 * float(np.log10(1.0 + f / 700.0))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def _sine(freq: float, n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


# --- filterbank -----------------------------------------------------------------------------------------------


def test_filterbank_matches_independent_float64_formula() -> None:
    fb = mel_filterbank().double().numpy()
    assert fb.shape == (513, 100)
    freqs = np.linspace(0, 12000, 513)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(12000.0), 102))
    ref = np.zeros((513, 100))
    for m in range(100):
        lo, mid, hi = pts[m], pts[m + 1], pts[m + 2]
        ref[:, m] = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    np.testing.assert_allclose(fb, ref, atol=2e-5)
    assert fb.min() >= 0.0 and fb.max() <= 1.0 + 1e-6
    assert (fb.sum(axis=0) > 0).all(), "every mel filter covers at least one FFT bin"


def test_filterbank_is_not_area_normalized() -> None:
    fb = mel_filterbank()
    # without slaney norm, high filters (wide) have larger sums than low ones (narrow), and peaks stay <= 1
    assert fb[:, 99].sum() > 5 * fb[:, 5].sum()


# --- mel spectrogram -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [513, 1000, 24_000, 24_001, 24_256])
def test_mel_shape(n: int) -> None:
    mel = MelSpectrogram()(torch.zeros(3, n))
    assert mel.shape == (3, 100, 1 + n // HOP)
    assert mel.dtype == torch.float32


def test_mel_accepts_1d_and_other_dtypes() -> None:
    x = torch.from_numpy(_sine(440.0, 4800))
    ref = MelSpectrogram()(x)
    assert ref.shape == (1, 100, 1 + 4800 // 256)
    torch.testing.assert_close(MelSpectrogram()(x.double()), ref)
    half = MelSpectrogram()(x.half())  # fp16 input quantizes the signal: compare the loud bins only
    assert half.dtype == torch.float32
    loud = ref > 0.0
    torch.testing.assert_close(half[loud], ref[loud], atol=5e-2, rtol=0)


def test_mel_silence_is_log_floor() -> None:
    mel = MelSpectrogram()(torch.zeros(1, 2048))
    torch.testing.assert_close(mel, torch.full_like(mel, float(np.log(1e-5))))
    mel7 = MelSpectrogram(log_floor=1e-7)(torch.zeros(1, 2048))
    assert float(mel7.max()) == pytest.approx(float(np.log(1e-7)), rel=1e-6)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 8000.0])
def test_mel_peak_bin_of_sine(freq: float) -> None:
    mel = MelSpectrogram()(torch.from_numpy(_sine(freq, SAMPLE_RATE)))  # [1, 100, T]
    frame_energy = mel[0, :, 10:-10].mean(dim=1)  # skip edge frames
    centers = _mel_to_hz(np.linspace(0.0, _hz_to_mel(12000.0), 102))[1:-1]
    expected = int(np.argmin(np.abs(centers - freq)))
    assert abs(int(frame_energy.argmax()) - expected) <= 1, (int(frame_energy.argmax()), expected)


def test_mel_matches_torchaudio_golden() -> None:
    """Golden from torchaudio 2.11 (F5's get_vocos_mel_spectrogram) on the GPU machine's CPU."""
    data = np.load(GOLDEN / "mel_torchaudio.npz")
    ours = MelSpectrogram()(torch.from_numpy(data["audio"])).numpy()
    assert ours.shape == data["mel"].shape == (1, 100, 48)
    np.testing.assert_allclose(ours, data["mel"], atol=1e-4, rtol=0)


def test_mel_matches_make_golden_if_present() -> None:
    """tests/golden/mel_golden.safetensors (make_golden.py, upstream F5 + torchaudio) when it exists."""
    path = GOLDEN / "mel_golden.safetensors"
    if not path.exists():
        pytest.skip("tests/golden/mel_golden.safetensors not generated yet (tests/golden/make_golden.py)")
    from safetensors.torch import load_file

    data = load_file(str(path))
    torch.testing.assert_close(MelSpectrogram()(data["in.wav"]), data["out.logmel"], atol=1e-4, rtol=0)


def test_mel_batch_rows_are_independent() -> None:
    a, b = _sine(440.0, 6000), _sine(2000.0, 6000, amp=0.1)
    both = MelSpectrogram()(torch.from_numpy(np.stack([a, b])))
    torch.testing.assert_close(both[1:], MelSpectrogram()(torch.from_numpy(b)[None]))


def test_mel_short_and_bad_input() -> None:
    mel = MelSpectrogram()(torch.ones(1, 100))  # too short to reflect-pad: zero-padded, no crash
    assert mel.shape == (1, 100, 1)
    with pytest.raises(EngineError, match="empty"):
        MelSpectrogram()(torch.zeros(1, 0))
    with pytest.raises(EngineError, match=r"\[B, N\]"):
        MelSpectrogram()(torch.zeros(1, 1, 1000))


def test_mel_buffers_persistence_flag() -> None:
    assert MelSpectrogram().state_dict() == {}
    sd = MelSpectrogram(persistent_buffers=True).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {"spectrogram.window": (1024,), "mel_scale.fb": (513, 100)}


# --- resample ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sr_in", "n_in", "n_out"), [(22_050, 22_050, 24_000), (48_000, 48_000, 24_000), (16_000, 8_000, 12_000)]
)
def test_resample_lengths(sr_in: int, n_in: int, n_out: int) -> None:
    y = resample(np.zeros(n_in, dtype=np.float32), sr_in, 24_000)
    assert y.dtype == np.float32 and y.shape == (n_out,)


def test_resample_preserves_a_tone() -> None:
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(44_100) / 44_100)).astype(np.float32)
    y = resample(x, 44_100, 24_000)
    spectrum = np.abs(np.fft.rfft(y[2000:-2000]))
    peak_hz = np.argmax(spectrum) * 24_000 / (len(y) - 4000)
    assert abs(peak_hz - 1000) < 2


def test_resample_same_rate_and_errors() -> None:
    x = np.arange(10, dtype=np.float64)
    y = resample(x, 24_000, 24_000)
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))
    assert resample(np.zeros(0), 48_000, 24_000).shape == (0,)
    with pytest.raises(EngineError):
        resample(np.zeros((2, 10)), 48_000, 24_000)
    with pytest.raises(EngineError):
        resample(np.zeros(10), 0, 24_000)


# --- RMS rule ------------------------------------------------------------------------------------------------


def test_rms_quiet_audio_is_scaled_up() -> None:
    x = _sine(440.0, 24_000, amp=0.02)
    y, rms = rms_normalize(x)
    assert rms == pytest.approx(0.02 / np.sqrt(2), rel=1e-3)
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(0.1, rel=1e-4)
    assert y.dtype == np.float32


def test_rms_loud_audio_is_untouched() -> None:
    x = _sine(440.0, 24_000, amp=0.5)
    y, rms = rms_normalize(x)
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert np.array_equal(y, x) and y is not x


def test_rms_custom_target_and_silence() -> None:
    _, rms = rms_normalize(np.full(100, 0.3, dtype=np.float32), target=0.5)
    assert rms == pytest.approx(0.3)
    with pytest.raises(VoiceError, match="silent"):
        rms_normalize(np.zeros(1000, dtype=np.float32))
    with pytest.raises(VoiceError, match="empty"):
        rms_normalize(np.zeros(0, dtype=np.float32))


# --- load_audio ----------------------------------------------------------------------------------------------


def test_load_audio_stereo_48k_to_mono_24k(tmp_path: Path) -> None:
    left = _sine(440.0, 48_000) * 0.5
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 48_000, subtype="FLOAT")
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == (24_000,)
    assert float(np.abs(y[1000:-1000]).max()) == pytest.approx(0.125, rel=0.02)  # channels averaged


def test_load_audio_int16_24k(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    soundfile.write(path, _sine(440.0, 2400), SAMPLE_RATE, subtype="PCM_16")
    y = load_audio(path)
    assert y.shape == (2400,) and y.dtype == np.float32
    np.testing.assert_allclose(y, _sine(440.0, 2400), atol=1e-4)


def test_load_audio_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(VoiceError, match=r"nope\.wav.*does not exist"):
        load_audio(missing)
    with pytest.raises(VoiceError, match="not a regular file"):
        load_audio(tmp_path)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(VoiceError, match=r"garbage\.wav.*unreadable"):
        load_audio(garbage)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(VoiceError, match=r"empty\.wav.*empty"):
        load_audio(empty)
    zero_bytes = tmp_path / "zero.wav"
    zero_bytes.write_bytes(b"")
    with pytest.raises(VoiceError, match=r"zero\.wav"):
        load_audio(zero_bytes)
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(VoiceError, match=r"non-finite|NaN"):
        load_audio(nan)


def test_import_is_cheap() -> None:
    code = (
        "import sys, ishow.engine.f5.audio\n"
        "heavy = {'soundfile', 'soxr', 'torchaudio'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
