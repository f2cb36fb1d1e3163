"""The wire format between daemons (``engine.kind = "remote"``) and the synthesis service (``ishow serve``).

Sans-I/O: bytes and dicts in, frozen dataclasses out; no ray, no aiohttp. Both sides import only this.

``POST /synthesize`` (JSON, ``Authorization: Bearer <token>`` when the service has one)::

    {"client": "chan-a", "items": [{"text": "...", "voice": "<sha256>", "nfe": 7, "speed": 1.0, "seed": 0}],
     "voices": {"<sha256>": {"ref_text": "...", "suffix": ".wav", "audio": "<base64 of the file>"}}}

``voices`` is sent only after the service answered ``409 {"unknown_voices": [...]}``: a voice is a content hash
(the reference file's bytes and its transcript), registered once per replica; the daemon re-sends the clip only
when a replica (a new one, a restarted one) does not know it.

``200`` answers ``application/x-ishow-pcm``: a 4-byte big-endian length, that many bytes of JSON
``{"replica": ..., "batch": n, "sample_rate": 24000, "items": [{"samples": N} | {"error": "...", "kind": "input"}]}``,
then each item's float32 little-endian PCM, concatenated in order (exactly the engine's output: no requantizing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ishow.errors import ProtocolError

PCM_CONTENT_TYPE = "application/x-ishow-pcm"
CLIENT_HEADER = "X-Ishow-Client"
MAX_ITEMS = 64  # rows per request (a daemon batch is at most batch.max_items ≤ 64)
MAX_TEXT_CHARS = 2000
MAX_VOICES = 16  # clips per request
MAX_CLIP_BYTES = 8 * 2**20
MAX_BODY_BYTES = MAX_VOICES * MAX_CLIP_BYTES // 2
MAX_CLIENT_CHARS = 64
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")

Waveform = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Item:
    """One row to synthesize: ``seed`` and ``speed`` are final (the daemon folded in its engine/voice settings)."""

    text: str
    voice: str  # sha256 hex of the voice clip + transcript
    nfe: int = 7
    speed: float = 1.0
    seed: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, "voice": self.voice, "nfe": self.nfe, "speed": self.speed, "seed": self.seed}


@dataclass(frozen=True)
class VoiceClip:
    """A reference recording as the daemon has it on disk, and its transcript."""

    ref_text: str
    audio: bytes
    suffix: str = ".wav"

    @property
    def digest(self) -> str:
        return voice_hash(self.audio, self.ref_text)

    def as_json(self) -> dict[str, str]:
        return {"ref_text": self.ref_text, "suffix": self.suffix, "audio": base64.b64encode(self.audio).decode()}


@dataclass(frozen=True)
class SynthCall:
    client: str
    items: tuple[Item, ...]
    voices: Mapping[str, VoiceClip]


@dataclass(frozen=True)
class ItemResult:
    audio: Waveform | None
    error: str = ""
    kind: str = ""  # "input" (bad row: the daemon isolates it) or "voice" (the clip cannot be used)


@dataclass(frozen=True)
class SynthReply:
    replica: str
    batch: int
    sample_rate: int
    items: tuple[ItemResult, ...]


def voice_hash(audio: bytes, ref_text: str) -> str:
    """The identity of a voice: sha256 over the reference file's bytes and its transcript."""
    h = hashlib.sha256()
    h.update(len(audio).to_bytes(8, "big"))
    h.update(audio)
    h.update(ref_text.strip().encode("utf-8"))
    return h.hexdigest()


def encode_call(client: str, items: Sequence[Item], voices: Mapping[str, VoiceClip] | None = None) -> bytes:
    body: dict[str, Any] = {"client": client, "items": [i.as_json() for i in items]}
    if voices:
        body["voices"] = {k: v.as_json() for k, v in voices.items()}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise ProtocolError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _is_hash(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def decode_call(body: bytes) -> SynthCall:
    """Parse and bound a ``/synthesize`` body; raises ``ProtocolError`` naming what was wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"body of {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ProtocolError(f"body: expected a JSON object, got {type(data).__name__}")
    client = data.get("client", "")
    if not isinstance(client, str) or len(client) > MAX_CLIENT_CHARS or not client.isprintable():
        raise ProtocolError(f"client: expected printable text of at most {MAX_CLIENT_CHARS} chars")
    raw_items = _field(data, "items", list, "body")
    if not 1 <= len(raw_items) <= MAX_ITEMS:
        raise ProtocolError(f"items: expected 1–{MAX_ITEMS} rows, got {len(raw_items)}")
    items = tuple(_item(r, f"items[{i}]") for i, r in enumerate(raw_items))
    raw_voices = data.get("voices", {})
    if not isinstance(raw_voices, dict) or len(raw_voices) > MAX_VOICES:
        raise ProtocolError(f"voices: expected an object of at most {MAX_VOICES} clips")
    voices = {k: _clip(k, v) for k, v in raw_voices.items()}
    return SynthCall(client=client, items=items, voices=voices)


def _item(raw: Any, where: str) -> Item:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(raw).__name__}")
    text = _field(raw, "text", str, where)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(f"{where}.text: {len(text)} chars; at most {MAX_TEXT_CHARS}")
    voice = _field(raw, "voice", str, where)
    if not _is_hash(voice):
        raise ProtocolError(f"{where}.voice: expected a sha256 hex digest, got {voice[:80]!r}")
    nfe = _field(raw, "nfe", int, where)
    if not 1 <= nfe <= 64:
        raise ProtocolError(f"{where}.nfe: expected 1–64, got {nfe}")
    speed = float(_field(raw, "speed", (int, float), where))
    if not (math.isfinite(speed) and 0.1 <= speed <= 10):
        raise ProtocolError(f"{where}.speed: expected 0.1–10, got {speed}")
    seed = _field(raw, "seed", int, where)
    if not 0 <= seed < 2**63:
        raise ProtocolError(f"{where}.seed: expected 0 ≤ seed < 2**63, got {seed}")
    return Item(text=text, voice=voice, nfe=nfe, speed=speed, seed=seed)


def _clip(digest: str, raw: Any) -> VoiceClip:
    where = f"voices[{digest[:16]!r}]"
    if not _is_hash(digest) or not isinstance(raw, dict):
        raise ProtocolError(f"{where}: expected a sha256 hex key and an object")
    ref_text = _field(raw, "ref_text", str, where)
    suffix = raw.get("suffix", ".wav")
    if suffix not in AUDIO_SUFFIXES:
        raise ProtocolError(f"{where}.suffix: expected one of {', '.join(AUDIO_SUFFIXES)}, got {str(suffix)[:20]!r}")
    try:
        audio = base64.b64decode(_field(raw, "audio", str, where), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(f"{where}.audio: not base64: {e}") from e
    if len(audio) > MAX_CLIP_BYTES:
        raise ProtocolError(f"{where}.audio: {len(audio)} bytes; at most {MAX_CLIP_BYTES}")
    clip = VoiceClip(ref_text=ref_text, audio=audio, suffix=suffix)
    if clip.digest != digest:
        raise ProtocolError(f"{where}: the clip's content hash is {clip.digest[:16]}…, not the key it was sent under")
    return clip


def encode_reply(reply: SynthReply) -> bytes:
    meta: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for r in reply.items:
        if r.audio is None:
            meta.append({"error": r.error, "kind": r.kind or "input"})
        else:
            pcm = np.ascontiguousarray(r.audio, dtype="<f4")
            meta.append({"samples": int(pcm.shape[0])})
            chunks.append(pcm.tobytes())
    head = json.dumps(
        {"replica": reply.replica, "batch": reply.batch, "sample_rate": reply.sample_rate, "items": meta}
    ).encode("utf-8")
    return struct.pack(">I", len(head)) + head + b"".join(chunks)


def decode_reply(body: bytes, expected_items: int) -> SynthReply:
    """Parse a ``200`` body; raises ``ProtocolError`` when it does not hold ``expected_items`` results."""
    if len(body) < 4:
        raise ProtocolError(f"reply of {len(body)} bytes; expected a 4-byte header length first")
    (n,) = struct.unpack(">I", body[:4])
    if n > len(body) - 4 or n > 1 << 20:
        raise ProtocolError(f"reply header length {n} exceeds the body ({len(body)} bytes)")
    try:
        head = json.loads(body[4 : 4 + n])
        metas = list(head["items"])
        replica, batch, rate = str(head["replica"]), int(head["batch"]), int(head["sample_rate"])
    except (ValueError, KeyError, TypeError) as e:
        raise ProtocolError(f"reply header is not the expected JSON: {e}") from e
    if len(metas) != expected_items:
        raise ProtocolError(f"reply has {len(metas)} items; expected {expected_items}")
    pos = 4 + n
    out: list[ItemResult] = []
    for i, m in enumerate(metas):
        if not isinstance(m, dict):
            raise ProtocolError(f"reply items[{i}]: expected an object")
        if "samples" in m:
            size = int(m["samples"]) * 4
            if size < 0 or pos + size > len(body):
                raise ProtocolError(f"reply items[{i}]: {m['samples']} samples run past the body")
            out.append(ItemResult(np.frombuffer(body[pos : pos + size], dtype="<f4").astype(np.float32)))
            pos += size
        else:
            out.append(ItemResult(None, str(m.get("error", "unknown error")), str(m.get("kind", "input"))))
    if pos != len(body):
        raise ProtocolError(f"reply has {len(body) - pos} bytes after the last item's audio")
    return SynthReply(replica=replica, batch=batch, sample_rate=rate, items=tuple(out))
