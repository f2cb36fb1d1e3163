"""``ishow bench`` plumbing (no timings asserted): imports, rows, ratios, table, CLI wiring."""

from __future__ import annotations

import subprocess
import sys

import torch

from ishow.bench.local import ratios, table
from ishow.bench.measure import Row, time_calls


def test_bench_imports_no_daemon_modules() -> None:
    code = (
        "import sys, ishow.bench.local, ishow.engine.accel.graphs, ishow.engine.accel.vocoder_backends,"
        " ishow.engine.accel.trt;"
        "print(sorted(m for m in ('aiohttp', 'structlog', 'sounddevice', 'ishow.config.schema') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_rows_ratios_and_table() -> None:
    ours = Row("ours batch 1", 1, ms=25.0, audio_s=3.0, peak_mb=1024.0)
    up = Row("upstream infer_batch_process b1", 1, ms=500.0, audio_s=3.0, peak_mb=2048.0)
    b16 = Row("ours batch 16", 16, ms=320.0, audio_s=48.0, peak_mb=1200.0)
    assert b16.ms_per_msg == 20.0 and abs(b16.rtf - 320 / 1000 / 48) < 1e-12
    assert ratios([ours, up, b16]) == {"batch 1: upstream infer_batch_process / ours": 20.0}
    text = table({"rows": [r.as_dict() for r in (ours, up)], "ratios": {"x": 20.0}, "checks": {"c": 1e-3}})
    assert "ours batch 1" in text and "ratio x: 20.0x" in text and "check c: 1.00e-03" in text
    assert ours.as_dict()["audio_s_per_s"] == 1 / ours.rtf


def test_time_calls_counts_warmup_and_iters() -> None:
    calls: list[int] = []
    median, spread = time_calls(lambda: calls.append(1), torch.device("cpu"), iters=5, warmup=2)
    assert len(calls) == 7 and median >= 0 and spread >= 0


def test_cli_has_bench_and_engines_build() -> None:
    from ishow.cli import build_parser

    args = build_parser().parse_args(["bench", "--iters", "3", "--no-upstream", "--json", "out/b.json"])
    assert args.iters == 3 and args.upstream is False and str(args.json) == "out/b.json"
    args = build_parser().parse_args(["engines", "build", "--force"])
    assert args.force and args.func.__name__ == "cmd_engines_build"
