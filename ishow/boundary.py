"""Text and JSON at the trust boundary: pure helpers every door (HTTP, /ws/input, stdin, platform sources) uses.

- ``valid_text``: any Python ``str`` → valid Unicode. Lone surrogates (``"\\ud800"`` is legal JSON) are the only
  code points a ``str`` can hold that UTF-8 cannot encode; they become U+FFFD, so no later ``encode`` (a log line,
  a websocket frame, a file) can fail on content.
- ``control_problem``: the one control-character rule for local inputs (HTTP fields, /ws/input frames, stdin
  lines): C0 controls other than tab/newline/CR, and DEL, are refused with the index of the first one.
- ``loads_limited``: ``json.loads`` with the nesting depth and integer size bounded, and NaN/Infinity refused;
  everything a client can send raises ``InputError`` with a precise message (never RecursionError/ValueError).
- ``sanitize_event`` / ``sanitize_removal``: every string field of what a source emits made valid Unicode, names
  and ids without control characters.
- ``platform_label``: a bounded set of metric label values for the ``platform`` label.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ishow.errors import InputError
from ishow.events import ChatEvent, Removal, User

MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20  # int64 has 19 digits; anything longer is not a count, an amount or an id a client needs
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")

# Values of the ``platform`` metric label: the platforms ishow has sources for, the HTTP API and local inputs.
# Anything else a client or tool sends is counted as "other", so /metrics cannot grow without bound.
KNOWN_PLATFORMS = frozenset({"bilibili", "twitch", "youtube", "demo", "stdin", "websocket", "api", "local"})


def valid_text(value: str) -> str:
    """``value`` with every lone surrogate replaced by U+FFFD (encodable as UTF-8 everywhere)."""
    return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value


def control_problem(key: str, value: str) -> str | None:
    """The local-input control-character rule: a message naming the first refused character, or None."""
    bad = _CONTROL.search(value)
    if bad is None:
        return None
    return f"'{key}' contains control character U+{ord(bad.group()):04X} at index {bad.start()}"


def clean_label(value: str, max_len: int = 128) -> str:
    """A name or id: valid Unicode, no control characters (C0, DEL, C1), at most ``max_len`` characters."""
    return _ANY_CONTROL.sub("", valid_text(value))[:max_len]


def platform_label(platform: str) -> str:
    return platform if platform in KNOWN_PLATFORMS else "other"


def _reject_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number; send a finite number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise InputError(f"an integer with {digits} digits; at most {MAX_INT_DIGITS} digits are accepted")
    return int(text)


def json_depth_problem(text: str, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """A message when arrays/objects in ``text`` nest deeper than ``max_depth`` (brackets inside strings ignored)."""
    depth = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels (at character {m.start()} of the unquoted text)"
    return None


def loads_limited(text: str, what: str = "body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for client input; raises ``InputError`` for anything that is not acceptable JSON."""
    problem = json_depth_problem(text, max_depth)
    if problem:
        raise InputError(f"{what} is not acceptable JSON: {problem}")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_reject_constant)
    except InputError as e:
        raise InputError(f"{what} is not acceptable JSON: {e}") from e
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise InputError(f"{what} is not valid JSON: {e}") from e


def sanitize_event(event: ChatEvent) -> ChatEvent:
    """Every string in ``event`` valid Unicode; the user's id/name, platform, ids and labels without controls.

    The message text keeps its characters (``clean_text`` in the policy turns controls into spaces)."""
    user = event.user
    clean_user = User(
        id=clean_label(user.id),
        name=clean_label(user.name, 64),
        badges=tuple(clean_label(b, 64) for b in user.badges[:32]),
        moderator=user.moderator,
    )
    changes: dict[str, Any] = {
        "platform": clean_label(event.platform, 32),
        "room": clean_label(event.room),
        "text": valid_text(event.text),
        "currency": clean_label(event.currency, 16),
        "msg_id": clean_label(event.msg_id),
        "gift": clean_label(event.gift, 64),
    }
    if clean_user == user and all(getattr(event, k) == v for k, v in changes.items()):
        return event
    return dataclasses.replace(event, user=clean_user, **changes)


def sanitize_removal(removal: Removal) -> Removal:
    return Removal(
        platform=clean_label(removal.platform, 32),
        msg_id=clean_label(removal.msg_id),
        user_id=clean_label(removal.user_id),
    )
