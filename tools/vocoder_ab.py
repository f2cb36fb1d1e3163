"""A/B of the compiled vocoder forms (:mod:`ishow.engine.accel.fast_vocos`): per-stage graphs vs the whole
channels-last backbone as one graph (``vocos-fused``), and the fp32 graph, through ``TorchVocoder.decode`` (what
``ishow bench`` times: host work, graph replay, copy out) at 256 frames (batch 1) and 8 × 600 frames, with each
output vs the eager fp32 vocoder; first, the fp32 module's batch of 8 vs each item alone.

One device call: ``python3 tools/vocoder_ab.py``."""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch

from ishow.bench.local import random_models, rel_l2
from ishow.engine.accel.kernel_choice import KERNELS_ENV
from ishow.engine.accel.vocoder_backends import TorchVocoder


def main() -> None:
    device = torch.device("cuda")
    _, vocos = random_models()
    vocos = vocos.to(device)
    gen = torch.Generator().manual_seed(7)
    cases = {
        "b1 256f": [(torch.randn(256, 100, generator=gen) * 1.5 - 4).to(device)],
        "b8 600f": [(torch.randn(600 - 20 * i, 100, generator=gen) * 1.5 - 4).to(device) for i in range(8)],
    }
    cases["b1 600f"] = cases["b8 600f"][:1]
    ref = TorchVocoder(copy.deepcopy(vocos), use_graphs=False)
    want = {k: ref.decode(v) for k, v in cases.items()}
    # the fp32 module alone: a batch must decode like its items alone (cuFFT and non-Hermitian DC/Nyquist bins)
    b8 = cases["b8 600f"]
    alone = [ref.decode([m])[0] for m in b8]
    errs = [rel_l2(a, b) for a, b in zip(want["b8 600f"], alone, strict=True)]
    print("fp32 module, batch of 8 vs each alone:", " ".join(f"{e:.1e}" for e in errs))
    for setting in ("", "vocos-fused", "fp32 graph"):
        os.environ[KERNELS_ENV] = "" if setting == "fp32 graph" else setting
        voc = TorchVocoder(vocos, half=setting != "fp32 graph", compile=setting != "fp32 graph")
        for label, mels in cases.items():
            got = voc.decode(mels)
            errs = [rel_l2(a, b) for a, b in zip(got, want[label], strict=True)]
            err = max(errs)
            if len(errs) > 1:
                print(f"  per item: {' '.join(f'{e:.1e}' for e in errs)}")
            times = []
            for _ in range(200):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                voc.decode(mels)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1000)
            med = statistics.median(times)
            name = setting or "per stage (default)"
            print(f"{name:16} {label}: {med:.3f} ms (median of 200), min {min(times):.3f}, rel L2 vs fp32 eager "
                  f"{err:.2e}, compiled={voc.compile}", flush=True)  # fmt: skip
    os.environ.pop(KERNELS_ENV, None)


if __name__ == "__main__":
    main()
