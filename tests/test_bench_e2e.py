"""``ishow bench --e2e`` on this machine: the real daemon (espeak, no CUDA), a tiny run; structure and counts only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ishow.bench.e2e import idle_messages, percentile, summary
from tests.conftest import REPO


def test_percentile_and_summary() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        percentile([], 50)
    s = summary([10.0, 20.0, 30.0])
    assert s == {"n": 3, "p50_ms": 20.0, "p99_ms": 30.0, "max_ms": 30.0, "mean_ms": 20.0}
    assert summary([]) == {"n": 0}


def test_idle_messages_are_distinct_lengths_in_both_voices() -> None:
    msgs = idle_messages(28)
    assert len(msgs) == 28 and len({t for t, _ in msgs}) == 28
    assert {v for _, v in msgs} == {"default_zh", "default_en"}
    zh = [len(t) for t, v in msgs if v == "default_zh"]
    assert zh == sorted(zh) and len(set(zh)) == len(zh)


def test_e2e_bench_runs_the_real_daemon(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    log = tmp_path / "daemon.log"
    proc = subprocess.run(
        [
            sys.executable, "-m", "ishow", "bench", "--e2e", "--engine", "espeak", "--idle", "3", "--burst", "4",
            "--rate", "4", "--sustain-s", "1", "--restarts", "1", "--idle-gap", "0.02", "--timeout", "30",
            "--startup-timeout", "60", "--cache-dir", str(tmp_path / "cache"), "--json", str(out),
            "--daemon-log", str(log),
        ],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "idle message → header" in proc.stdout and "burst of 4" in proc.stdout
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["engine"] == "espeak" and set(r["batches_by_engine"]) == {"espeak"}
    assert len(r["starts"]) == 2 and r["exit_codes"] == [0, 0]
    for start in r["starts"]:
        assert 0 < start["http_s"] <= start["ready_s"]
    assert r["health_at_ready"]["ready"] is True
    assert r["idle"]["n"] == 3 and r["idle"]["lost"] == 0 and len(r["idle"]["ms"]) == 3
    assert r["idle"]["p50_ms"] <= r["idle"]["p99_ms"] <= r["idle"]["max_ms"]
    assert r["burst"]["sent"] == r["burst"]["delivered"] == 4
    assert r["burst"]["first_ms"] <= r["burst"]["last_ms"]
    assert r["burst"]["answered_ms"] > 0 and "all posts answered after" in proc.stdout
    assert r["burst"]["loop_lags_over_10ms"] >= r["burst"]["loop_lags_over_25ms"] >= 0
    assert "event loop late during the burst" in proc.stdout
    assert r["sustained"]["sent"] == r["sustained"]["delivered"] == 4
    assert r["health_after"]["ready"] is True
    assert "ishow is running" in log.read_text(encoding="utf-8")


def test_log_json_reads_objects_inside_json_log_lines() -> None:
    from ishow.bench.e2e import MEMORY_LINE, log_json

    line = '{"event": "warm-up memory {\\"allocated_mb\\": 1173, \\"reserved_mb\\": 3426}", "level": "info"}'
    found = MEMORY_LINE.findall(line)
    assert found and log_json(found[0]) == {"allocated_mb": 1173, "reserved_mb": 3426}
    assert log_json('{"a": 1}') == {"a": 1}
    assert log_json("{not json") is None and log_json("[1, 2]") is None


def test_capture_lines_of_a_json_log_are_read(tmp_path: Path) -> None:
    from ishow.bench.e2e import capture_records

    log = tmp_path / "daemon.log"
    task = '{\\"label\\": \\"dit 1x768 nfe7\\", \\"s\\": 21.4, \\"ok\\": true, \\"reserved_mb\\": 258.0}'
    log.write_text(f'{{"event": "warm-up task {task}", "level": "info"}}\nnoise\n', encoding="utf-8")
    assert capture_records(log) == [{"label": "dit 1x768 nfe7", "s": 21.4, "ok": True, "reserved_mb": 258.0}]


def test_loop_lags_over_reads_the_daemon_s_own_histogram() -> None:
    from ishow.bench.e2e import loop_lags_over
    from ishow.metrics import Metrics

    m = Metrics()
    for lag in (0.0004, 0.004, 0.012, 0.03, 0.2):
        m.loop_lag.observe(lag)
    text = m.render().decode()
    assert (loop_lags_over(text, 0.01), loop_lags_over(text, 0.025)) == (3.0, 2.0)
    assert loop_lags_over("", 0.01) == 0.0  # a daemon without the metric
