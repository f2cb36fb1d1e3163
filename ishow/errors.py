"""One exception root for ishow.

``RemoteError`` means a peer (platform server, HTTP client, OBS page) sent something wrong;
``LocalError`` means something on our side (config, files, model, GPU) is wrong.
Messages say what was received and what was expected.
"""

from __future__ import annotations


class IshowError(Exception):
    """Root of every exception ishow raises on purpose."""


class LocalError(IshowError):
    """Our side is wrong: configuration, files, weights, devices."""


class StartupError(LocalError):
    """The daemon cannot start (port in use, missing voice file...): one line saying what and what to do."""


class RemoteError(IshowError):
    """A peer sent something we cannot use."""


class ConfigError(LocalError):
    """The configuration is invalid; ``problems`` lists every ``key.path: message``."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class InputError(IshowError):
    """A request carried bad input (empty text, unknown voice, bad option)."""


class PayloadTooLargeError(InputError):
    """The request body is over ``server.max_body_bytes`` (HTTP 413)."""


class UnsupportedMediaTypeError(InputError):
    """A JSON endpoint got a body that is not ``Content-Type: application/json`` (HTTP 415)."""


class TooManyRequestsError(InputError):
    """Too many /api/tts requests at once (HTTP 429 with Retry-After)."""


class UnknownVoiceError(InputError):
    def __init__(self, voice: str, known: list[str] | tuple[str, ...]) -> None:
        self.voice = voice
        self.known = tuple(known)
        super().__init__(f"unknown voice {voice!r}; configured voices: {', '.join(self.known) or '(none)'}")


class EngineError(LocalError):
    """The speech engine failed."""


class ModelLoadError(EngineError):
    """Weights or vocab could not be loaded (missing, truncated, wrong keys)."""


class WeightsMissingError(ModelLoadError):
    """A weights/vocab file does not exist; the message names the path and the command that fetches it."""


class VoiceError(EngineError):
    """A reference voice could not be prepared (missing file, silent, too short...)."""


class OutOfMemoryError(EngineError):
    """The accelerator ran out of memory for this batch."""


class ServiceUnavailableError(EngineError):
    """The remote synthesis service is unreachable, overloaded or refused us: the fallback speaks until it is back."""


class ProtocolError(RemoteError):
    """A wire frame could not be parsed."""
