"""Hot reload: watch the config file and its voice files; apply valid edits atomically, reject bad ones.

A rejected edit keeps the running config and logs every problem with its key path. Sections that need a
restart (server, engine, sources, outputs, batch) are kept as they run and a warning names them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
import watchfiles

from ishow.config.load import load_config
from ishow.config.schema import Config
from ishow.errors import ConfigError

log = structlog.get_logger(__name__)

# [batch] sizes the player's audio buffer and the batcher's window, both built at startup: restart-only.
RESTART_SECTIONS = ("server", "engine", "sources", "outputs", "batch")


def restart_needed(old: Config, new: Config) -> list[str]:
    return [name for name in RESTART_SECTIONS if getattr(old, name) != getattr(new, name)]


def live_part(old: Config, new: Config) -> Config:
    """``new`` with the restart-only sections of ``old`` (what the running daemon actually uses)."""
    return dataclasses.replace(new, **{name: getattr(old, name) for name in RESTART_SECTIONS})


def watched_paths(config_path: Path, cfg: Config) -> tuple[frozenset[Path], Path | None]:
    """The files a running daemon reloads on: the config file and every voice file it names; plus the
    ``voices/`` folder (new files there)."""
    files = {config_path.resolve()}
    files |= {v.ref_audio.resolve() for v in cfg.voices if v.ref_audio is not None}
    voices_dir = (cfg.root / "voices").resolve()
    return frozenset(files), voices_dir if voices_dir.is_dir() else None


class ConfigWatcher:
    """Watches exactly the config file, the voice files it names and ``voices/`` (not the folders around them:
    a log file written next to the config never wakes it). Editors that save by rename are handled: the parent
    folders are watched without recursion and every event is filtered to those paths."""

    def __init__(
        self,
        path: Path,
        cfg: Config,
        apply: Callable[[Config, bool], Awaitable[None]],
        debounce_ms: int = 300,
    ) -> None:
        self.path = path.resolve()
        self._apply = apply
        self._debounce_ms = debounce_ms
        self.files, self.voices_dir = watched_paths(self.path, cfg)
        self.reloads = 0
        self.rejected = 0

    def wanted(self, change: watchfiles.Change, name: str) -> bool:
        """watchfiles' filter: only our files (and files directly in ``voices/``) get through."""
        p = Path(name).resolve()
        return p in self.files or (self.voices_dir is not None and p.parent == self.voices_dir)

    def _relevant(self, changes: set[tuple[watchfiles.Change, str]]) -> tuple[bool, bool]:
        config_changed = voices_changed = False
        for change, name in changes:
            if not self.wanted(change, name):
                continue
            if Path(name).resolve() == self.path:
                config_changed = True
            else:
                voices_changed = True
        return config_changed, voices_changed

    def _folders(self) -> list[Path]:
        dirs = {f.parent for f in self.files if f.parent.is_dir()}
        if self.voices_dir is not None:
            dirs.add(self.voices_dir)
        return sorted(dirs)

    async def run(self) -> None:
        while True:
            folders = self._folders()
            log.info("watching for config and voice edits", files=sorted(str(f) for f in self.files))
            restart = asyncio.Event()
            async for changes in watchfiles.awatch(
                *folders, watch_filter=self.wanted, debounce=self._debounce_ms, recursive=False, stop_event=restart
            ):
                config_changed, voices_changed = self._relevant(changes)
                if config_changed or voices_changed:
                    await self.reload(voices_changed)
                if self._folders() != folders:  # the config now names voice files elsewhere: watch those
                    restart.set()
            if not restart.is_set():
                return

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
        self.files, self.voices_dir = watched_paths(self.path, cfg)
        await self._apply(cfg, voices_changed)
        self.reloads += 1
        return True
