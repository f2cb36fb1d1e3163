"""Voice management for the CLI: validate a reference recording and add it to the config file.

``add_voice`` writes a 24 kHz mono copy into ``<root>/voices/`` and appends a ``[[voices]]`` table to the config
text (comments kept), validating the whole new config before an atomic replace — so a running daemon's hot
reload picks it up and a bad voice never lands in the file.

Config writes are safe: every value (and the source file name in the comment) is written as a strictly escaped
TOML basic string (``toml_string``), and the new file must parse to exactly the old config plus this one voice,
so no file name or transcript can add or change a key. The file's header (duration) is read before any sample.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ishow.audio_format import SAMPLE_RATE
from ishow.config.load import parse_config
from ishow.config.schema import Config
from ishow.errors import ConfigError, VoiceError

MIN_SECONDS, MAX_SECONDS = 3.0, 12.0
MIN_RMS = 0.01
_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class ReferenceInfo:
    seconds: float
    rms: float
    peak: float


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string: quotes, backslashes and every control character escaped, so it is one
    value on one line whatever it contains. Lone surrogates (undecodable file-name bytes) become U+FFFD."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F or 0x2028 <= code <= 0x2029:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\uFFFD")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def reference_seconds(path: Path) -> float:
    """The recording's duration from its header (no samples loaded); VoiceError when it is not 3–12 s."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise VoiceError(f"{path}: unreadable (expected WAV/FLAC/OGG/MP3): {e}") from e
    seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise VoiceError(f"{path}: lasts {seconds:.2f} s; a reference should be {MIN_SECONDS:g}–{MAX_SECONDS:g} s")
    return seconds


def check_reference(path: Path) -> tuple[np.ndarray, ReferenceInfo]:
    """Load ``path`` as 24 kHz mono and check it is usable for cloning (3–12 s, not silent, not clipped).

    The duration is checked from the header first, so a huge file is refused without being loaded."""
    from ishow.engine.f5.audio import load_audio

    if not path.is_file():
        raise VoiceError(f"{path}: no such file")
    reference_seconds(path)
    audio = load_audio(path)
    seconds = len(audio) / SAMPLE_RATE
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

    if not _ID.fullmatch(voice_id):
        raise ConfigError(f"voice id {voice_id!r}: use 1–40 letters, digits, _ or -")
    if not transcript.strip():
        raise ConfigError("transcript: the exact words spoken in the recording are required")
    if re.search(r"[\ud800-\udfff]", transcript):
        raise ConfigError("transcript: not valid UTF-8 text")
    text = config_path.read_text(encoding="utf-8")
    current = parse_config(text, root=config_path.parent, origin=str(config_path))
    if current.voice(voice_id) is not None:
        raise ConfigError(f"voices: a voice with id {voice_id!r} already exists in {config_path}")
    audio, info = check_reference(wav)
    dest = current.root / "voices" / f"{voice_id}.wav"
    rel = dest.relative_to(current.root).as_posix()
    block = (
        f"\n[[voices]]  # added by `ishow voices add` from {toml_string(wav.name)}: {info.seconds:.1f} s\n"
        f"id = {toml_string(voice_id)}\nref_audio = {toml_string(rel)}\n"
        f"ref_text = {toml_string(transcript.strip())}\n"
    )
    new_text = text.rstrip("\n") + "\n" + block
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_wav = dest.with_name(dest.name + ".tmp")
    sf.write(tmp_wav, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    try:
        new = parse_config(new_text, root=config_path.parent, origin=str(config_path))  # also checks ref_audio
        _check_only_voice_added(current, new, voice_id, transcript.strip())
        os.replace(tmp_wav, dest)
        tmp_cfg = config_path.with_name(config_path.name + ".tmp")
        tmp_cfg.write_text(new_text, encoding="utf-8")
        os.replace(tmp_cfg, config_path)
    finally:
        tmp_wav.unlink(missing_ok=True)
    return dest, info


def _check_only_voice_added(old: Config, new: Config, voice_id: str, transcript: str) -> None:
    """The written text must mean exactly: the old config plus one voice with these values."""
    added = new.voices[len(old.voices) :]
    if (
        len(added) != 1
        or added[0].id != voice_id
        or added[0].ref_text != transcript
        or dataclasses.replace(new, voices=old.voices) != old
    ):  # pragma: no cover - toml_string makes this unreachable; it guards against a future escaping bug
        raise ConfigError(f"voices: the new [[voices]] entry for {voice_id!r} did not round-trip; nothing written")
