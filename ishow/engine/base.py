"""The engine interface every speech engine implements.

An engine is owned by exactly one thread (the worker in ``ishow.engine.worker``); none of its methods is
called from the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from ishow.audio_format import SAMPLE_RATE
from ishow.config.voice import VoiceSpec
from ishow.engine.chunking import LengthBudget
from ishow.errors import VoiceError

if TYPE_CHECKING:
    from ishow.engine.accel.warmer import WarmupTask

#: an engine without its own length rule: about 14 UTF-8 bytes of text per second of speech, 2,000 per request
DEFAULT_BUDGET = LengthBudget(bytes_per_second=14.0, max_bytes=2000)


@dataclass(frozen=True)
class SynthRequest:
    text: str
    voice: VoiceSpec
    nfe_step: int = 7
    seed: int = 0
    speed: float = 1.0


class Engine(abc.ABC):
    """Turns batches of text into waveforms. Methods run only on the engine's owning thread."""

    kind: ClassVar[str]
    sample_rate: int = SAMPLE_RATE

    @abc.abstractmethod
    def load(self) -> None:
        """Load weights/libraries. Raises ``ModelLoadError``/``WeightsMissingError`` with a precise message."""

    def prepare_voice(self, voice: VoiceSpec) -> None:  # noqa: B027 - optional hook
        """Preprocess and cache a reference voice (raises ``VoiceError``). Default: nothing to do."""

    @abc.abstractmethod
    def synthesize(self, requests: Sequence[SynthRequest]) -> list[npt.NDArray[np.float32]]:
        """Synthesize every request (one batch); returns float32 mono waveforms at ``sample_rate``."""

    def length_budget(self, voice: VoiceSpec, speed: float) -> LengthBudget:
        """Speech rate and the most UTF-8 bytes of text one request may carry for ``voice`` at ``speed``
        (longer text is chunked by the worker). Raises ``VoiceError`` when the voice is not usable."""
        return LengthBudget(DEFAULT_BUDGET.bytes_per_second * speed * voice.speed, DEFAULT_BUDGET.max_bytes)

    def warmup(self, voice: VoiceSpec) -> None:  # noqa: B027 - optional hook
        """Pay one-time costs (kernel compilation, graph capture) before the first real message. Default: none."""

    def warmup_tasks(self, voices: Sequence[VoiceSpec], max_batch: int) -> list[WarmupTask]:
        """Work to do in the background after load (e.g. capture CUDA graphs), most useful first. When this returns
        tasks, the engine must never do that work on a message's path. Default: none (``warmup`` runs instead)."""
        return []

    def demand_tasks(self) -> list[WarmupTask]:
        """More background work asked for by traffic since the last call (polled after the plan). Default: none."""
        return []

    def warmup_done(self) -> None:  # noqa: B027 - optional hook
        """Called on the warm-up thread once the plan is done (e.g. save compile caches)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def describe(self) -> dict[str, object]:
        """Facts for /healthz (device, precision...)."""
        return {"kind": self.kind}


def reference_key(voice: VoiceSpec, who: str) -> tuple[Path, tuple[str, int, int, str]]:
    """The reference recording of a cloning ``voice`` and a cache key that changes with its file (path, mtime,
    size) or transcript. Raises ``VoiceError`` naming what is missing or unreadable (``who``: the engine)."""
    if voice.ref_audio is None:
        raise VoiceError(f"voice {voice.id!r} has no ref_audio; {who} clones a reference recording")
    if not voice.ref_text.strip():
        raise VoiceError(f"voice {voice.id!r} has no ref_text; {who} needs the reference's transcript")
    path = Path(voice.ref_audio)
    try:
        st = path.stat()
    except OSError as e:
        raise VoiceError(f"voice {voice.id!r}: reference audio {str(path)!r} is not readable: {e}") from e
    return path, (str(path.resolve()), st.st_mtime_ns, st.st_size, voice.ref_text)
