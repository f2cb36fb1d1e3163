"""Which DiT (and vocoder) kernels the GPU path uses, and the ``ISHOW_DIT_KERNELS`` switch that turns each newer one
off, or an opt-in one on, to measure it alone (``tools/dit_kernels_ab.py``, ``tools/vocoder_ab.py``, ``ishow bench``).

Padded attention (rows of one batch with different lengths, and every captured bucket) runs by default on cuDNN's
fused kernel with per-row lengths through NVIDIA's cuDNN frontend (:mod:`ishow.engine.accel.cudnn_attention`,
the optional ``nvidia-cudnn-frontend`` package: ``pip install 'ishow[cudnn]'``); without the package, or after its
first failure, on the flash kernel's varlen entry. On an H200: batch 16 −6 %, 16 mixed lengths −8 %, at the same
GPU memory (``tools/dit_kernels_ab.py``, ``tools/warm_memory.py``).

``ISHOW_DIT_KERNELS`` is a comma-separated list of:

* ``varlen``: padded attention on the flash kernel's varlen entry with per-row key lengths (the fallback above);
* ``masked``: padded attention on the memory-efficient kernel with the −inf key bias;
* ``cudnn-attn``: padded attention on cuDNN's fused kernel with the key bias (through torch);
* ``cudnn-fe``: the default attention, named (to pair it with ``legacy``);
* ``unfused``: each block's tail compiled apart from the next block's head (the FF residual not fused into the
  next LayerNorm);
* ``rope-inductor``: RoPE of q and k compiled by inductor inside the q/k/v projection's graph instead of the Triton
  kernel of :mod:`ishow.engine.accel.rope` after it;
* ``cudnn-conv``: the conv position embedding on cuDNN (16 per-group kernels plus transposes) instead of the
  Triton kernel of :mod:`ishow.engine.accel.conv_pos`;
* ``gelu-apart``: the FF's GELU as its own kernel instead of the first FF GEMM's epilogue (cuBLASLt);
* ``vocos-stages``: each Vocos ConvNeXt block as one compiled graph (depthwise conv on cuDNN, ~12 kernels) instead
  of the Triton kernel of :mod:`ishow.engine.accel.vocos_convnext` (depthwise conv + LayerNorm + the previous
  block's residual) and the FF's two GEMMs (3 kernels a block);
* ``vocos-fp32-head``: the fp16 vocoder's head GEMMs (Linear to log-magnitude/phase, inverse DFT) in fp32 instead
  of on fp16 operands with fp32 accumulation and output (the default on CUDA: 256 frames 0.316 → 0.278 ms,
  8 × 600 1.166 → 0.847 ms; wave error vs fp32 6.7e-4 → 8.2e-4, ``tools/vocoder_ab.py`` on an H200);
* ``vocos-exact-gelu``: the fp16 vocoder's block FF (Linear, GELU, Linear) compiled by inductor with the exact
  (erf) GELU as its own kernel, instead of two cuBLASLt GEMMs with the bias + GELU epilogue on the first; that
  epilogue's GELU is the tanh approximation (max 5e-4 from the exact one, below fp16's own rounding of it);
* ``vocos-conv-embed``: the fp16 vocoder's embedding conv (k 7) on cuDNN with its layout transposes, instead of
  one GEMM over the 7 shifted frames (im2col) inside the embedding's compiled graph. The two defaults together,
  with the frame masks built inside the compiled graphs (``tools/vocoder_ab.py``, H200, median of 200 decodes;
  default / both words): 256 frames 0.233 / 0.267–0.285 ms, 8 × 600 0.727–0.758 / 0.832–0.915 ms; the wave
  error vs the fp32 vocoder stays 8.24e-4;
* ``vocos-fused`` (opt-in): the vocoder's whole backbone as one channels-last compiled graph
  (:mod:`ishow.engine.accel.fast_vocos`) instead of its stages compiled apart: fewer kernels, but a much longer
  first compile (19.6 s + 28.8 s for the first two buckets cold on an H200) for a gain the bench did not confirm;
* ``legacy``: the kernels before issue 14's item 4 (``masked``, ``unfused``, ``cudnn-conv``, ``gelu-apart``,
  ``rope-inductor``, ``vocos-stages``, ``vocos-fp32-head``, ``vocos-exact-gelu``, ``vocos-conv-embed``); with
  an attention word, that attention instead of ``masked``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

KERNELS_ENV = "ISHOW_DIT_KERNELS"
WORDS = ("varlen", "masked", "cudnn-attn", "cudnn-fe", "unfused", "rope-inductor", "cudnn-conv", "gelu-apart",
         "vocos-stages", "vocos-fp32-head", "vocos-exact-gelu", "vocos-conv-embed", "vocos-fused",
         "legacy")  # fmt: skip
ATTENTION = ("cudnn-fe", "varlen", "masked", "cudnn")


@dataclass(frozen=True)
class Kernels:
    attention: str = "cudnn-fe"  # one of ATTENTION, for padded rows (unpadded rows always take SDPA's flash kernel)
    merge: bool = True
    triton_conv: bool = True
    gelu_epilogue: bool = True
    vocos_fused: bool = False
    triton_rope: bool = True
    vocos_triton: bool = True
    vocos_half_head: bool = True
    vocos_gelu_epilogue: bool = True
    vocos_gemm_embed: bool = True

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")


_ATTENTION_OF = {"varlen": "varlen", "masked": "masked", "cudnn-attn": "cudnn", "cudnn-fe": "cudnn-fe"}
LEGACY = Kernels(attention="masked", merge=False, triton_conv=False, gelu_epilogue=False, vocos_fused=False,
                 triton_rope=False, vocos_triton=False, vocos_half_head=False, vocos_gelu_epilogue=False,
                 vocos_gemm_embed=False)  # fmt: skip


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
    attention = _ATTENTION_OF[chosen.pop()] if chosen else Kernels.attention
    return Kernels(attention=attention, merge="unfused" not in off, triton_conv="cudnn-conv" not in off,
                   gelu_epilogue="gelu-apart" not in off, vocos_fused="vocos-fused" in off,
                   triton_rope="rope-inductor" not in off, vocos_triton="vocos-stages" not in off,
                   vocos_half_head="vocos-fp32-head" not in off, vocos_gelu_epilogue="vocos-exact-gelu" not in off,
                   vocos_gemm_embed="vocos-conv-embed" not in off)  # fmt: skip
