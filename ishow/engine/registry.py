"""Engine construction by kind; heavy modules (torch, ctypes libraries) are imported only here, lazily."""

from __future__ import annotations

from ishow.config_engine import EngineConfig
from ishow.engine.base import Engine
from ishow.errors import ConfigError, ModelLoadError

KINDS = ("f5", "espeak", "remote")


def create_engine(kind: str, cfg: EngineConfig) -> Engine:
    try:
        if kind == "f5":
            from ishow.engine.f5 import F5Engine

            return F5Engine(cfg)
        if kind == "espeak":
            from ishow.engine.espeak import EspeakEngine

            return EspeakEngine(cfg)
        if kind == "remote":
            from ishow.engine.remote import RemoteEngine

            return RemoteEngine(cfg)
    except ImportError as e:
        raise ModelLoadError(f"the {kind} engine cannot be imported: {e}") from e
    raise ConfigError(f"engine.kind: unknown engine {kind!r}; expected one of {', '.join(KINDS)}")
