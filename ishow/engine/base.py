"""The engine interface every speech engine implements.

An engine is owned by exactly one thread (the worker in ``ishow.engine.worker``); none of its methods is
called from the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ishow.config.voice import VoiceSpec
from ishow.engine.chunking import LengthBudget

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
    sample_rate: int = 24_000

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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def describe(self) -> dict[str, object]:
        """Facts for /healthz (device, precision...)."""
        return {"kind": self.kind}
