"""ishow: a live-stream chat/danmaku text-to-speech daemon (F5-TTS voice cloning).

Importing ishow is cheap and offline: no downloads, device probing or environment edits here.
"""

__version__ = "0.1.0"
