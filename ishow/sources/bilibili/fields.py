"""Typed access to untrusted JSON: every mismatch becomes a ``ProtocolError`` naming the path and what came."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from ishow.errors import ProtocolError

INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what the platform's int64/uint64 fields can hold


def show(v: object) -> str:
    """A short repr for error messages; never raises (absurdly nested values are only named)."""
    try:
        text = repr(v) if not isinstance(v, int) or abs(v) < 10**60 else f"<{v.bit_length()}-bit integer>"
    except (RecursionError, ValueError):
        return f"<deeply nested {type(v).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


_show = show


def obj(v: object, path: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ProtocolError(f"{path}: expected an object, got {type(v).__name__} {_show(v)}")
    return v


def arr(v: object, path: str) -> list[Any]:
    if not isinstance(v, list):
        raise ProtocolError(f"{path}: expected an array, got {type(v).__name__} {_show(v)}")
    return v


def at(v: list[Any], i: int, default: object = None) -> object:
    return v[i] if 0 <= i < len(v) else default


def text(v: object, path: str, default: str | None = None) -> str:
    """A string; numbers are accepted as their decimal text (ids arrive as either)."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if v is None and default is not None:
        return default
    raise ProtocolError(f"{path}: expected a string, got {type(v).__name__} {_show(v)}")


def integer(v: object, path: str, default: int | None = None) -> int:
    """An integer in the 64-bit range; integral floats and decimal strings are accepted."""
    out: int | None = None
    if isinstance(v, bool):
        out = int(v)
    elif isinstance(v, int):
        out = v
    elif isinstance(v, float) and math.isfinite(v):
        out = int(v)
    elif isinstance(v, str) and len(v) <= 40:  # longer digit strings are no 64-bit number (and slow to convert)
        with contextlib.suppress(ValueError):
            out = int(v.strip())
    if out is not None:
        if not INT_MIN <= out <= INT_MAX:
            raise ProtocolError(f"{path}: expected a 64-bit integer, got {type(v).__name__} {_show(v)}")
        return out
    if v is None and default is not None:
        return default
    raise ProtocolError(f"{path}: expected an integer, got {type(v).__name__} {_show(v)}")


def number(v: object, path: str, default: float | None = None) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        f = float(v) if isinstance(v, float) or INT_MIN <= v <= INT_MAX else math.inf  # a huge int: no float
        if math.isfinite(f):
            return f
    if isinstance(v, str) and len(v) <= 400:
        try:
            f = float(v.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(f):
                return f
    if v is None and default is not None:
        return default
    raise ProtocolError(f"{path}: expected a number, got {type(v).__name__} {_show(v)}")
