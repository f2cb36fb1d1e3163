"""Key-padded attention on cuDNN's fused kernel with per-row lengths, through NVIDIA's cuDNN frontend (opt-in:
``ISHOW_DIT_KERNELS=cudnn-fe``, see :mod:`ishow.engine.accel.kernel_choice` for why it is not the default).

Optional: the ``nvidia-cudnn-frontend`` package (``pip install 'ishow[cudnn]'``; it loads the libcudnn that torch
already ships). Its torch op runs cuDNN's SDPA on dense [B, H, N, Dh] tensors with a padding mask given as lengths:
every query row is computed and row b's queries see only its first ``lens[b]`` keys, exactly what the −inf key bias
(and the flash kernel's ``seqused_k``) did. The graph for a shape is built on first use (the warm-up run, outside
any capture); later calls only launch kernels on torch's current stream, so our CUDA graphs capture them.

Measured on an H200 (``tools/attn_ab.py``, µs per call inside a CUDA graph, 16 heads of 64, fp16), against the
flash kernel's varlen entry it replaces: 2 rows × 768 frames (batch 1) 25.9 vs 28.4; 2 × 1664 78.8 vs 100.2;
32 × 768 216 vs 289; 16 × 1792 of mixed lengths 336 vs 464. Same error against the fp32 reference (2.8e-4).

In the daemon (``ishow bench --e2e``, same H200, same session, flash varlen → this): a first burst of 16 delivered
by 331.8 instead of 360.8 ms, the longest idle messages 123.6 instead of 127.6 ms; but torch's allocated memory at
"ready" grew from 1065 to 1803 MB and the process's GPU memory from 2.78 to 3.54 GB (cause not found).

Without the package, on CPU, or after the first failure (logged once), :func:`usable` is False and
:func:`ishow.engine.accel.fused.attend` takes the flash varlen path. Nothing is imported until the first CUDA call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, Any] = {"probed": False, "fn": None, "error": None}


def _sdpa() -> Callable[..., Any] | None:
    """The frontend's torch-level SDPA, imported once; None when the package is missing or does not import."""
    with _lock:
        if not _state["probed"]:
            _state["probed"] = True
            try:
                from cudnn.sdpa.fwd.torch_op import sdpa  # type: ignore[import-not-found]

                _state["fn"] = sdpa
            except Exception as e:  # noqa: BLE001 (ImportError, or OSError/RuntimeError loading libcudnn)
                _state["error"] = f"{type(e).__name__}: {e}"
                log.info("cuDNN frontend attention unavailable (%s); using flash varlen", _state["error"])
        fn: Callable[..., Any] | None = _state["fn"]
        return fn


def usable(q: Tensor) -> bool:
    """Whether :func:`padded` can run ``q`` [B, H, N, Dh]: CUDA, fp16/bf16, head dim a multiple of 8 up to 128,
    the frontend importable and not failed before."""
    return (
        q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 128
        and _state["error"] is None
        and _sdpa() is not None
    )


def padded(q: Tensor, k: Tensor, v: Tensor, lens: Tensor, rows_full: Tensor) -> Tensor:
    """q, k, v [B, H, N, Dh] (any strides with a unit last one) → [B, H, N, Dh] in q's layout; ``lens`` int32 [B]
    valid keys per row (a prefix), ``rows_full`` int32 [B] filled with N (every query row is computed)."""
    fn = _sdpa()
    if fn is None:
        raise RuntimeError(f"cuDNN frontend attention unavailable: {_state['error']}")
    out: Tensor = fn(q, k, v, seq_len_q=rows_full, seq_len_kv=lens)
    return out


def disable(error: BaseException) -> None:
    """Stop using the frontend after its first failure (logged once); callers fall back to flash varlen."""
    with _lock:
        if _state["error"] is None:
            _state["error"] = f"{type(error).__name__}: {error}"
            log.warning("cuDNN frontend attention failed (%s); using flash varlen", _state["error"])


def failure() -> str | None:
    """Why the frontend is not used (import or first call failure), or None."""
    err: str | None = _state["error"]
    return err
