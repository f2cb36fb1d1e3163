"""What the OBS websocket output asks OBS to do, as pure data: commands, captions, volume ramps.

The timeline (``ishow.outputs.obs_websocket``) turns utterance start/end into ``Command`` values; the connection
turns each into obs-websocket requests. Everything here is synchronous and clock-free.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from ishow.config import ObsWebsocketOutputConfig
from ishow.events import Utterance

MEDIA_RESTART = "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_RESTART"
MEDIA_STOP = "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_STOP"
SILENT_DB = -100.0  # OBS reports -inf dB (a muted fader) as a very low number or null: nothing to duck


@dataclass(frozen=True)
class Caption:
    text: str  # "" clears it


@dataclass(frozen=True)
class Duck:
    on: bool


@dataclass(frozen=True)
class Media:
    utterance_id: str
    play: bool  # False: stop it (skip)


@dataclass(frozen=True)
class SceneItem:
    visible: bool


Command = Caption | Duck | Media | SceneItem


def caption_text(template: str, utterance: Utterance, width: int, max_lines: int) -> str:
    """The caption for ``utterance``: the template filled in, wrapped at ``width``, at most ``max_lines`` lines."""
    filled = template.format(
        user=utterance.user,
        text=utterance.text,
        raw=utterance.raw or utterance.text,
        voice=utterance.voice,
        platform=utterance.platform,
    )
    lines: list[str] = []
    for paragraph in filled.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, width=width, break_long_words=True, break_on_hyphens=False) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        lines[-1] = (last[: width - 1] if len(last) >= width else last) + "…"
    return "\n".join(lines)


def ramp_levels(start_db: float, end_db: float, steps: int) -> list[float]:
    """``steps`` volume levels from just after ``start_db`` to exactly ``end_db`` (linear in dB)."""
    steps = max(1, steps)
    return [round(start_db + (end_db - start_db) * (i / steps), 2) for i in range(1, steps + 1)]


def ramp_steps(ramp_s: float) -> int:
    """How many SetInputVolume steps a ramp of ``ramp_s`` seconds takes (one per ~50 ms, 1–6)."""
    return max(1, min(6, round(ramp_s / 0.05)))


def media_url(base: str, utterance_id: str, token: str) -> str:
    url = f"{base.rstrip('/')}/audio/{utterance_id}.wav"
    return f"{url}?token={token}" if token else url


def missing_fix(cfg: ObsWebsocketOutputConfig, name: str) -> str:
    """What a streamer reads when ``name`` (an input, a scene item) is not in OBS: the problem and the fix."""
    if name == cfg.caption_input:
        return f"input {name!r} does not exist in OBS; create a Text (GDI+ / FreeType 2) source with that name"
    if name == cfg.media_input:
        return f"input {name!r} does not exist in OBS; create a Media Source with that name (untick Local File)"
    if name == cfg.scene_item:
        where = f"scene {cfg.scene!r}" if cfg.scene else "the program scene"
        return f"source {name!r} is not in {where}; add it there, or set outputs.obs_websocket.scene"
    if name == "program scene":
        return "OBS reported no program scene; set outputs.obs_websocket.scene"
    return (
        f"input {name!r} does not exist in OBS; set outputs.obs_websocket.duck_inputs to a source name "
        "from OBS's Audio Mixer"
    )
