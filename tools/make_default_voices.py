"""Render the default reference voices for the F5 engine with espeak-ng.

F5-TTS clones the voice of a reference recording whose exact transcript it is given. ishow ships no real
recordings, so the defaults are synthetic: espeak-ng Mandarin and English, 24 kHz mono PCM16, 5–7 s each.

    python -m tools.make_default_voices voices/

writes ``default_zh.wav`` and ``default_en.wav`` into the folder and prints each file's transcript.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

from ishow.audio_format import SAMPLE_RATE
from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest
from ishow.engine.espeak import EspeakEngine


@dataclass(frozen=True)
class DefaultVoice:
    file: str
    espeak: str
    speed: float
    transcript: str


DEFAULT_VOICES: tuple[DefaultVoice, ...] = (
    DefaultVoice("default_zh.wav", "cmn", 1.0, "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。"),
    DefaultVoice(
        "default_en.wav", "en-us", 0.8, "Hello everyone, welcome to the stream. Thanks for hanging out with me today."
    ),
)

TARGET_RMS = 0.1  # the F5 reference preprocessing raises quieter references to this level anyway
PEAK_LIMIT = 0.95
LEAD_S = 0.1  # silence before the speech
TAIL_S = 0.25  # silence after it (F5 upstream appends a short pause to references too)


def render(engine: EspeakEngine, voice: DefaultVoice) -> npt.NDArray[np.float32]:
    """The reference waveform ``[T]`` at 24 kHz: speech, padded, loudness-normalized."""
    spec = VoiceSpec(id=Path(voice.file).stem, espeak=voice.espeak, speed=voice.speed)
    speech = engine.synthesize([SynthRequest(text=voice.transcript, voice=spec)])[0]
    lead = np.zeros(int(LEAD_S * SAMPLE_RATE), dtype=np.float32)
    tail = np.zeros(int(TAIL_S * SAMPLE_RATE), dtype=np.float32)
    audio = np.concatenate([lead, speech, tail])
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))  # over the whole clip, as F5 measures it
    peak = float(np.max(np.abs(audio)))
    gain = min(TARGET_RMS / rms, PEAK_LIMIT / peak)
    return (audio * np.float32(gain)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", nargs="?", default="voices", type=Path, help="folder to write into (voices/)")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = EspeakEngine()
    engine.load()
    for voice in DEFAULT_VOICES:
        audio = render(engine, voice)
        path = out_dir / voice.file
        sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        print(f"{path}\t{len(audio) / SAMPLE_RATE:.2f} s\trms {rms:.3f}\t{voice.transcript}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
