"""Why one message on an idle stream takes longer in the daemon than in ``ishow bench``: the same
``F5Engine.synthesize`` timed back to back (as the bench does), after an idle gap (as chat on a quiet stream
arrives: the GPU has been idle for the gap), after the same gap with the GPU kept busy by a spin kernel during the
last ``--busy-ms`` (the batching window), and with a second Python thread competing for the GIL (the daemon's
event loop). The SM clock (NVML) is read before each timed call.

One device call: ``python3 tools/idle_gap.py [--gap 0.4] [--busy-ms 80] [--iters 10]``. Random weights at the
real size, fp16, compiled graphs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ishow.bench.e2e import ZH
from ishow.bench.local import MESSAGE, make_engine, random_models, requests
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.warm_reference import REF_TEXT, write_reference


def spin(ms: float) -> None:
    """Keep the GPU busy for about ``ms`` (one spinning kernel), then wait for it."""
    rate = torch.cuda.clock_rate() or 1980  # MHz
    torch.cuda._sleep(int(ms * 1000 * rate))  # type: ignore[no-untyped-call]
    torch.cuda.synchronize()


def timed(fn: Callable[[], object], before: Callable[[], None], iters: int) -> tuple[float, float, list[int]]:
    times, clocks = [], []
    for _ in range(iters):
        before()
        clocks.append(int(torch.cuda.clock_rate() or 0))
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times), clocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gap", type=float, default=0.4)
    ap.add_argument("--busy-ms", type=float, default=80.0)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    device = torch.device("cuda")
    dit, vocos = random_models()
    eng = make_engine(EngineConfig(device="cuda", precision="fp16"), dit, vocos, device, torch.float16)
    tmp = Path(tempfile.mkdtemp(prefix="ishow-idlegap-"))
    voice = VoiceSpec(id="bench", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    stop = threading.Event()

    def gil_hog() -> None:
        while not stop.is_set():
            sum(range(2000))  # pure Python: holds the GIL in 5 ms slices like a busy event loop
            time.sleep(0.0005)

    for label, text in (("short", MESSAGE), ("long", (ZH * 2)[26:66])):
        reqs = requests(voice, [text])
        frames = eng._item(reqs[0])[0].total_frames()
        for _ in range(3):
            eng.synthesize(reqs)
        torch.cuda.synchronize()

        def run(r: object = reqs) -> object:
            return eng.synthesize(r)  # type: ignore[arg-type]

        def gap_then_spin() -> None:
            time.sleep(max(0.0, a.gap - a.busy_ms / 1000))
            spin(a.busy_ms)

        rows: dict[str, Callable[[], None]] = {
            "back to back": lambda: None,
            f"after {a.gap:.2f} s idle": lambda: time.sleep(a.gap),
            f"after {a.gap:.2f} s, GPU busy the last {a.busy_ms:.0f} ms": gap_then_spin,
        }
        for name, before in rows.items():
            med, worst, clocks = timed(run, before, a.iters)
            print(f"{label} ({frames} frames): {name:40s} median {med:6.2f} ms, max {worst:6.2f} ms, SM MHz {clocks}")
        hog = threading.Thread(target=gil_hog, daemon=True)
        hog.start()
        med, worst, clocks = timed(run, lambda: time.sleep(a.gap), a.iters)
        stop.set()
        hog.join()
        stop.clear()
        print(f"{label} ({frames} frames): {'after the gap, a GIL-busy thread':40s} median {med:6.2f} ms, "
              f"max {worst:6.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
