"""The OBS page's wire frames, pure: an utterance as header + PCM chunks + end, and the page's reports trimmed.

``ObsHub`` (``ishow.outputs.obs``) encodes each utterance once here and shares the frames among its clients.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from ishow.audio_format import SAMPLE_RATE
from ishow.boundary import valid_text
from ishow.events import Audio

log = structlog.get_logger("ishow.outputs.obs")

WIRE_FORMAT = "pcm_s16le"
MAX_REPORT_FIELDS = 32
MAX_REPORT_STR = 200


def encode_utterance(audio: Audio, *, seq: int, chunk_bytes: int) -> tuple[str, tuple[str | bytes, ...]]:
    """Header, PCM chunks, end — built once per utterance (PCM conversion is ~1 ms per 10 s of audio).
    A streamed utterance: the header (with ``"stream": true`` and no sizes) and the first part's chunks; later
    parts are more chunks; the final part ends with ``end``. The id is returned (non-empty) only with the part that
    completes it."""
    utt = audio.utterance
    if audio.sample_rate != SAMPLE_RATE:
        log.warning("obs: unexpected sample rate; sent as is", id=utt.id, sample_rate=audio.sample_rate)
    pcm = audio.pcm16()
    step = chunk_bytes
    view = memoryview(pcm)
    chunks = [bytes(view[i : i + step]) for i in range(0, len(pcm), step)]
    end = (json.dumps({"type": "end", "id": utt.id}),) if audio.final else ()
    item_id = utt.id if audio.final else ""
    if audio.part > 0:
        return item_id, (*chunks, *end)
    header: dict[str, object] = {
        "type": "utterance",
        "id": valid_text(utt.id),
        "text": valid_text(utt.text),
        "user": valid_text(utt.user),
        "voice": utt.voice,
        "sample_rate": audio.sample_rate,
        "format": WIRE_FORMAT,
        "raw": valid_text(utt.raw),
        "kind": utt.kind.value,
        "seq": seq,
        "samples": len(pcm) // 2,
        "bytes": len(pcm),
        "duration": round(audio.duration, 3),
    }
    if not audio.final:  # streamed: the size is known only at the end
        for key in ("samples", "bytes", "duration"):
            del header[key]
        header["stream"] = True
    return item_id, (json.dumps(header, ensure_ascii=False), *chunks, *end)


def scalar_fields(data: dict[str, Any]) -> dict[str, object]:
    """Keep at most a few short scalar fields of a page report (it is echoed in /healthz)."""
    out: dict[str, object] = {}
    for key, value in data.items():
        if len(out) >= MAX_REPORT_FIELDS:
            break
        if not isinstance(key, str) or len(key) > 40:
            continue
        if isinstance(value, str):
            out[valid_text(key)] = valid_text(value[:MAX_REPORT_STR])
        elif value is None or isinstance(value, (bool, int, float)):
            out[key] = value
    return out
