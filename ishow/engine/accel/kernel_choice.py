"""Which DiT (and vocoder) kernels the GPU path uses, and the ``ISHOW_DIT_KERNELS`` switch that turns each newer one
off, or an opt-in one on, to measure it alone (``tools/dit_kernels_ab.py``, ``tools/vocoder_ab.py``, ``ishow bench``).

``ISHOW_DIT_KERNELS`` is a comma-separated list of:

* ``masked``: padded attention on the memory-efficient kernel with the −inf key bias (instead of the flash
  kernel's varlen entry with per-row key lengths);
* ``cudnn-attn``: padded attention on cuDNN's fused kernel with the key bias;
* ``unfused``: each block's tail compiled apart from the next block's head (the FF residual not fused into the
  next LayerNorm);
* ``cudnn-conv``: the conv position embedding on cuDNN (16 per-group kernels plus transposes) instead of the
  Triton kernel of :mod:`ishow.engine.accel.conv_pos`;
* ``gelu-apart``: the FF's GELU as its own kernel instead of the first FF GEMM's epilogue (cuBLASLt);
* ``vocos-fused`` (opt-in): the vocoder's whole backbone as one channels-last compiled graph
  (:mod:`ishow.engine.accel.fast_vocos`) instead of its stages compiled apart: fewer kernels, but a much longer
  first compile (19.6 s + 28.8 s for the first two buckets cold on an H200) for a gain the bench did not confirm;
* ``cudnn-fe`` (opt-in): padded attention on cuDNN's fused kernel with per-row lengths, through the cuDNN frontend
  (:mod:`ishow.engine.accel.cudnn_attention`; needs ``nvidia-cudnn-frontend``, falls back to flash varlen by
  itself). On an H200 it is faster (batch 16 −7 %, 16 mixed lengths −9 %, a first burst of 16 −29 ms) but the
  daemon's GPU memory grew from 2.78 to 3.54 GB (torch allocated +738 MB, cause not found), over the 3 GB budget;
* ``legacy``: the kernels before issue 14's item 4 (``masked``, ``unfused``, ``cudnn-conv``, ``gelu-apart``); with
  ``cudnn-attn`` or ``cudnn-fe``, that attention instead of ``masked``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

KERNELS_ENV = "ISHOW_DIT_KERNELS"
WORDS = ("masked", "cudnn-attn", "cudnn-fe", "unfused", "cudnn-conv", "gelu-apart", "vocos-fused", "legacy")
ATTENTION = ("varlen", "masked", "cudnn", "cudnn-fe")


@dataclass(frozen=True)
class Kernels:
    attention: str = "varlen"  # one of ATTENTION, for padded rows (unpadded rows always take SDPA's flash kernel)
    merge: bool = True
    triton_conv: bool = True
    gelu_epilogue: bool = True
    vocos_fused: bool = False

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")


_ATTENTION_OF = {"masked": "masked", "cudnn-attn": "cudnn", "cudnn-fe": "cudnn-fe"}
LEGACY = Kernels(attention="masked", merge=False, triton_conv=False, gelu_epilogue=False, vocos_fused=False)


def from_env() -> Kernels:
    """The kernels ``ISHOW_DIT_KERNELS`` asks for (the defaults when unset); a clear error for an unknown word."""
    raw = os.environ.get(KERNELS_ENV, "")
    off = {w.strip().lower() for w in raw.split(",") if w.strip()}
    unknown = off - set(WORDS)
    if unknown:
        raise ValueError(f"{KERNELS_ENV}={raw!r}: expected a comma-separated list of {', '.join(WORDS)}")
    chosen = off & set(_ATTENTION_OF)
    if len(chosen) > 1:
        raise ValueError(f"{KERNELS_ENV}={raw!r}: {' and '.join(sorted(chosen))} each choose the attention kernel")
    if "legacy" in off:
        return LEGACY if not chosen else dataclasses.replace(LEGACY, attention=_ATTENTION_OF[chosen.pop()])
    attention = _ATTENTION_OF[chosen.pop()] if chosen else "varlen"
    return Kernels(attention=attention, merge="unfused" not in off, triton_conv="cudnn-conv" not in off,
                   gelu_epilogue="gelu-apart" not in off, vocos_fused="vocos-fused" in off)  # fmt: skip
