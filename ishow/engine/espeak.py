"""The ``espeak`` engine: CPU fallback speech through libespeak-ng (``espeakng-loader`` wheel) over ctypes.

It speaks when the F5 weights are missing, and it renders the default reference voices (``make_default_voices``).
libespeak-ng keeps global state (one current voice, one set of parameters, one synth callback), so the library is
initialized once per process and every call into it holds ``_LOCK``.

Voice choice per request: ``VoiceSpec.espeak`` when it is not ``"auto"``; otherwise the text is split into runs by
script (Han → ``cmn``, kana → ``ja``, Hangul → ``ko``, everything else → ``en-us``). Punctuation, digits, spaces and
symbols are neutral: they stay with the run before them (or the first run when they lead). Each run is synthesized
with its voice and the runs are joined with short pauses, so "主播今天玩什么game" reads as Mandarin then English.

Output is not bit-reproducible within one process: libespeak-ng keeps its pitch-flutter position in a C static
variable that no API resets, so repeating a text shifts the audio by a few samples. A fresh process renders the
same sequence of texts byte-identically (``make_default_voices`` relies on that).
"""

from __future__ import annotations

import ctypes
import re
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import soxr
import structlog

from ishow.audio_format import SAMPLE_RATE
from ishow.config.engine import EngineConfig
from ishow.engine.base import Engine, SynthRequest
from ishow.errors import EngineError, InputError, ModelLoadError

log = structlog.get_logger(__name__)

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() when the data is missing
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0
_EE_NOT_FOUND = 2
_RATE_MIN = 80  # espeak-ng clamps below this
_RATE_MAX = 900  # above 450 espeak-ng speeds up through sonic (built into the wheel's library)

#: words per minute at speed 1.0, by espeak voice language; others use ``_DEFAULT_WPM``
BASE_WPM: dict[str, int] = {"cmn": 165, "ja": 165, "ko": 165, "en-us": 175}
_DEFAULT_WPM = 175

AUTO_ZH = "cmn"
AUTO_EN = "en-us"
AUTO_JA = "ja"
AUTO_KO = "ko"

_GAP_S = 0.06  # pause between runs that switch script mid-clause
_CLAUSE_GAP_S = 0.18  # pause after a run that ends with punctuation
_TRIM_THRESHOLD = 10 ** (-50 / 20)  # |x| below -50 dBFS counts as silence when trimming
_TRIM_MARGIN_S = 0.02  # silence kept before the first and after the last audible sample
_CLAUSE_END = frozenset(",.!?;:，。！？；：、…~～")

_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_LOCK = threading.Lock()
_LIBS: dict[str, _Espeak] = {}  # one per library file: dlopen of one path shares its global state


class _EspeakVoice(ctypes.Structure):
    """``espeak_VOICE`` from speak_lib.h (only read, for ``list_voices``)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class EspeakVoiceInfo:
    """One voice in the espeak-ng data: ``name`` and ``identifier`` both work with ``VoiceSpec.espeak``."""

    name: str
    identifier: str
    languages: tuple[str, ...]


class _Espeak:
    """One initialized libespeak-ng. Every method must be called with ``_LOCK`` held."""

    def __init__(self, library_path: str, data_path: str) -> None:
        self.library_path = library_path
        self.data_path = data_path
        try:
            lib = ctypes.CDLL(library_path)
        except OSError as e:
            raise ModelLoadError(f"cannot load libespeak-ng from {library_path!r}: {e}") from e
        try:
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
            lib.espeak_SetSynthCallback.restype = None
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_SetParameter.restype = ctypes.c_int
            lib.espeak_Synth.argtypes = [
                ctypes.c_void_p,  # text
                ctypes.c_size_t,  # size
                ctypes.c_uint,  # position
                ctypes.c_int,  # position_type
                ctypes.c_uint,  # end_position
                ctypes.c_uint,  # flags
                ctypes.c_void_p,  # unique_identifier
                ctypes.c_void_p,  # user_data
            ]
            lib.espeak_Synth.restype = ctypes.c_int
            lib.espeak_Synchronize.argtypes = []
            lib.espeak_Synchronize.restype = ctypes.c_int
            lib.espeak_Info.argtypes = [ctypes.c_void_p]
            lib.espeak_Info.restype = ctypes.c_char_p
            lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
            lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
            self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng ≥ 1.51
            if self._set_seed is not None:
                self._set_seed.argtypes = [ctypes.c_long]
                self._set_seed.restype = ctypes.c_int
        except AttributeError as e:
            raise ModelLoadError(f"{library_path!r} is not a usable libespeak-ng (missing symbol): {e}") from e
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise ModelLoadError(
                f"espeak_Initialize failed (returned {rate}) with data path {data_path!r}; "
                "expected a folder with phontab, phondata and the *_dict files (reinstall espeakng-loader)"
            )
        self.lib = lib
        self.native_rate = int(rate)
        info = lib.espeak_Info(None)
        self.version = info.decode("utf-8", "replace") if info else "unknown"
        self._chunks: list[npt.NDArray[np.int16]] = []
        self._callback = _SynthCallback(self._on_samples)  # kept referenced: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.current_voice: str | None = None

    def _on_samples(self, wav: ctypes._Pointer[ctypes.c_short], n: int, events: int | None) -> int:
        if n > 0 and wav:
            # string_at copies the bytes; np.ctypeslib.as_array would create (and cache forever) a new ctypes
            # array type for every distinct chunk length: a slow leak over a long stream.
            self._chunks.append(np.frombuffer(ctypes.string_at(wav, 2 * n), dtype=np.int16).copy())
        return 0  # 0 = go on

    def set_voice(self, name: str) -> None:
        if name == self.current_voice:
            return
        if not name or "\x00" in name:
            raise InputError(f"espeak voice name {name!r} is empty or contains NUL; expected e.g. 'cmn' or 'en-us'")
        rc = self.lib.espeak_SetVoiceByName(name.encode("utf-8"))
        if rc != _EE_OK:
            self.current_voice = None
            if rc == _EE_NOT_FOUND:
                raise InputError(
                    f"unknown espeak voice {name!r} (not in {self.data_path}); expected an espeak-ng voice name or "
                    "identifier such as 'cmn', 'en-us', 'en' (British), 'ja', 'ko', "
                    "optionally with a variant ('en-us+f3')"
                )
            raise InputError(f"espeak_SetVoiceByName({name!r}) failed with error code {rc}")
        self.current_voice = name

    def synth(self, text: str, wpm: int, seed: int = 0) -> npt.NDArray[np.int16]:
        """Synthesize ``text`` with the current voice; PCM16 ``[T]`` at ``native_rate``."""
        self.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        if self._set_seed is not None:  # noise sources (klatt variants); pitch flutter state is not resettable
            self._set_seed(seed & 0x7FFFFFFF)
        data = text.encode("utf-8") + b"\x00"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        rc = self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        rc_sync = self.lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        if rc != _EE_OK or rc_sync != _EE_OK:
            raise EngineError(f"espeak_Synth failed (codes {rc}/{rc_sync}) for text {text[:40]!r}")
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks)

    def list_voices(self) -> list[EspeakVoiceInfo]:
        voices = self.lib.espeak_ListVoices(None)
        out: list[EspeakVoiceInfo] = []
        i = 0
        while voices and voices[i]:
            v = voices[i].contents
            out.append(
                EspeakVoiceInfo(
                    name=(v.name or b"").decode("utf-8", "replace"),
                    identifier=(v.identifier or b"").decode("utf-8", "replace"),
                    languages=_parse_languages(v.languages),
                )
            )
            i += 1
        return out


def _parse_languages(ptr: int | None) -> tuple[str, ...]:
    """``espeak_VOICE.languages``: repeated (priority byte, NUL-terminated name), ended by a zero byte."""
    if not ptr:
        return ()
    langs: list[str] = []
    off = 0
    for _ in range(64):  # bounded: a voice lists a handful of languages
        if ctypes.string_at(ptr + off, 1) == b"\x00":
            break
        name = ctypes.string_at(ptr + off + 1)
        langs.append(name.decode("utf-8", "replace"))
        off += 2 + len(name)
    return tuple(langs)


def _open(library_path: str | None, data_path: str | None) -> _Espeak:
    """The process-wide libespeak-ng for these paths (initialized on first use). Call with ``_LOCK`` held."""
    if library_path is None or data_path is None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise ModelLoadError(
                "the espeak engine needs the 'espeakng-loader' package (pip install espeakng-loader)"
            ) from e
        try:
            library_path = library_path or espeakng_loader.get_library_path()
            data_path = data_path or espeakng_loader.get_data_path()
        except RuntimeError as e:  # get_data_path raises RuntimeError when the data folder is missing
            raise ModelLoadError(f"espeakng-loader is installed without its data: {e}") from e
    lib_key = str(Path(library_path).resolve())
    es = _LIBS.get(lib_key)
    if es is None:
        es = _LIBS[lib_key] = _Espeak(str(library_path), str(data_path))
        log.info("espeak_loaded", library=es.library_path, data=es.data_path, version=es.version)
    elif Path(es.data_path).resolve() != Path(data_path).resolve():
        raise ModelLoadError(
            f"libespeak-ng at {library_path!r} is already initialized with data {es.data_path!r}; "
            f"it cannot also use {str(data_path)!r} in the same process"
        )
    return es


# --------------------------------------------------------------------------------------------- text handling


def sanitize(text: str) -> str:
    """Drop what libespeak-ng must never see: control characters become spaces, format/surrogate/private/unassigned
    code points are removed, whitespace runs collapse."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cf", "Cs", "Co", "Cn"):
            continue
        else:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def script_voice(ch: str) -> str | None:
    """The auto voice a character asks for, or None for neutral characters (punctuation, digits, symbols...)."""
    cp = ord(ch)
    if (
        0x4E00 <= cp <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= cp <= 0x4DBF  # extension A
        or 0x20000 <= cp <= 0x3134F  # extensions B–G
        or 0xF900 <= cp <= 0xFAFF  # compatibility ideographs
        or 0x3100 <= cp <= 0x312F  # bopomofo
        or cp == 0x3007  # 〇
    ):
        return AUTO_ZH
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9D:
        return AUTO_JA
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return AUTO_KO
    if unicodedata.category(ch).startswith("L"):
        return AUTO_EN
    return None


def split_runs(text: str, neutral_voice: str = AUTO_EN) -> list[tuple[str, str]]:
    """Split ``text`` into ``(voice, run)`` by script; neutral characters stay with the run before them.

    >>> split_runs("主播今天玩什么game")
    [('cmn', '主播今天玩什么'), ('en-us', 'game')]
    """
    runs: list[tuple[str, list[str]]] = []
    leading: list[str] = []
    for ch in text:
        voice = script_voice(ch)
        if voice is None:
            (runs[-1][1] if runs else leading).append(ch)
        elif runs and runs[-1][0] == voice:
            runs[-1][1].append(ch)
        else:
            runs.append((voice, [*leading, ch] if not runs else [ch]))
            leading = []
    if not runs:
        return [(neutral_voice, text)] if text else []
    return [(voice, "".join(chars)) for voice, chars in runs]


def _trim(x: npt.NDArray[np.int16], rate: int, margin_s: float) -> npt.NDArray[np.int16]:
    """Cut leading/trailing silence, keeping ``margin_s`` either side. ``[T] → [T']``."""
    loud = np.flatnonzero(np.abs(x.astype(np.int32)) > int(_TRIM_THRESHOLD * 32768))
    if loud.size == 0:
        return x[:0]
    margin = int(margin_s * rate)
    return x[max(0, int(loud[0]) - margin) : int(loud[-1]) + 1 + margin]


# --------------------------------------------------------------------------------------------- the engine


class EspeakEngine(Engine):
    """CPU speech with libespeak-ng: intelligible, robotic, instant. Output: float32 mono at 24 kHz."""

    kind: ClassVar[str] = "espeak"
    sample_rate: int = SAMPLE_RATE

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        library_path: str | None = None,
        data_path: str | None = None,
        neutral_voice: str = AUTO_EN,
    ) -> None:
        """``library_path``/``data_path`` default to the ``espeakng-loader`` wheel's; ``neutral_voice`` speaks
        texts with no letters at all (e.g. "666") under ``espeak = "auto"``."""
        self.config = config or EngineConfig(kind="espeak")
        self._library_path = library_path
        self._data_path = data_path
        self.neutral_voice = neutral_voice
        self._es: _Espeak | None = None

    def load(self) -> None:
        with _LOCK:
            es = _open(self._library_path, self._data_path)
            for voice in {AUTO_ZH, AUTO_EN, self.neutral_voice}:
                try:
                    es.set_voice(voice)
                except InputError as e:
                    raise ModelLoadError(f"espeak data at {es.data_path!r} lacks a required voice: {e}") from e
        self._es = es

    def _require(self) -> _Espeak:
        if self._es is None:
            raise ModelLoadError("EspeakEngine.load() must be called before synthesize()")
        return self._es

    def synthesize(self, requests: Sequence[SynthRequest]) -> list[npt.NDArray[np.float32]]:
        return [self.synthesize_one(r) for r in requests]

    def synthesize_one(self, request: SynthRequest) -> npt.NDArray[np.float32]:
        """One request → float32 ``[T]`` at 24 kHz (may be empty when nothing in the text is pronounceable)."""
        es = self._require()
        text = sanitize(request.text)
        if not text:
            raise InputError(
                "text to speak is empty after removing whitespace, control and format characters: "
                f"{request.text[:40]!r}"
            )
        speed = request.speed * request.voice.speed
        if not np.isfinite(speed) or speed <= 0:
            raise InputError(
                f"speed must be a positive number; got request.speed={request.speed} × "
                f"voice.speed={request.voice.speed}"
            )
        fixed = request.voice.espeak.strip()
        runs = [(fixed, text)] if fixed and fixed != "auto" else split_runs(text, self.neutral_voice)
        pieces: list[npt.NDArray[np.int16]] = []
        with _LOCK:
            rate = es.native_rate
            for i, (voice, run) in enumerate(runs):
                es.set_voice(voice)
                base = BASE_WPM.get(voice.split("+", 1)[0].lower(), _DEFAULT_WPM)
                wpm = round(min(max(base * speed, _RATE_MIN), _RATE_MAX))
                pcm = _trim(es.synth(run, wpm, request.seed), rate, _TRIM_MARGIN_S)
                if pcm.size == 0:
                    continue
                if pieces and i > 0:
                    prev_end = runs[i - 1][1].rstrip()[-1:]
                    gap = _CLAUSE_GAP_S if prev_end in _CLAUSE_END else _GAP_S
                    pieces.append(np.zeros(int(gap / speed * rate), dtype=np.int16))
                pieces.append(pcm)
        if not pieces:
            log.debug("espeak_nothing_spoken", text=text[:40])
            return np.zeros(0, dtype=np.float32)
        pcm16 = np.concatenate(pieces)
        audio = pcm16.astype(np.float32) / np.float32(32768.0)
        if rate != self.sample_rate:
            audio = soxr.resample(audio, rate, self.sample_rate, quality="HQ")
        return np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)

    def list_voices(self) -> list[EspeakVoiceInfo]:
        """Every voice in the espeak-ng data folder."""
        es = self._require()
        with _LOCK:
            voices = es.list_voices()
            es.current_voice = None  # espeak_ListVoices may reset the selection
        return voices

    def describe(self) -> dict[str, object]:
        info: dict[str, object] = {"kind": self.kind, "sample_rate": self.sample_rate, "device": "cpu"}
        if self._es is not None:
            info.update(library=self._es.library_path, data=self._es.data_path, version=self._es.version)
        return info
