"""The audio every part speaks: mono float32 at 24 kHz, made from mel frames of 256 samples.

Every engine produces it, the player and every output consume it, and the OBS and service wire formats name it.
Defined here once; the F5 model and its Vocos vocoder are built for exactly these values.
"""

from __future__ import annotations

SAMPLE_RATE = 24_000  # Hz
HOP = 256  # samples per mel frame (F5-TTS / Vocos hop length)
