"""Source construction by ``kind``: each kind names the module and class that builds it (imported lazily).

Every class has ``from_config(name: str, cfg: SourceConfig) -> Source``.
"""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from ishow.config.choices import SOURCE_KINDS, one_of
from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError
from ishow.sources.base import Source

#: one entry per ``ishow.config.choices.SOURCE_KINDS`` value (tests/test_config.py checks they match)
SOURCE_CLASSES: dict[str, str] = {
    "demo": "ishow.sources.replay:ReplaySource",
    "stdin": "ishow.sources.stdin:StdinSource",
    "websocket": "ishow.sources.wsinput:WebsocketInputSource",
    "bilibili": "ishow.sources.bilibili.client:BilibiliSource",
    "bilibili_open": "ishow.sources.bilibili.open_client:BilibiliOpenSource",
    "twitch": "ishow.sources.twitch.client:TwitchSource",
    "youtube": "ishow.sources.youtube.client:YoutubeSource",
}


class _SourceClass(Protocol):
    def from_config(self, name: str, cfg: SourceConfig) -> Source: ...


def create_source(name: str, cfg: SourceConfig) -> Source:
    target = SOURCE_CLASSES.get(cfg.kind)
    if target is None:
        raise ConfigError(f"sources: unknown kind {cfg.kind!r}; expected one of {one_of(SOURCE_KINDS)}")
    module_name, _, cls_name = target.partition(":")
    try:
        cls = cast(_SourceClass, getattr(importlib.import_module(module_name), cls_name))
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"sources: the {cfg.kind!r} source is not available in this build: {e}") from e
    return cls.from_config(name, cfg)
