"""Replay a recorded chat (JSONL with timing): the demo source and a test tool.

Each line: ``{"t": seconds_since_start, "user": "...", "text": "...", "kind"?: "danmaku"|"super_chat"|"gift",
"amount"?: number, "currency"?: "CNY", "platform"?: "demo", "uid"?: "..."}``. Blank lines and lines starting
with ``#`` are skipped. Parsing is pure (``parse_replay``); bad lines are reported with their line number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import structlog

from ishow.config.schema import SourceConfig
from ishow.errors import ConfigError
from ishow.events import ChatEvent, EventKind, User
from ishow.sources.base import Emit, Source

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReplayLine:
    t: float
    event: ChatEvent


def parse_replay(text: str, origin: str = "<replay>") -> list[ReplayLine]:
    out: list[ReplayLine] = []
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            t = float(obj.get("t", 0.0))
            user = str(obj["user"])
            kind = EventKind(obj.get("kind", "danmaku"))
            text_value = obj.get("text", "")
            if not isinstance(text_value, str):
                raise ValueError(f"'text' must be a string, got {type(text_value).__name__}")
            event = ChatEvent(
                platform=str(obj.get("platform", "demo")),
                room="demo",
                user=User(id=str(obj.get("uid", user)), name=user),
                kind=kind,
                text=text_value,
                amount=float(obj.get("amount", 0.0)),
                currency=str(obj.get("currency", "")),
                msg_id=f"{origin}:{n}",
            )
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{origin}:{n}: {type(e).__name__}: {e}")
            continue
        out.append(ReplayLine(t, event))
    if problems:
        raise ConfigError(problems)
    return out


def builtin_demo_text() -> str:
    return resources.files("ishow.data").joinpath("demo_chat.jsonl").read_text(encoding="utf-8")


class ReplaySource(Source):
    def __init__(self, name: str, file: Path | None, speed: float = 1.0, loop: bool = False) -> None:
        super().__init__(name)
        origin = str(file) if file else "demo_chat.jsonl"
        text = file.read_text(encoding="utf-8") if file else builtin_demo_text()
        self.lines = parse_replay(text, origin)  # raises ConfigError at startup, never mid-stream
        self.speed = speed
        self.loop = loop

    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> ReplaySource:
        return cls(name, cfg.file, speed=cfg.speed, loop=cfg.loop)

    async def run(self, emit: Emit) -> None:
        self.state = "replaying"
        for round_ in itertools.count():
            start = time.monotonic()
            for line in self.lines:
                delay = start + line.t / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                # each loop round is new chat: fresh message ids, so duplicate-id filtering doesn't eat it
                emit(
                    line.event
                    if round_ == 0
                    else dataclasses.replace(line.event, msg_id=f"{line.event.msg_id}#{round_}")
                )
            if not self.loop:
                break
        self.state = "finished"
        log.info("replay finished", source=self.name, messages=len(self.lines))
