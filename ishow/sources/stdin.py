"""Read one chat message per line from standard input (``user: text`` or just ``text``)."""

from __future__ import annotations

import asyncio
import sys

from ishow.config import SourceConfig
from ishow.events import ChatEvent, EventKind, User
from ishow.sources.base import Emit, Source


def parse_line(line: str) -> ChatEvent | None:
    line = line.strip()
    if not line:
        return None
    user, sep, text = line.partition(": ")
    if not sep or len(user) > 32:
        user, text = "stdin", line
    return ChatEvent(platform="stdin", room="stdin", user=User(id=user, name=user), kind=EventKind.DANMAKU, text=text)


class StdinSource(Source):
    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> StdinSource:
        return cls(name)

    async def run(self, emit: Emit) -> None:
        self.state = "reading"
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            event = parse_line(line)
            if event is not None:
                emit(event)
        self.state = "finished"
