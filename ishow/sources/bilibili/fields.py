"""Typed access to untrusted JSON: every mismatch becomes a ``ProtocolError`` naming the path and what came."""

from __future__ import annotations

import math
from typing import Any

from ishow.errors import ProtocolError


def _show(v: object) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


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
    """An integer; integral floats and decimal strings are accepted."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            pass
    if v is None and default is not None:
        return default
    raise ProtocolError(f"{path}: expected an integer, got {type(v).__name__} {_show(v)}")


def number(v: object, path: str, default: float | None = None) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        f = float(v)
        if math.isfinite(f):
            return f
    if isinstance(v, str):
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
