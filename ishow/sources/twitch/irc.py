"""Generic IRC with IRCv3 message tags, sans-I/O: ``parse_line`` (one line → ``IrcMessage``) and ``LineBuffer``
(websocket frames or byte chunks → complete lines). Twitch's meaning of the lines lives in ``protocol``."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from ishow.errors import ProtocolError

MAX_LINE = 16_384  # Twitch lines are ≤ 512 bytes of IRC plus ≤ 8 KiB of tags

_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_TAG_KEY = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9./_-]*")


def show(line: str, limit: int = 200) -> str:
    """A line for an error message: repr, truncated."""
    return repr(line if len(line) <= limit else line[:limit] + "…")


@dataclass(frozen=True)
class IrcMessage:
    """One parsed line. ``params`` includes the trailing parameter (also in ``trailing``; None when absent)."""

    command: str
    params: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    trailing: str | None = None
    raw: str = ""

    @property
    def nick(self) -> str:
        """The nick of ``nick!user@host`` prefixes ("" for server prefixes without ``!``)."""
        nick, bang, _ = self.prefix.partition("!")
        return nick if bang else ""

    @property
    def channel(self) -> str:
        """The first parameter without its ``#`` ("" when it is not a channel)."""
        return self.params[0][1:] if self.params and self.params[0].startswith("#") else ""


def unescape_tag_value(value: str) -> str:
    """IRCv3 tag value unescaping: ``\\:`` ``\\s`` ``\\\\`` ``\\r`` ``\\n``; other ``\\x`` → ``x``; a final lone
    backslash is dropped."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            if i + 1 < n:
                nxt = value[i + 1]
                out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_tags(text: str, line: str) -> dict[str, str]:
    if not text:
        raise ProtocolError(f"IRC line has an empty tag section: {show(line)}")
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if not _TAG_KEY.fullmatch(key):
            raise ProtocolError(f"IRC tag key {key[:40]!r} is not a valid key: {show(line)}")
        tags[key] = unescape_tag_value(value)
    return tags


def parse_line(line: str) -> IrcMessage:
    """Parse one IRC line (without or with its CRLF). Raises ProtocolError saying what was wrong."""
    raw = line
    line = line.removesuffix("\n").removesuffix("\r")
    if len(line) > MAX_LINE:
        raise ProtocolError(f"IRC line is longer than {MAX_LINE} characters: {show(line)}")
    if not line.strip(" "):
        raise ProtocolError(f"empty IRC line: {show(raw)}")
    bad = next((ch for ch in ("\0", "\r", "\n") if ch in line), None)
    if bad is not None:
        raise ProtocolError(f"IRC line contains {bad!r} inside it: {show(line)}")
    rest = line
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_text, sep, rest = rest[1:].partition(" ")
        if not sep:
            raise ProtocolError(f"IRC line has tags but no command: {show(line)}")
        tags = parse_tags(tag_text, line)
        rest = rest.lstrip(" ")
    prefix = ""
    if rest.startswith(":"):
        prefix, sep, rest = rest[1:].partition(" ")
        if not prefix or not sep:
            raise ProtocolError(f"IRC line has a prefix but no command: {show(line)}")
        rest = rest.lstrip(" ")
    command, _, rest = rest.partition(" ")
    if not command:
        raise ProtocolError(f"IRC line has no command: {show(line)}")
    if not command.isascii() or not (command.isalpha() or (len(command) == 3 and command.isdigit())):
        raise ProtocolError(f"IRC command {command[:40]!r} is neither letters nor a 3-digit numeric: {show(line)}")
    params: list[str] = []
    trailing: str | None = None
    while rest:
        rest = rest.lstrip(" ")
        if not rest:
            break
        if rest.startswith(":"):
            trailing = rest[1:]
            params.append(trailing)
            break
        param, _, rest = rest.partition(" ")
        params.append(param)
    return IrcMessage(command.upper(), tuple(params), tags, prefix, trailing, raw)


class LineBuffer:
    """Reassembles lines from websocket frames (several lines per frame, or lines split across frames).

    Accepts ``str`` or UTF-8 ``bytes`` (decoded incrementally; bad bytes become U+FFFD). Lines end with LF
    (CR before it is removed); empty lines are skipped. A line growing past ``max_line`` is cut: its first
    ``max_line + 1`` characters are returned when its end arrives, so ``parse_line`` reports it as too long.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._pending = ""
        self._skipping = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def pending(self) -> str:
        return self._pending

    def feed(self, data: str | bytes) -> list[str]:
        text = self._decoder.decode(data) if isinstance(data, bytes) else data
        if "\n" not in text:
            self._append(text)
            return []
        first, *middle, last = text.split("\n")
        self._append(first)
        lines = [self._pending, *middle]
        self._pending, self._skipping = "", False
        self._append(last)
        out: list[str] = []
        for line in lines:
            line = line.removesuffix("\r")
            if line:
                out.append(line if len(line) <= self.max_line else line[: self.max_line + 1])
        return out

    def _append(self, text: str) -> None:
        if self._skipping:
            return
        self._pending += text
        if len(self._pending) > self.max_line:
            self._pending = self._pending[: self.max_line + 1]
            self._skipping = True
