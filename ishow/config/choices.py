"""Every set of allowed values in the configuration, defined once.

Validation (``ishow.config.load``), the registries (``ishow.engine.registry``, ``ishow.sources.registry``), the
vocoder selection and the ``ishow bench`` options all read these tuples; a test checks that the commented
config/ishowtts.toml names each of them. Adding a value here without an implementation behind it fails the
registry tests.
"""

from __future__ import annotations

from collections.abc import Iterable

ENGINE_KINDS: tuple[str, ...] = ("f5", "espeak", "remote")
ENGINE_FALLBACKS: tuple[str, ...] = ("espeak", "none")
MODELS: tuple[str, ...] = ("F5TTS_v1_Base", "F5TTS_v1_Small", "tiny", "auto")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")  # and "cuda:N"
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16")
ON_SHUTDOWN: tuple[str, ...] = ("finish", "drop")
VOCODER_BACKENDS: tuple[str, ...] = ("auto", "torch", "torch-compile", "onnx", "tensorrt")
# The batch sizes captured as CUDA graphs (DiT and vocoder). ``batch.max_items`` may not exceed the largest: a
# bigger batch would silently run eagerly (config validation refuses it).
BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16)
MAX_BATCH_BUCKET = max(BATCH_BUCKETS)
SOURCE_KINDS: tuple[str, ...] = ("demo", "stdin", "websocket", "bilibili", "bilibili_open", "twitch", "youtube")


def one_of(values: Iterable[str]) -> str:
    """``'a', 'b', 'c'``: the allowed values as error messages name them."""
    return ", ".join(map(repr, values))
