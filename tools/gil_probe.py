"""What a busy Python thread does to one message's synthesis on the GPU: the engine thread gives the GIL up in every
torch call and must take it back after, and each take-back waits for the busy thread's turn to end (the switch
interval). Real-size random weights, fp16, graphs; the e2e burst's first message (768 frames with default_zh).

One device call: ``python3 tools/gil_probe.py [--switch-ms 5,1,0.5,0.2] [--iters 15]``. Prints, per switch
interval, the message's synthesis time alone and beside a thread that runs Python without pause, and how many torch
calls one synthesis makes (each is a take-back).

Session 10 on an H200 (69 torch calls): alone ~16.5–20 ms at every interval; beside the busy thread 181–254 ms at
Python's default 5 ms, 36–47 ms at 1 ms, 39 ms at 0.5 ms. The daemon's event loop is not that busy, though: with
0.5 ms turns the e2e burst of 16 ended after 302.5, 311.8 and 320.2 ms against 305.9 and 313.4 ms at 5 ms, and its
first message took the same 18–27 ms, so the daemon keeps Python's default (session 9 found the same at 1 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ishow.bench.local import make_engine, random_models
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.base import SynthRequest

REPO = Path(__file__).resolve().parents[1]
REF_ZH = "大家好，欢迎来到我的直播间，今天我们一起聊天玩游戏。"


class _Count(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _busy(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(2000):
            x += i * i


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--switch-ms", default="5,1,0.5,0.2")
    ap.add_argument("--iters", type=int, default=15)
    a = ap.parse_args()
    dit, vocos = random_models()
    eng = make_engine(EngineConfig(device="cuda", precision="fp16"), dit, vocos, torch.device("cuda"), torch.float16)
    zh = VoiceSpec(id="default_zh", ref_audio=REPO / "voices" / "default_zh.wav", ref_text=REF_ZH)
    eng.prepare_voice(zh)
    reqs = [SynthRequest(text="主 零", voice=zh, seed=1)]
    for _ in range(5):  # compile and capture (untimed)
        eng.synthesize(reqs)
    torch.cuda.synchronize()

    def once() -> float:
        t = time.perf_counter()
        eng.synthesize(reqs)
        return (time.perf_counter() - t) * 1000

    for ms in (float(v) for v in a.switch_ms.split(",")):
        sys.setswitchinterval(ms / 1000)
        alone = [once() for _ in range(a.iters)]
        busy = []
        for _ in range(a.iters):
            stop = threading.Event()
            th = threading.Thread(target=_busy, args=(stop,))
            th.start()
            time.sleep(0.005)
            busy.append(once())
            stop.set()
            th.join()
        print(f"switch {ms:g} ms: alone median {statistics.median(alone):.2f} ms; beside a busy thread median "
              f"{statistics.median(busy):.2f} ms, max {max(busy):.2f} ms")  # fmt: skip
    try:  # last: a compiled function called under a mode may recompile
        with _Count() as count:
            eng.synthesize(reqs)
        print(f"torch calls in one synthesis: {count.calls}")
    except Exception as e:  # noqa: BLE001 - a diagnostic only
        print(f"torch calls not counted: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
