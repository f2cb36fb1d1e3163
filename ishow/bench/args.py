"""Command-line arguments of ``ishow bench`` (kept apart so ``ishow --help`` does not import torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ishow.config.choices import PRECISIONS, VOCODER_BACKENDS


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="ishow bench", description="time text → waveform at the real model size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--iters", type=int, default=10, help="timed calls per row (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (graph capture happens here)")
    p.add_argument("--upstream", action=argparse.BooleanOptionalAction, default=None,
                   help="also time upstream f5_tts (default: when it imports)")  # fmt: skip
    p.add_argument("--vocoder-backend", default="auto", choices=VOCODER_BACKENDS)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.compile the DiT blocks and vocoder inside the CUDA graphs")  # fmt: skip
    p.add_argument("--engines-dir", default="models/engines")
    p.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True, help="fp16 vs fp32 check")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                   help="sampler and vocoder alone, graph vs eager (CUDA)")  # fmt: skip
    p.add_argument("--model", default="F5TTS_v1_Base", choices=["F5TTS_v1_Base", "tiny"],
                   help="tiny: a seconds-long smoke test of the bench itself")  # fmt: skip
    p.add_argument("--remote", metavar="URL|local",
                   help="the shared service (ishow serve at URL, or a local Ray+Serve) vs a local daemon")  # fmt: skip
    p.add_argument("--callers", default="1,4,8", help="--remote: simulated daemons per run, comma-separated")
    p.add_argument("--messages", type=int, default=20, help="--remote: timed messages per caller")
    p.add_argument("--token", default="", help="--remote: the service's [serve] token")
    p.add_argument("--batch-wait-ms", type=float, default=10.0, help="--remote local: serve.batch_wait_ms")
    p.add_argument("--json", type=Path, help="write the numbers here")
    e2e = p.add_argument_group("--e2e: the real daemon, message → /ws/obs header")
    e2e.add_argument("--e2e", action="store_true", help="start `ishow run` and time it through the API and /ws/obs")
    e2e.add_argument("--engine", default="auto", choices=["auto", "f5", "espeak"], help="auto: f5 on CUDA, else espeak")
    e2e.add_argument("--window-ms", type=int, default=80)
    e2e.add_argument("--max-items", type=int, default=8, help="batch.max_items (8: the shipped default)")
    e2e.add_argument(
        "--early-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch.early_start (on: the shipped default)",
    )
    e2e.add_argument("--idle", type=int, default=28, help="idle messages, one at a time, each a new length")
    e2e.add_argument("--idle-gap", type=float, default=0.3, help="seconds between idle messages")
    e2e.add_argument("--burst", type=int, default=16)
    e2e.add_argument("--during-warmup", type=int, default=6, help="messages sent before ready (padded/eager path)")
    e2e.add_argument("--rate", type=float, default=8.0, help="sustained messages per second")
    e2e.add_argument("--sustain-s", type=float, default=10.0)
    e2e.add_argument("--restarts", type=int, default=1, help="restart and time startup again (warm compile cache)")
    e2e.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one message's audio")
    e2e.add_argument("--startup-timeout", type=float, default=600.0)
    e2e.add_argument("--cache-dir", default="models/compile-cache", help="engine.compile_cache for the daemon")
    e2e.add_argument("--daemon-log", help="the daemon's log file (default: in the temp folder)")
    p.add_argument("--quiet", action="store_true")
    return p
