"""The fuzz loop: generate → run → classify; distinct failures are kept with a minimized input.

A failure is any exception a parser lets out that is not in its target's ``allowed`` tuple (all of which are
under ``ishow.errors.IshowError``). Two failures are the same when they have the same exception type and the
same innermost ``ishow/`` frame (file:line function).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tools.fuzz.mutate import Mutator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT = os.path.join(ROOT, "ishow") + os.sep


@dataclass(frozen=True)
class Target:
    """One parser entry point. ``generate`` makes one input (bytes, str or a JSON value) from seeds;
    ``run`` feeds it to the parser exactly as the daemon would."""

    name: str
    family: str
    generate: Callable[[Mutator], Any]
    run: Callable[[Any], object]
    allowed: tuple[type[BaseException], ...]
    keys: tuple[str, ...] = ()


class Hang(Exception):
    """One input ran longer than the hang limit."""


Signature = tuple[str, str]  # exception type, innermost project frame


@dataclass
class Failure:
    target: str
    signature: Signature
    message: str
    count: int
    first_input: Any
    minimized: Any = None


@dataclass
class TargetStats:
    target: str
    family: str
    inputs: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    failures: int = 0


@dataclass
class Report:
    seed: int
    stats: list[TargetStats] = field(default_factory=list)
    failures: dict[tuple[str, Signature], Failure] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def where(exc: BaseException) -> str:
    """The innermost frame of ``exc`` inside ``ishow/`` (else the innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if f.filename.startswith(PROJECT)]
    candidates = inside or list(frames)
    f = candidates[-1] if candidates else None
    if f is None:
        return "?"
    return f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} {f.name}"


def attempt(target: Target, data: Any) -> tuple[Signature, str] | None:
    """Run one input; the signature and message of a disallowed exception, or None."""
    try:
        target.run(data)
    except target.allowed:
        return None
    except Exception as e:  # noqa: BLE001 - the fuzzer exists to see every escaping exception
        return (type(e).__name__, where(e)), str(e)[:300]
    return None


@contextlib.contextmanager
def hang_guard(seconds: float | None) -> Iterator[None]:
    """Raise ``Hang`` inside a parser that runs longer than ``seconds`` (main thread, POSIX only)."""
    if not seconds or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"one input ran longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _arm(seconds: float | None) -> None:
    if seconds and hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, seconds)


# ---------------------------------------------------------------------------------------------- minimizing


def _shrink_seq(data: Any, same: Callable[[Any], bool], budget: list[int]) -> Any:
    """Remove chunks of a bytes/str while the failure stays the same (ddmin-style, halving chunk sizes)."""
    chunk = max(1, len(data) // 2)
    while chunk >= 1 and budget[0] > 0:
        i, changed = 0, False
        while i < len(data) and budget[0] > 0:
            candidate = data[:i] + data[i + chunk :]
            budget[0] -= 1
            if candidate != data and same(candidate):
                data, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return data


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _candidates(value: Any, depth: int = 0) -> Iterator[Any]:
    """Smaller versions of a JSON value: a child hoisted, an entry dropped, a scalar simplified, recursively."""
    yield from _children(value)
    if depth > 60:
        return
    if isinstance(value, dict):
        for k in value:
            yield {kk: vv for kk, vv in value.items() if kk != k}
        for k, v in value.items():
            for smaller in _candidates(v, depth + 1):
                yield {**value, k: smaller}
    elif isinstance(value, list):
        if len(value) > 1:
            yield value[: len(value) // 2]
        for i in range(len(value)):
            yield value[:i] + value[i + 1 :]
        for i, v in enumerate(value):
            for smaller in _candidates(v, depth + 1):
                yield [*value[:i], smaller, *value[i + 1 :]]
    elif isinstance(value, str) and len(value) > 1:
        yield value[: len(value) // 2]
        yield value[:1]
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10:
        yield value // 10


def _shrink_json(value: Any, same: Callable[[Any], bool], budget: list[int]) -> Any:
    progress = True
    while progress and budget[0] > 0:
        progress = False
        for candidate in _candidates(value):
            budget[0] -= 1
            if budget[0] <= 0:
                break
            if same(candidate):
                value, progress = candidate, True
                break
    return value


def minimize(target: Target, data: Any, signature: Signature, budget: int = 3000, hang_s: float | None = None) -> Any:
    def same(candidate: Any) -> bool:
        _arm(hang_s)
        try:
            got = attempt(target, candidate)
        except Hang:
            got = (("Hang", "?"), "")
        finally:
            _arm(0)
        return got is not None and got[0] == signature

    left = [budget]
    if isinstance(data, bytes | str):
        return _shrink_seq(data, same, left)
    return _shrink_json(data, same, left)


def show(data: Any, limit: int = 400) -> str:
    """An input for the report: repr of bytes/str, JSON text of values (lone surrogates escaped)."""
    if isinstance(data, bytes | str):
        text = repr(data)
    else:
        try:
            text = json.dumps(data, ensure_ascii=True)
        except (ValueError, RecursionError):
            text = repr(data)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# ---------------------------------------------------------------------------------------------- the loop


def fuzz(
    targets: list[Target],
    inputs: dict[str, int],
    seconds: float | None,
    seed: int,
    *,
    do_minimize: bool = True,
    hang_s: float | None = None,
    progress: Callable[[TargetStats], None] | None = None,
) -> Report:
    """Run every target for ``inputs[target.name]`` inputs, each within an equal share of ``seconds``."""
    report = Report(seed)
    share = seconds / len(targets) if seconds and targets else None
    with hang_guard(hang_s):
        for target in targets:
            stats = TargetStats(target.name, target.family)
            report.stats.append(stats)
            rng = random.Random(f"{seed}:{target.name}")
            mutator = Mutator(rng, target.keys)
            start = time.perf_counter()
            for n in range(inputs.get(target.name, 0)):
                if share is not None and n % 32 == 0 and time.perf_counter() - start > share:
                    break
                data = target.generate(mutator)
                t0 = time.perf_counter()
                _arm(hang_s)
                try:
                    got = attempt(target, data)
                except Hang as e:
                    got = (("Hang", "?"), str(e))
                finally:
                    _arm(0)
                took = time.perf_counter() - t0
                stats.slowest_s = max(stats.slowest_s, took)
                stats.inputs += 1
                if progress is not None and stats.inputs % 100_000 == 0:
                    stats.seconds = time.perf_counter() - start
                    progress(stats)
                if got is None:
                    continue
                signature, message = got
                stats.failures += 1
                key = (target.name, signature)
                known = report.failures.get(key)
                if known is not None:
                    known.count += 1
                    continue
                report.failures[key] = Failure(target.name, signature, message, 1, data)
                if do_minimize:
                    report.failures[key].minimized = minimize(target, data, signature, hang_s=hang_s)
            stats.seconds = time.perf_counter() - start
            if progress is not None:
                progress(stats)
    return report


def render(report: Report) -> str:
    lines = [
        f"seed {report.seed}",
        f"{'parser':<22} {'family':<14} {'inputs':>10} {'seconds':>9} {'inputs/s':>9} {'slowest ms':>10} "
        f"{'failures':>9} {'distinct':>8}",
    ]
    families: dict[str, list[TargetStats]] = {}
    for s in report.stats:
        families.setdefault(s.family, []).append(s)
        distinct = sum(1 for (t, _) in report.failures if t == s.target)
        rate = s.inputs / s.seconds if s.seconds > 0 else 0.0
        lines.append(
            f"{s.target:<22} {s.family:<14} {s.inputs:>10} {s.seconds:>9.1f} {rate:>9.0f} {s.slowest_s * 1e3:>10.1f} "
            f"{s.failures:>9} {distinct:>8}"
        )
    lines.append("")
    lines.append(f"{'family':<14} {'inputs':>10} {'seconds':>9} {'failures':>9}")
    for fam, group in families.items():
        lines.append(
            f"{fam:<14} {sum(s.inputs for s in group):>10} {sum(s.seconds for s in group):>9.1f} "
            f"{sum(s.failures for s in group):>9}"
        )
    total = sum(s.inputs for s in report.stats)
    lines.append(f"{'total':<14} {total:>10} {sum(s.seconds for s in report.stats):>9.1f}")
    if report.failures:
        lines.append("")
        lines.append(f"{len(report.failures)} distinct failures:")
        for f in report.failures.values():
            lines.append(f"[{f.target}] {f.signature[0]} at {f.signature[1]} (x{f.count}): {f.message[:200]}")
            lines.append(f"    minimized: {show(f.minimized if f.minimized is not None else f.first_input)}")
    else:
        lines.append("no failures: every exception was an allowed ishow error")
    return "\n".join(lines)
