"""The narrow control surface between the HTTP layer and the daemon: what a request may ask, nothing more.

``ishow.server`` imports only this (never ``ishow.app``); ``ishow.daemon_controls.DaemonControls`` implements it
over the daemon's parts. Every method runs on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from aiohttp import web

    from ishow.config.schema import Config
    from ishow.errors import IshowError
    from ishow.events import Utterance
    from ishow.policy.compose import Dropped


@dataclass(frozen=True)
class TtsOutcome:
    """``/api/tts``: the whole text's audio (and the engine that made it), or the error that stopped it."""

    audio: npt.NDArray[np.float32] | None
    engine: str
    sample_rate: int
    error: IshowError | None = None


class ControlSurface(Protocol):
    @property
    def config(self) -> Config:
        """The live configuration (swapped whole on reload)."""
        ...

    def check_voice(self, voice: str) -> None:
        """Raise ``UnknownVoiceError`` when ``voice`` is not configured."""
        ...

    def submit(self, user: str, text: str, platform: str = "api", voice: str = "") -> Utterance | Dropped:
        """A message to speak, as if it came from chat: filtered, composed, queued (or dropped with a reason)."""
        ...

    async def control(self, action: str) -> dict[str, object]:
        """Panel buttons: ``pause``, ``resume``, ``skip``, ``clear``; raises ``InputError`` on anything else."""
        ...

    def remove(self, utterance_id: str) -> bool:
        """Drop one waiting utterance; False when no such one waits."""
        ...

    def mute(self, user: str, minutes: float) -> int:
        """Silence a user; returns how many of their waiting messages were dropped."""
        ...

    def unmute(self, user: str) -> bool: ...

    def snapshot(self) -> dict[str, object]:
        """The live queue for the panel: playing, synthesized, being synthesized, queued; mutes; drops."""
        ...

    def health(self) -> dict[str, object]: ...

    def status(self) -> dict[str, object]:
        """``health`` plus the panel's numbers: RTF of the last batch, backlog, voice ids."""
        ...

    def metrics(self) -> bytes:
        """The Prometheus text exposition."""
        ...

    async def tts(self, text: str, voice: str, nfe_step: int | None) -> TtsOutcome:
        """Speak ``text`` whole (chunked like chat) without queueing it; live chat goes to the engine first."""
        ...

    def routes(self) -> list[web.RouteDef]:
        """Routes the daemon's parts serve: websocket input sources, the OBS page, recent audio for OBS."""
        ...
