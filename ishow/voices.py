"""Voice management for the CLI: validate a reference recording and add it to the config file.

``add_voice`` writes a 24 kHz mono copy into ``<root>/voices/`` and appends a ``[[voices]]`` table to the config
text (comments kept), validating the whole new config before an atomic replace — so a running daemon's hot
reload picks it up and a bad voice never lands in the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ishow.config_load import parse_config
from ishow.errors import ConfigError, VoiceError

MIN_SECONDS, MAX_SECONDS = 3.0, 12.0
MIN_RMS = 0.01
_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class ReferenceInfo:
    seconds: float
    rms: float
    peak: float


def check_reference(path: Path) -> tuple[np.ndarray, ReferenceInfo]:
    """Load ``path`` as 24 kHz mono and check it is usable for cloning (3–12 s, not silent, not clipped)."""
    from ishow.engine.audio import load_audio

    audio = load_audio(path)
    seconds = len(audio) / 24000
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise VoiceError(f"{path}: lasts {seconds:.2f} s; a reference should be {MIN_SECONDS:g}–{MAX_SECONDS:g} s")
    if rms < MIN_RMS:
        raise VoiceError(f"{path}: nearly silent (RMS {rms:.4f} < {MIN_RMS}); record closer to the microphone")
    return audio, ReferenceInfo(seconds, rms, peak)


def add_voice(config_path: Path, voice_id: str, wav: Path, transcript: str) -> tuple[Path, ReferenceInfo]:
    """Validate and add a voice; returns the written wav path. Raises VoiceError/ConfigError, writes nothing then."""
    import soundfile as sf

    if not _ID.match(voice_id):
        raise ConfigError(f"voice id {voice_id!r}: use 1–40 letters, digits, _ or -")
    if not transcript.strip():
        raise ConfigError("transcript: the exact words spoken in the recording are required")
    text = config_path.read_text(encoding="utf-8")
    current = parse_config(text, root=config_path.parent, origin=str(config_path))
    if current.voice(voice_id) is not None:
        raise ConfigError(f"voices: a voice with id {voice_id!r} already exists in {config_path}")
    audio, info = check_reference(wav)
    dest = current.root / "voices" / f"{voice_id}.wav"
    rel = dest.relative_to(current.root).as_posix()
    block = (
        f"\n[[voices]]  # added by `ishow voices add` from {wav.name}: {info.seconds:.1f} s\n"
        f"id = {json.dumps(voice_id)}\nref_audio = {json.dumps(rel)}\n"
        f"ref_text = {json.dumps(transcript.strip(), ensure_ascii=False)}\n"
    )
    new_text = text.rstrip("\n") + "\n" + block
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_wav = dest.with_name(dest.name + ".tmp")
    sf.write(tmp_wav, audio, 24000, subtype="PCM_16", format="WAV")
    try:
        parse_config(new_text, root=config_path.parent, origin=str(config_path))  # also checks ref_audio paths
        os.replace(tmp_wav, dest)
        tmp_cfg = config_path.with_name(config_path.name + ".tmp")
        tmp_cfg.write_text(new_text, encoding="utf-8")
        os.replace(tmp_cfg, config_path)
    finally:
        tmp_wav.unlink(missing_ok=True)
    return dest, info
