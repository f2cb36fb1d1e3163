"""GPU memory after the daemon's whole warm-up plan, by allocation site: an :class:`F5Engine` (random weights at the
real size, fp16, compiled blocks, the daemon's defaults) runs every warm-up task of the bench voice for
``batch.max_items`` 8 in order, as the warm-up thread would, while torch records allocation history; then torch's
allocated / reserved memory and the blocks still allocated, summed by the first call site outside torch, are
printed. Run it once per ``ISHOW_DIT_KERNELS`` setting to see what a kernel choice keeps alive.

One device call: ``ISHOW_DIT_KERNELS=varlen python3 tools/warm_memory.py [max_items]``."""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ishow.bench.local import make_engine, random_models
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.warm_reference import REF_TEXT, write_reference


def site(frames: list[dict[str, Any]]) -> str:
    """The first two stack frames outside torch itself (else the innermost frame)."""
    mine = [f for f in frames if "/torch/" not in str(f.get("filename", "")) and "<" not in str(f.get("filename"))]
    if not mine:
        return str(frames[0].get("name")) if frames else "?"
    return " < ".join(f"{Path(str(f['filename'])).name}:{f.get('line')} {f.get('name')}" for f in mine[:2])


def live_sites() -> list[tuple[str, int, int]]:
    """(site, bytes, blocks) still allocated, largest first (only allocations made while history was recorded)."""
    size: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    snap: Any = torch.cuda.memory._snapshot()
    for seg in snap["segments"]:
        for blk in seg["blocks"]:
            if blk["state"] == "active_allocated":
                where = site(blk.get("frames") or [])
                size[where] += int(blk["size"])
                count[where] += 1
    return [(w, s, count[w]) for w, s in size.most_common(14)]


def main() -> None:
    max_items = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    setting = os.environ.get("ISHOW_DIT_KERNELS", "") or "default"
    dit, vocos = random_models()
    tmp = Path(tempfile.mkdtemp(prefix="ishow-warm-memory-"))
    voice = VoiceSpec(id="bench", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    cfg = EngineConfig(device="cuda", precision="fp16", compile=True, compile_cache=tmp / "cache")
    engine = make_engine(cfg, dit, vocos, torch.device("cuda"), torch.float16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=500_000, stacks="python")
    tasks = engine.warmup_tasks([voice], max_items)
    t0 = time.perf_counter()
    failed: list[str] = []

    def run_all() -> None:  # on its own thread, like the daemon's warm-up thread
        for task in tasks:
            try:
                task.run()
            except Exception as e:  # noqa: BLE001 (report and go on, as the warmer does)
                failed.append(f"{task.label}: {type(e).__name__}: {e}")

    worker = threading.Thread(target=run_all)
    worker.start()
    worker.join()
    torch.cuda.synchronize()
    alloc, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    print(f"== {setting}: {len(tasks)} warm-up tasks in {time.perf_counter() - t0:.1f} s ({len(failed)} failed "
          f"{failed[:2]}); torch allocated {alloc / 2**20:.0f} MB (+{(alloc - base) / 2**20:.0f} over the weights), "
          f"reserved {reserved / 2**20:.0f} MB, peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")  # fmt: skip
    for where, nbytes, blocks in live_sites()[:8]:
        print(f"   {nbytes / 2**20:9.1f} MB in {blocks:4d} blocks  {where}")
    torch.cuda.memory._record_memory_history(enabled=None)


if __name__ == "__main__":
    main()
