"""Mutations for structure-aware fuzzing: JSON values, bytes and text. Deterministic for a given ``random.Random``.

JSON mutations rebuild only the path to the changed node (seeds are never modified in place): a value replaced
by another JSON type, a key dropped or added, list items dropped/duplicated, strings with lone surrogates or
control characters, huge ints, non-finite floats, deep nesting. Byte/text mutations flip, truncate, insert,
delete, duplicate and splice, and insert tokens that parsers trip on (surrogates encoded with ``surrogatepass``,
``\\ud800`` escapes, 5000-digit numbers, brackets).
"""

from __future__ import annotations

import builtins
import json
import random
from collections.abc import Callable
from typing import Any

Json = Any

SURROGATES = ("\ud800", "\udc00", "\udfff", "\ud83d")
ODD_CHARS = ("\x00", "\r", "\n", "\x01", "\x7f", "\u2028", "\ufeff", "\uffff", "\U0001f600", "\u200b", "\\", '"')
HUGE_DIGITS = ("9" * 5000, "1" + "0" * 400, "-" + "9" * 4301, "1e400", "-1e400")
BYTE_TOKENS = (
    b"\xed\xa0\x80",  # U+D800 encoded with surrogatepass
    b"\xed\xbf\xbf",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"\xff",
    b"\xc0\x80",
    b"\x00",
    b"\r\n",
    b"\n",
    b"[",
    b"{",
    b"]",
    b"}",
    b'"',
    b",",
    b":",
    b"NaN",
    b"-Infinity",
    b"null",
    b"9" * 5000,
    b"1" + b"0" * 400,
    b"1e999",
    b"-0",
    b"1.5",
    b"\\",
    b" ",
    b";",
    b"=",
    b"#",
    b"@",
)


def surrogate_bytes(text: str) -> bytes:
    """UTF-8 that keeps lone surrogates (as a buggy or hostile peer may send)."""
    return text.encode("utf-8", "surrogatepass")


def dumps(value: Json, rng: random.Random) -> bytes:
    """JSON bytes of ``value``: ASCII escapes or raw UTF-8 (lone surrogates kept), compact or spaced."""
    try:
        if rng.random() < 0.5:
            return json.dumps(value, ensure_ascii=True).encode()
        seps = (",", ":") if rng.random() < 0.5 else (", ", ": ")
        return surrogate_bytes(json.dumps(value, ensure_ascii=False, separators=seps))
    except (RecursionError, ValueError):
        return b"[" * 2000 + b"]" * 2000


class Mutator:
    """All mutations draw from ``rng``; ``keys`` (names seen in the seeds) feed key additions."""

    def __init__(self, rng: random.Random, keys: tuple[str, ...] = ()) -> None:
        self.rng = rng
        self.keys = keys or ("id", "text", "data", "cmd", "type")
        self.pools: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------------------------------ scalars

    def string(self) -> str:
        r = self.rng
        choice = r.randrange(10)
        if choice == 0:
            return ""
        if choice == 1:
            return r.choice(SURROGATES) * r.randint(1, 3)
        if choice == 2:
            return "".join(r.choice(ODD_CHARS) for _ in range(r.randint(1, 6)))
        if choice == 3:
            return r.choice(HUGE_DIGITS) if r.random() < 0.3 else str(self.number())
        if choice == 4:
            return str(r.choice((0, -1, 1, 3, 255, 2**31, 2**63, -(2**63))))
        if choice == 5:
            return "x" * r.choice((17, 33, 65, 129, 2001, 70000 if r.random() < 0.1 else 4097))
        if choice == 6:
            return r.choice(self.keys)
        if choice == 7:
            return " " * r.randint(1, 3)
        return "".join(chr(r.randint(0x20, 0x2FFF)) for _ in range(r.randint(1, 8)))

    def number(self) -> int | float:
        """Mostly cheap edge values; 1 in 10 a huge int (costly to print and parse, so kept rare)."""
        r = self.rng
        if r.random() < 0.1:
            return r.choice((2**64, 10**400, -(10**400), 10 ** r.randint(20, 4200)))
        return r.choice(
            (0, -1, 1, 2, 3, 7, 2**31, -(2**31), 2**63, 0.5, -0.0, 1e308, -1e308, 5e-324, float("inf"),
             float("-inf"), float("nan"), r.randint(-(2**40), 2**40))
        )  # fmt: skip

    def value(self, depth: int = 0) -> Json:
        r = self.rng
        choice = r.randrange(12 if depth < 3 else 7)
        if choice == 0:
            return None
        if choice == 1:
            return r.random() < 0.5
        if choice in (2, 3):
            return self.number()
        if choice in (4, 5, 6):
            return self.string()
        if choice == 7:
            return []
        if choice == 8:
            return {}
        if choice == 9:
            return [self.value(depth + 1) for _ in range(r.randint(1, 3))]
        if choice == 10:
            return {r.choice(self.keys): self.value(depth + 1) for _ in range(r.randint(1, 3))}
        return self.nest(self.value(depth + 1), r.choice((10, 100, 500, 900)))

    def nest(self, inner: Json, levels: int) -> Json:
        out = inner
        as_list = self.rng.random() < 0.5
        for _ in range(levels):
            out = [out] if as_list else {"a": out}
        return out

    # ------------------------------------------------------------------------------------------ JSON trees

    def _paths(self, value: Json, limit: int = 4000, max_depth: int = 40) -> list[tuple[Any, ...]]:
        """Paths to nodes of ``value`` (breadth first, bounded in count and depth)."""
        out: list[tuple[Any, ...]] = []
        queue: list[tuple[tuple[Any, ...], Json]] = [((), value)]
        for path, node in queue:
            out.append(path)
            if len(queue) >= limit or len(path) >= max_depth:
                continue
            if isinstance(node, dict):
                queue.extend(((*path, k), v) for k, v in node.items())
            elif isinstance(node, list):
                queue.extend(((*path, i), v) for i, v in enumerate(node))
        return out

    def _replace(self, value: Json, path: tuple[Any, ...], fn: Any) -> Json:
        if not path:
            return fn(value)
        head, rest = path[0], path[1:]
        if isinstance(value, dict):
            copy = dict(value)
            copy[head] = self._replace(value[head], rest, fn)
            return copy
        items = list(value)
        items[head] = self._replace(value[head], rest, fn)
        return items

    def json(self, value: Json, rounds: int | None = None) -> Json:
        """``value`` with 1–4 (or ``rounds``) structural mutations."""
        n = rounds if rounds is not None else self.rng.choice((1, 1, 1, 2, 2, 3, 4))
        for _ in range(n):
            value = self._json_once(value)
        return value

    def _json_once(self, value: Json) -> Json:
        r = self.rng
        path = r.choice(self._paths(value))
        return self._replace(value, path, self._mutate_node)

    def _mutate_node(self, node: Json) -> Json:
        r = self.rng
        if isinstance(node, dict) and node and r.random() < 0.6:
            keys = list(node)
            op = r.randrange(4)
            if op == 0:  # drop a key
                k = r.choice(keys)
                return {kk: vv for kk, vv in node.items() if kk != k}
            if op == 1:  # add/overwrite a key
                return {**node, r.choice(self.keys): self.value()}
            if op == 2:  # keep one key
                k = r.choice(keys)
                return {k: node[k]}
            return {k: self.value() if r.random() < 0.3 else v for k, v in node.items()}
        if isinstance(node, list) and node and r.random() < 0.6:
            items = list(node)
            op = r.randrange(5)
            i = r.randrange(len(items))
            if op == 0:
                del items[i]
            elif op == 1:
                items.insert(i, items[r.randrange(len(items))])
            elif op == 2:
                items.insert(i, self.value())
            elif op == 3:
                items = items[: r.randrange(len(items))]
            else:
                items = items * (r.choice((2, 50)) if len(items) <= 16 else 2)
            return items
        if isinstance(node, str) and node and r.random() < 0.5:
            return self.text(node)
        if isinstance(node, int | float) and not isinstance(node, bool) and r.random() < 0.5:
            return self.number()
        if r.random() < 0.1:
            return self.nest(node, r.choice((50, 200, 900)))
        return self.value()

    # ------------------------------------------------------------------------------------------ bytes and text

    def bytes(self, data: bytes, rounds: int | None = None) -> bytes:
        n = rounds if rounds is not None else self.rng.choice((1, 1, 2, 3))
        for _ in range(n):
            data = self._bytes_once(data)
        return data

    def _bytes_once(self, data: builtins.bytes) -> builtins.bytes:  # `bytes` here is the method above
        r = self.rng
        n = len(data)
        op = r.randrange(9)
        pos = r.randint(0, n)
        if op == 0 and n:  # flip a bit
            i = r.randrange(n)
            return data[:i] + bytes([data[i] ^ (1 << r.randrange(8))]) + data[i + 1 :]
        if op == 1 and n:  # interesting byte
            i = r.randrange(n)
            return data[:i] + bytes([r.choice((0, 1, 0x7F, 0x80, 0xFF, 0x10, 0x20))]) + data[i + 1 :]
        if op == 2:  # truncate
            return data[:pos]
        if op == 3:  # insert a token
            return data[:pos] + r.choice(BYTE_TOKENS) + data[pos:]
        if op == 4:  # insert random bytes
            return data[:pos] + r.randbytes(r.randint(1, 16)) + data[pos:]
        if op == 5 and n:  # delete a range
            end = min(n, pos + r.randint(1, 32))
            return data[:pos] + data[end:]
        if op == 6 and n:  # duplicate a range
            a = r.randrange(n)
            b = min(n, a + r.randint(1, 64))
            return data[:pos] + data[a:b] * r.choice((1, 2, 10)) + data[pos:]
        if op == 7:  # deep nesting spliced in
            depth = r.choice((1000, 5000, 100_000))
            return data[:pos] + b"[" * depth + b"]" * depth + data[pos:]
        if n:  # overwrite 4 bytes with an extreme integer
            i = r.randrange(n)
            word = r.choice((b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x10"))
            return data[:i] + word + data[i + 4 :]
        return data + r.choice(BYTE_TOKENS)

    def text(self, data: str, rounds: int | None = None) -> str:
        n = rounds if rounds is not None else self.rng.choice((1, 1, 2, 3))
        for _ in range(n):
            data = self._text_once(data)
        return data

    def _text_once(self, data: str) -> str:
        r = self.rng
        n = len(data)
        pos = r.randint(0, n)
        op = r.randrange(7)
        if op == 0:
            return data[:pos]
        if op == 1:
            return data[:pos] + r.choice(SURROGATES + ODD_CHARS) + data[pos:]
        if op == 2:
            return data[:pos] + r.choice(HUGE_DIGITS) + data[pos:]
        if op == 3 and n:
            end = min(n, pos + r.randint(1, 16))
            return data[:pos] + data[end:]
        if op == 4 and n:
            a = r.randrange(n)
            return data[:pos] + data[a : a + r.randint(1, 32)] * r.choice((1, 2, 10)) + data[pos:]
        if op == 5:
            return data[:pos] + self.string() + data[pos:]
        return data[:pos] + r.choice(BYTE_TOKENS).decode("utf-8", "surrogateescape") + data[pos:]


def pooled(
    fresh: Callable[[Mutator], Any], tweak: Callable[[Mutator, Any], Any], size: int = 64, refresh: int = 4
) -> Callable[[Mutator], Any]:
    """A generator that keeps ``size`` structure-aware inputs (made by ``fresh``) and, 3 times in 4, returns one
    of them with a cheap ``tweak`` instead of building a new one (encoding and compressing cost more than parsing).
    """
    key = f"pool:{id(fresh)}"

    def generate(m: Mutator) -> Any:
        pool = m.pools.setdefault(key, [])
        if len(pool) < size or m.rng.randrange(refresh) == 0:
            item = fresh(m)
            if len(pool) < size:
                pool.append(item)
            else:
                pool[m.rng.randrange(size)] = item
            return item
        return tweak(m, m.rng.choice(pool))

    return generate


def tweak_bytes(m: Mutator, data: bytes) -> bytes:
    return m.bytes(data, 1)


def tweak_text(m: Mutator, data: str) -> str:
    return m.text(data, 1)


def json_keys(*seeds: Any) -> tuple[str, ...]:
    """Every object key anywhere in the JSON values ``seeds``, sorted (the names a mutation may drop or invent)."""
    out: set[str] = set()
    stack = list(seeds)
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            out.update(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return tuple(sorted(out))
