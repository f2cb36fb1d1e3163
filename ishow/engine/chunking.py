"""Long text → sentence-sized chunks an engine can speak, and chunk waveforms → one crossfaded waveform.

Pure functions. A text is cut at sentence ends first (。！？!?；; …, "." before a space), then at clause marks
(，,、：:—), then between words (spaces), then — for scripts without spaces — between characters. Every chunk's
length (measured in UTF-8 bytes, the unit the F5 duration rule uses) stays within ``max_bytes``; concatenated the
chunks give back the text (only whitespace at the cut points is dropped).

Streaming: when a text needs more than one chunk, its first chunk may be cut shorter on purpose (``first_bytes``)
so the first audio of a long message is ready as soon as that short chunk is synthesized.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_SENTENCE = re.compile(r"(?:[^。！？!?；;…\n.]|\.(?=\S))*(?:[。！？!?；;…\n]+|\.+(?=\s|$)|$)[\"'”’」』）)\]]*\s*")
_CLAUSE = re.compile(r"[^，,、：:—–]*[，,、：:—–]*\s*")
_WORD = re.compile(r"\S*\s*")
_SPEAKABLE = re.compile(r"\w")

CROSSFADE_S = 0.04  # overlap between two chunks' audio (a short equal-power crossfade)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


@dataclass(frozen=True)
class LengthBudget:
    """How an engine measures text for one voice: speech rate and the most it takes in one request."""

    bytes_per_second: float  # UTF-8 bytes of text per second of speech
    max_bytes: int  # the most UTF-8 bytes one request may carry


@dataclass(frozen=True)
class ChunkPlan:
    """Chunk targets for a voice: ``target`` bytes per chunk (≤ the engine's max), ``first`` for the first one."""

    target: int
    first: int

    @classmethod
    def for_budget(cls, budget: LengthBudget, chunk_s: float = 12.0, first_s: float = 3.0) -> ChunkPlan:
        target = max(1, min(budget.max_bytes, int(budget.bytes_per_second * chunk_s)))
        first = max(1, min(target, int(budget.bytes_per_second * first_s)))
        return cls(target=target, first=first)


_BOUNDARIES = (_SENTENCE, _CLAUSE, _WORD)  # strongest first


def _pieces(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(0) for m in pattern.finditer(text) if m.group(0)]


def _atoms(text: str, limit: int, level: int = 0) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` bytes at the strongest boundaries that allow it: sentences,
    then clauses, then words, then characters."""
    if level == len(_BOUNDARIES):
        return _pack(list(text), limit)
    out: list[str] = []
    for piece in _pieces(_BOUNDARIES[level], text):
        out.extend([piece] if utf8_len(piece) <= limit else _atoms(piece, limit, level + 1))
    return out


def _pack(atoms: list[str], limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for atom in atoms:
        if current and utf8_len(current + atom) > limit:
            chunks.append(current)
            current = ""
        current += atom
    if current:
        chunks.append(current)
    return chunks


def split_text(text: str, max_bytes: int, first_bytes: int | None = None) -> list[str]:
    """Chunks of ``text``, each at most ``max_bytes`` UTF-8 bytes (stripped, non-empty, each with something to
    say); the first at most ``first_bytes`` when the text needs more than one chunk."""
    if max_bytes < 4:
        raise ValueError(f"max_bytes must be ≥ 4 (one character), got {max_bytes}")
    text = text.strip()
    if not text:
        return []
    if utf8_len(text) <= max_bytes:
        return [text]
    raw: list[str] = []
    if first_bytes is not None and first_bytes < max_bytes:
        first = _pack(_atoms(text, first_bytes), first_bytes)[0]
        raw.append(first)
        text = text[len(first) :]
    raw += _pack(_atoms(text, max_bytes), max_bytes)
    chunks: list[str] = []
    for piece in (c.strip() for c in raw):
        if not piece:
            continue
        if chunks and not _SPEAKABLE.search(piece):
            if utf8_len(chunks[-1] + piece) <= max_bytes:
                chunks[-1] += piece  # trailing punctuation only: keep it with the words before it
            # else: a run of punctuation longer than a chunk has nothing to say; it is left out
        elif chunks and not _SPEAKABLE.search(chunks[-1]) and utf8_len(chunks[-1] + piece) <= max_bytes:
            chunks[-1] += piece
        else:
            chunks.append(piece)
    return chunks


Waveform = npt.NDArray[np.float32]


def crossfade_join(waves: list[Waveform], sample_rate: int, fade_s: float = CROSSFADE_S) -> Waveform:
    """One waveform from consecutive chunk waveforms, each seam overlapped by an equal-power crossfade of
    ``fade_s`` (shorter when a chunk is shorter). Length: the sum of the lengths minus the overlaps."""
    parts = [np.asarray(w, dtype=np.float32) for w in waves if len(w)]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    out = parts[0]
    for nxt in parts[1:]:
        n = min(int(fade_s * sample_rate), len(out), len(nxt))
        if n <= 0:
            out = np.concatenate([out, nxt])
            continue
        t = np.linspace(0.0, np.pi / 2, n, dtype=np.float32)
        seam = out[-n:] * np.cos(t) + nxt[:n] * np.sin(t)
        out = np.concatenate([out[:-n], seam, nxt[n:]]).astype(np.float32)
    return out
