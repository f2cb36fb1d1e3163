"""Read one chat message per line from standard input (``user: text`` or just ``text``).

Lines follow the HTTP API's rules: valid UTF-8 text (undecodable bytes become U+FFFD), no control characters
other than tab; a line that breaks them is refused with one log line naming the character and its position.
Stdin is never trusted: every line is ordinary chat."""

from __future__ import annotations

import asyncio
import sys

import structlog

from ishow.boundary import control_problem, valid_text
from ishow.config import SourceConfig
from ishow.errors import InputError
from ishow.events import ChatEvent, EventKind, User
from ishow.sources.base import Emit, Source

log = structlog.get_logger(__name__)


def parse_line(line: str) -> ChatEvent | None:
    """One line → a chat event (None for a blank line); InputError for control characters."""
    line = valid_text(line.strip())
    if not line:
        return None
    problem = control_problem("line", line)
    if problem:
        raise InputError(problem)
    user, sep, text = line.partition(": ")
    if not sep or len(user) > 32:
        user, text = "stdin", line
    return ChatEvent(platform="stdin", room="stdin", user=User(id=user, name=user), kind=EventKind.DANMAKU, text=text)


def _read_line() -> bytes:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is not None:
        return bytes(stream.readline(64 * 1024))
    return sys.stdin.readline(64 * 1024).encode("utf-8", "surrogatepass")  # a text-only stand-in (tests)


class StdinSource(Source):
    @classmethod
    def from_config(cls, name: str, cfg: SourceConfig) -> StdinSource:
        return cls(name)

    async def run(self, emit: Emit) -> None:
        self.state = "reading"
        while True:
            raw = await asyncio.to_thread(_read_line)
            if not raw:
                break
            line = raw.decode("utf-8", "replace")
            try:
                event = parse_line(line)
            except InputError as e:
                log.warning("stdin line refused", error=str(e), line=line[:80].encode("unicode_escape").decode())
                continue
            if event is not None:
                emit(event)
        self.state = "finished"
