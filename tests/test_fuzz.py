"""The parser fuzz harness (tools/fuzz): a short fixed-seed run over every parser, and the harness itself.

The long runs (``python -m tools.fuzz --inputs 1000000 --seed 17``) are not tests; this one runs a few hundred
inputs per parser family so CI sees a parser that starts leaking non-project exceptions again.
"""

from __future__ import annotations

import random

import pytest

from ishow.errors import ProtocolError
from tools.fuzz import all_targets, fuzz, quotas, render, select
from tools.fuzz.__main__ import main
from tools.fuzz.mutate import Mutator
from tools.fuzz.runner import Target, minimize

FAMILIES = {"bilibili", "bilibili_open", "twitch", "youtube", "wsinput", "http", "config"}


def test_every_parser_family_has_targets() -> None:
    assert {t.family for t in all_targets()} == FAMILIES
    assert [t.name for t in select(["youtube"])] == ["youtube.chat", "youtube.body", "youtube.page"]
    assert [t.name for t in select(["twitch.line", "config"])] == ["twitch.line", "config.toml"]
    with pytest.raises(ValueError, match="unknown parser nope"):
        select(["nope"])


def test_short_fixed_seed_run_has_no_failures() -> None:
    targets = all_targets()
    report = fuzz(targets, quotas(targets, 300), None, seed=17)
    text = render(report)
    assert not report.failures, text
    per_family: dict[str, int] = {}
    for s in report.stats:
        per_family[s.family] = per_family.get(s.family, 0) + s.inputs
    assert per_family == dict.fromkeys(FAMILIES, 300)
    assert "no failures" in text


def test_quota_split_and_determinism() -> None:
    targets = select(["bilibili_open"])
    assert quotas(targets, 10) == {"bilibili_open.frame": 4, "bilibili_open.command": 3, "bilibili_open.reply": 3}
    target = select(["wsinput"])[0]
    a = [target.generate(Mutator(random.Random("7:x"), target.keys)) for _ in range(3)]
    b = [target.generate(Mutator(random.Random("7:x"), target.keys)) for _ in range(3)]
    assert a == b


def _picky(data: bytes) -> None:
    """A deliberately broken parser: ``\\xff`` anywhere is a TypeError, an empty input a ProtocolError."""
    if not data:
        raise ProtocolError("empty")
    if b"\xff" in data:
        raise TypeError("unexpected byte")


def test_harness_reports_and_minimizes_a_failure() -> None:
    seed = b'{"user": "ann", "text": "hello there", "id": "x1"}'
    target = Target("fake.bytes", "fake", lambda m: m.bytes(seed, 3), _picky, (ProtocolError,))
    report = fuzz([target], {"fake.bytes": 400}, None, seed=1)
    assert report.failed
    ((key, failure),) = report.failures.items()
    assert key == ("fake.bytes", ("TypeError", failure.signature[1]))
    assert failure.signature[1].endswith(" _picky")
    assert failure.minimized == b"\xff"
    assert failure.count == report.stats[0].failures > 0
    assert "TypeError" in render(report) and "minimized: b'\\xff'" in render(report)


def test_json_minimizer_keeps_only_what_fails() -> None:
    def run(obj: object) -> None:
        if isinstance(obj, dict) and isinstance(obj.get("c"), dict) and obj["c"].get("n") == 0:
            raise ZeroDivisionError

    target = Target("fake.json", "fake", lambda m: {}, run, (ProtocolError,))
    big = {"a": [1, 2, {"b": "x" * 50}], "c": {"n": 0, "m": [None, True]}, "d": "y"}
    from tools.fuzz.runner import attempt

    got = attempt(target, big)
    assert got is not None
    assert minimize(target, big, got[0]) == {"c": {"n": 0}}


def test_cli_lists_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list", "--parser", "twitch"]) == 0
    assert "twitch.line" in capsys.readouterr().out
    assert main(["--inputs", "40", "--seed", "3", "--parser", "wsinput", "--hang", "0"]) == 0
    out = capsys.readouterr().out
    assert "wsinput.frame" in out and "no failures" in out
