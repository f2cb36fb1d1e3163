"""Engine construction by kind; heavy modules (torch, ctypes libraries) are imported only here, lazily."""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from ishow.config.choices import ENGINE_KINDS, one_of
from ishow.config.engine import EngineConfig
from ishow.engine.base import Engine
from ishow.errors import ConfigError, ModelLoadError

#: one entry per ``ishow.config.choices.ENGINE_KINDS`` value (tests/test_config.py checks they match)
ENGINE_CLASSES: dict[str, str] = {
    "f5": "ishow.engine.f5_engine:F5Engine",
    "espeak": "ishow.engine.espeak:EspeakEngine",
    "remote": "ishow.engine.remote:RemoteEngine",
}


class _EngineClass(Protocol):
    def __call__(self, cfg: EngineConfig) -> Engine: ...


def create_engine(kind: str, cfg: EngineConfig) -> Engine:
    target = ENGINE_CLASSES.get(kind)
    if target is None:
        raise ConfigError(f"engine.kind: unknown engine {kind!r}; expected one of {one_of(ENGINE_KINDS)}")
    module_name, _, cls_name = target.partition(":")
    try:
        cls = cast(_EngineClass, getattr(importlib.import_module(module_name), cls_name))
        return cls(cfg)
    except ImportError as e:
        raise ModelLoadError(f"the {kind} engine cannot be imported: {e}") from e
