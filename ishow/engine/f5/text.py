"""F5-TTS text frontend: the Emilia_ZH_EN pinyin vocab and text → tokens → ids.

Behaviour follows upstream ``f5_tts.model.utils.convert_char_to_pinyin`` (f5-tts 1.1.22, ``polyphone=True``) for
one string; the code is ours:

* ``;`` → ``,`` and curly quotes → straight quotes first;
* the text is segmented with jieba (``rjieba.cut``, HMM on);
* an all-ASCII segment is kept char by char, preceded by ``" "`` when it is longer than one char and the previous
  token is not one of ``" "``, ``":"``, ``"'"``, ``'"'``;
* a segment of 3-byte UTF-8 chars gets pypinyin ``TONE3`` readings with tone sandhi, computed on the whole
  segment (context picks polyphone readings); every char in U+3100..U+9FFF is preceded by ``" "``; chars without a
  reading (CJK punctuation, bopomofo...) stay as they are;
* any other segment goes char by char: code points < 256 kept, U+3100..U+9FFF → ``" "`` + its own pinyin,
  anything else (emoji, other scripts) kept as is.

Unknown tokens map to id 0 (the space), as upstream does. Deviations from upstream, all where upstream would raise:
lone surrogates become ``"?"``; a segment whose pypinyin readings do not line up one-to-one with its chars is
realigned instead of raising ``IndexError``.

jieba's dictionary (~0.15 s) and pypinyin's tables load on first use, not at import.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

from ishow.errors import ModelLoadError, WeightsMissingError

VOCAB_SIZE = 2545
UNKNOWN_ID = 0

_TRANSLATE = str.maketrans({";": ",", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_NO_SPACE_AFTER = " :'\""  # upstream tests ``prev in " :'\""`` (a substring test: tokens are never multi-char here)


def load_vocab(path: Path | None = None) -> dict[str, int]:
    """Read a F5 ``vocab.txt`` (one token per ``\\n``-terminated line; line ``i`` is id ``i``) into ``{token: id}``.

    ``None`` reads the vocab packaged with ishow (identical to F5TTS_v1_Base/vocab.txt). Index 0 must be ``" "``
    (F5 maps unknown tokens to 0). Raises ``WeightsMissingError`` for a missing file and ``ModelLoadError`` for an
    unreadable, non-UTF-8 or malformed one.
    """
    if path is None:
        where = "ishow/engine/f5/vocab.txt (packaged)"
        try:
            data = importlib.resources.files("ishow.engine.f5").joinpath("vocab.txt").read_bytes()
        except OSError as e:
            raise ModelLoadError(f"packaged vocab {where} is unreadable: {e}") from e
    else:
        where = str(path)
        if not Path(path).exists():
            raise WeightsMissingError(f"vocab file {where!r} does not exist; run `ishow models fetch` to download it")
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ModelLoadError(f"vocab file {where!r} is unreadable: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelLoadError(f"vocab file {where!r} is not UTF-8 (byte {e.start}): {e.reason}") from e
    # Upstream reads in text mode (universal newlines) and drops the last char of every line.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ModelLoadError(f"vocab file {where!r} is empty; expected one token per line")
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        vocab[token] = i  # a duplicate keeps its last index, as upstream's dict does
    if vocab.get(" ") != UNKNOWN_ID:
        raise ModelLoadError(
            f"vocab file {where!r} line 1 is {lines[0]!r}; expected a single space (id 0 is the unknown/space token)"
        )
    return vocab


def text_byte_len(text: str) -> int:
    """UTF-8 byte length of ``text`` (lone surrogates count as one byte), the length the duration rule uses."""
    return len(text.encode("utf-8", "replace"))


def _is_chinese(c: str) -> bool:
    return "\u3100" <= c <= "\u9fff"


@functools.cache
def _segmenter() -> Callable[[str], list[str]]:
    import rjieba

    return cast(Callable[[str], list[str]], rjieba.cut)


@functools.cache
def _pinyin_fn() -> Callable[[str], list[str]]:
    from pypinyin import Style, lazy_pinyin

    def pinyin(s: str) -> list[str]:
        return [str(p) for p in lazy_pinyin(s, style=Style.TONE3, tone_sandhi=True)]

    return pinyin


READINGS_CACHE = 32768  # distinct segments (jieba words) whose readings are kept: chat repeats its words


@functools.lru_cache(maxsize=READINGS_CACHE)
def _segment_readings(seg: str) -> tuple[str, ...]:
    """:func:`_readings` of ``seg``, remembered (a pure function of the segment; bounded LRU). Every message is
    tokenized with its voice's reference text in front, and chat repeats its words, so most segments are hits:
    ~1.1 ms → ~0.1 ms per Chinese message on this project's CPU machine."""
    return tuple(_readings(seg))


def _readings(seg: str) -> list[str]:
    """One token per char of ``seg``: its pinyin, or the char itself when pypinyin has no reading for it.

    pypinyin returns a run of chars without readings as ONE item; upstream indexes readings by char position, which
    only works when there is no such run. Here such runs are split back into chars.
    """
    readings = _pinyin_fn()(seg)
    if len(readings) == len(seg):
        return readings
    out: list[str] = []
    pos = 0
    for item in readings:
        if item and not item.isascii() and seg.startswith(item, pos):
            out.extend(item)  # passthrough run of chars without a reading
            pos += len(item)
        else:
            out.append(item)
            pos += 1
    if pos != len(seg) or len(out) != len(seg):  # cannot realign: read each char on its own
        out = [(_pinyin_fn()(c) or [c])[0] for c in seg]
    return out


def text_to_tokens(text: str) -> list[str]:
    """Turn one string into F5 tokens (pinyin syllables with tone digits, single chars, spaces).

    >>> text_to_tokens("你好 world")  # doctest: +SKIP
    [' ', 'ni2', ' ', 'hao3', ' ', 'w', 'o', 'r', 'l', 'd']
    """
    text = text.encode("utf-8", "replace").decode("utf-8").translate(_TRANSLATE)
    if not text:
        return []
    tokens: list[str] = []
    for seg in _segmenter()(text):
        n_bytes = len(seg.encode("utf-8"))
        if n_bytes == len(seg):  # all ASCII
            if tokens and n_bytes > 1 and tokens[-1] not in _NO_SPACE_AFTER:
                tokens.append(" ")
            tokens.extend(seg)
        elif n_bytes == 3 * len(seg):  # all 3-byte chars: CJK (with context-aware readings), CJK punctuation...
            for c, reading in zip(seg, _segment_readings(seg), strict=True):
                if _is_chinese(c):
                    tokens.append(" ")
                tokens.append(reading)
        else:  # mixed
            for c in seg:
                if ord(c) < 256:
                    tokens.append(c)
                elif _is_chinese(c):
                    tokens.append(" ")
                    tokens.extend(_segment_readings(c))
                else:
                    tokens.append(c)
    return tokens


def tokens_to_ids(tokens: Iterable[str], vocab: dict[str, int]) -> list[int]:
    """Map tokens to vocab ids; unknown tokens map to 0 (the space), never raising."""
    return [vocab.get(t, UNKNOWN_ID) for t in tokens]
