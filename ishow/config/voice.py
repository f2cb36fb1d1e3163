"""A configured voice, as the config declares it and every engine receives it (below config and engine both)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VoiceSpec:
    """A configured voice: a reference recording with its transcript (for cloning engines), plus knobs."""

    id: str
    ref_audio: Path | None = None
    ref_text: str = ""
    speed: float = 1.0
    volume: float = 1.0
    espeak: str = "auto"  # espeak-ng voice name for the espeak engine; "auto" picks by the text's language
