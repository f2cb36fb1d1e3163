"""How long F5 speaks a text: the reference's frames per UTF-8 byte times the text's bytes (pure arithmetic)."""

from __future__ import annotations

# Chat is short. Upstream stretches texts under 10 UTF-8 bytes 3.3x (speed 0.3), which makes "哈哈哈" last 2.4 s
# and jumps at 10 bytes. We give every text at least the time of MIN_GEN_BYTES bytes at the voice's own rate
# (0.5-0.7 s for typical voices): "ok", "好" or "666" get room to be pronounced without dragging, and texts of
# 6 bytes or more (two CJK chars, most words) follow the plain rule, continuously.
MIN_GEN_BYTES = 6


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


def ref_text_for_prompt(ref_text: str) -> str:
    """Upstream appends a space to a reference transcript that ends in a 1-byte (ASCII) char."""
    ref_text = ref_text.strip()
    return ref_text + " " if ref_text and utf8_len(ref_text[-1]) == 1 else ref_text


def generated_frames(ref_frames: int, ref_bytes: int, gen_bytes: int, speed: float) -> int:
    """Frames to generate: the reference's frames per UTF-8 byte × text bytes / speed (at least MIN_GEN_BYTES)."""
    if ref_bytes <= 0 or speed <= 0:
        raise ValueError(f"need ref_bytes > 0 and speed > 0, got {ref_bytes}, {speed}")
    return max(1, int(ref_frames / ref_bytes * max(gen_bytes, MIN_GEN_BYTES) / speed))
