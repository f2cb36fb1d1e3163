"""Hot reload: watch the config file and the voices folder; apply valid edits atomically, reject bad ones.

A rejected edit keeps the running config and logs every problem with its key path. Sections that need a
restart (server, engine, sources, outputs) are kept as they run and a warning says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
import watchfiles

from ishow.config import Config
from ishow.config_load import load_config
from ishow.errors import ConfigError

log = structlog.get_logger(__name__)

RESTART_SECTIONS = ("server", "engine", "sources", "outputs")


def restart_needed(old: Config, new: Config) -> list[str]:
    return [name for name in RESTART_SECTIONS if getattr(old, name) != getattr(new, name)]


def live_part(old: Config, new: Config) -> Config:
    """``new`` with the restart-only sections of ``old`` (what the running daemon actually uses)."""
    return dataclasses.replace(new, **{name: getattr(old, name) for name in RESTART_SECTIONS})


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        voices_dir: Path | None,
        apply: Callable[[Config, bool], Awaitable[None]],
        debounce_ms: int = 300,
    ) -> None:
        self.path = path.resolve()
        self.voices_dir = voices_dir.resolve() if voices_dir is not None and voices_dir.is_dir() else None
        self._apply = apply
        self._debounce_ms = debounce_ms
        self.reloads = 0
        self.rejected = 0

    def _relevant(self, changes: set[tuple[watchfiles.Change, str]]) -> tuple[bool, bool]:
        config_changed = voices_changed = False
        for _, name in changes:
            p = Path(name).resolve()
            if p == self.path:
                config_changed = True
            elif self.voices_dir is not None and self.voices_dir in p.parents:
                voices_changed = True
        return config_changed, voices_changed

    async def run(self) -> None:
        targets = [self.path.parent] + ([self.voices_dir] if self.voices_dir else [])
        log.info("watching for config and voice edits", paths=[str(t) for t in targets])
        async for changes in watchfiles.awatch(*targets, debounce=self._debounce_ms, recursive=True):
            config_changed, voices_changed = self._relevant(changes)
            if config_changed or voices_changed:
                await self.reload(voices_changed)

    async def reload(self, voices_changed: bool = False) -> bool:
        try:
            cfg = await asyncio.to_thread(load_config, self.path)
        except ConfigError as e:
            self.rejected += 1
            log.error(
                "config edit rejected; still running the previous config",
                path=str(self.path),
                problems=len(e.problems),
            )
            for problem in e.problems:
                log.error(f"config problem: {problem}", path=str(self.path))
            return False
        await self._apply(cfg, voices_changed)
        self.reloads += 1
        return True
