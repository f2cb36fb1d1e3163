"""Where the host time of one ``F5Engine.synthesize`` goes at batch 1 and batch 16 on CUDA (what ``ishow bench``
times): the whole call, the sampler alone and the vocoder alone (synchronized medians), then a cProfile of the
whole call (top functions by own time), so host work (input building, copies, syncs) shows apart from the graph
replays. Random weights at the real size, fp16.

One device call: ``python3 tools/host_profile.py``."""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
from pathlib import Path

import torch

from ishow.bench.e2e import ZH
from ishow.bench.local import MESSAGE, MIX, make_engine, random_models, requests
from ishow.bench.measure import time_calls
from ishow.config.engine import EngineConfig
from ishow.config.voice import VoiceSpec
from ishow.engine.accel.graphs import DEFAULT_CONFIG, config_key
from ishow.engine.warm_reference import REF_TEXT, write_reference


def main() -> None:
    device = torch.device("cuda")
    dit, vocos = random_models()
    eng = make_engine(EngineConfig(device="cuda", precision="fp16"), dit, vocos, device, torch.float16)
    tmp = Path(tempfile.mkdtemp(prefix="ishow-hostprof-"))
    voice = VoiceSpec(id="bench", ref_audio=write_reference(tmp / "ref.wav"), ref_text=REF_TEXT)
    assert eng.sampler is not None and eng.vocoder_backend is not None
    long_zh = (ZH * 2)[26:66]  # the e2e's slowest idle message (40 characters)
    for label, texts in (("batch 1", [MESSAGE]), ("batch 1 long", [long_zh]), ("batch 16", [MESSAGE] * 16),
                         ("chat mix 16", MIX)):  # fmt: skip
        reqs = requests(voice, texts)
        items = [eng._item(r)[0] for r in reqs]
        print(f"{label}: frames {[it.total_frames() for it in items]}")
        mels = eng.sampler.sample(items)
        whole, _ = time_calls(lambda r=reqs: eng.synthesize(r), device, 10, 3)  # type: ignore[misc]
        samp, _ = time_calls(lambda i=items: eng.sampler.sample(i), device, 10, 3)  # type: ignore[misc]
        voc, _ = time_calls(lambda m=mels: eng.vocoder_backend.decode(m), device, 10, 3)  # type: ignore[misc]
        prep, _ = time_calls(lambda r=reqs: [eng._item(x) for x in r], device, 10, 3)  # type: ignore[misc]
        bucket = eng.sampler.buckets.bucket(len(items), max(it.total_frames() for it in items)) or (0, 0)
        key = (*bucket, *config_key(DEFAULT_CONFIG))
        entry = eng.sampler._graphs.get(key)
        if entry is not None:
            replay, _ = time_calls(entry.graph.replay, device, 10, 3)
            print(f"{label}: graph replay alone {replay:.2f} ms (sampler {samp:.2f}: host work around it "
                  f"{samp - replay:.2f})")  # fmt: skip
        print(f"{label}: synthesize {whole:.2f} ms = sampler {samp:.2f} + vocoder {voc:.2f} + requests→items "
              f"{prep:.2f} + other {whole - samp - voc - prep:.2f}")  # fmt: skip
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            eng.synthesize(reqs)
        torch.cuda.synchronize()
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
        print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:4000])


if __name__ == "__main__":
    main()
