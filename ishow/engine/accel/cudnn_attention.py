"""Key-padded attention on cuDNN's fused kernel with per-row lengths, through NVIDIA's cuDNN frontend: the DiT's
default where the package is installed (``ISHOW_DIT_KERNELS=varlen`` picks the flash kernel instead, see
:mod:`ishow.engine.accel.kernel_choice`).

Optional: the ``nvidia-cudnn-frontend`` package (``pip install 'ishow[cudnn]'``; it loads the libcudnn that torch
already ships). We build one cuDNN SDPA graph per (shape, strides, dtype) with its Python graph API, for dense
[B, H, N, Dh] tensors with a padding mask given as lengths: every query row is computed and row b's queries see
only its first ``lens[b]`` keys, exactly what the −inf key bias (and the flash kernel's ``seqused_k``) did. The
graph is built on first use (the warm-up run, outside any capture); later calls only launch its kernel on torch's
current stream, so our CUDA graphs capture it. Built graphs are kept for the life of the process: a captured CUDA
graph launches the kernel their plans loaded.

**No tensor of ours stays reachable from the frontend.** Through its torch op (``cudnn.sdpa.fwd.torch_op.sdpa``)
the daemon's GPU memory grew from 2.78 to 3.54 GB: the frontend keeps a stack frame of each graph build alive, and
a build on the caller's thread pinned every tensor of the DiT forward that made the first call of that shape (the
warm-up run before each capture). We build on a thread of our own (:func:`_built`) and pass bare addresses to
``execute``. Measured with ``tools/warm_memory.py`` on an H200 (the daemon's warm-up plan, ``max_items`` 8): torch
allocated +257 MB over the weights with flash varlen, +624 MB through the torch op, +257 MB this way; the daemon
(``ishow bench --e2e``) 2.80 GB (nvidia-smi).

Measured on an H200 (``tools/attn_ab.py``, µs per call inside a CUDA graph, 16 heads of 64, fp16), against the
flash kernel's varlen entry it replaces: 2 rows × 768 frames (batch 1) 25.9 vs 28.4; 2 × 1664 78.8 vs 100.2;
32 × 768 216 vs 289; 16 × 1792 of mixed lengths 336 vs 464. Same error against the fp32 reference (2.8e-4).

Without the package, on CPU, or after the first failure (logged once), :func:`usable` is False and
:func:`ishow.engine.accel.fused.attend` takes the flash varlen path. Nothing is imported until the first CUDA call.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, Any] = {"probed": False, "module": None, "error": None}
_tls = threading.local()  # cuDNN handles are not thread-safe: one per thread (and device)
# uids of the graph's operands (any distinct integers; the execute call binds raw pointers to them)
_Q, _K, _V, _O, _LEN_Q, _LEN_KV = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class _Graph:
    graph: Any  # cudnn.pygraph, built
    workspace: int  # bytes


_graphs: dict[Any, _Graph] = {}  # keyed by _Key; kept for the process (captured graphs launch their kernels)
_build_lock = threading.Lock()
_builder: ThreadPoolExecutor | None = None  # one thread builds every graph (see _built)


def _cudnn() -> Any | None:
    """The frontend's module, imported once; None when the package is missing or does not import."""
    with _lock:
        if not _state["probed"]:
            _state["probed"] = True
            try:
                import cudnn  # type: ignore[import-not-found]

                _state["module"] = cudnn
            except Exception as e:  # noqa: BLE001 (ImportError, or OSError/RuntimeError loading libcudnn)
                _state["error"] = f"{type(e).__name__}: {e}"
                log.info("cuDNN frontend attention unavailable (%s); using flash varlen", _state["error"])
        return _state["module"]


def usable(q: Tensor) -> bool:
    """Whether :func:`padded` can run ``q`` [B, H, N, Dh]: CUDA, fp16/bf16, head dim a multiple of 8 up to 128,
    the frontend importable and not failed before."""
    return (
        q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 128
        and _state["error"] is None
        and _cudnn() is not None
    )


def _handle(cudnn: Any, device: torch.device) -> Any:
    """This thread's cuDNN handle for ``device``, bound to torch's current stream (a capture's stream included)."""
    handles: dict[torch.device, Any] | None = getattr(_tls, "handles", None)
    if handles is None:
        handles = _tls.handles = {}
    if device not in handles:
        with torch.cuda.device(device):
            handles[device] = cudnn.create_handle()
    cudnn.set_stream(handle=handles[device], stream=torch.cuda.current_stream(device).cuda_stream)
    return handles[device]


# (dtype, device, q shape, v shape, q/k/v/o strides): everything a graph is built from
_Key = tuple[torch.dtype, torch.device, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...],
             tuple[int, ...], tuple[int, ...]]  # fmt: skip


def layout_key(q: Tensor, k: Tensor, v: Tensor, o: Tensor) -> _Key:
    """What a graph is built for: dtype, device, shapes and every operand's strides."""
    return (q.dtype, q.device, tuple(q.shape), tuple(v.shape), q.stride(), k.stride(), v.stride(), o.stride())


def fused_key(batch: int, heads: int, frames: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> _Key:
    """The key of the operands :func:`ishow.engine.accel.fused.attn_in` makes for ``batch`` rows (CFG halves
    included): q and k [B, N, H, Dh] contiguous, seen as [B, H, N, Dh]; v a view of the [B, N, 3, H, Dh]
    projection; the output in q's layout."""
    hd = heads * head_dim
    shape = (batch, heads, frames, head_dim)
    q_stride = (frames * hd, head_dim, hd, 1)
    return (dtype, device, shape, shape, q_stride, q_stride, (frames * 3 * hd, head_dim, 3 * hd, 1), q_stride)


def graphs_built() -> int:
    """How many attention graphs this process has built (one per key)."""
    return len(_graphs)


def prebuild(keys: list[_Key]) -> int:
    """Build the graphs of ``keys`` now (the warm-up plan's buckets, before "ready"); how many were new. A build
    holds the GIL for ~45 ms (measured on an H200 with a probe thread: no other Python thread runs meanwhile), so
    one during live chat would stall the event loop and the engine thread; captures after "ready" then build none.
    Does nothing when the frontend is unusable; a failure disables it (flash varlen takes over)."""
    cudnn = _cudnn()
    if cudnn is None or _state["error"] is not None:
        return 0
    new = 0
    for key in keys:
        if key in _graphs:
            continue
        try:
            _built(cudnn, key)
        except Exception as e:  # noqa: BLE001 (the frontend raises its own error types)
            disable(e)
            return new
        new += 1
    return new


def _build(cudnn: Any, key: _Key) -> _Graph:
    """cuDNN's SDPA forward for these exact shapes and strides, with a padding mask from per-row lengths, its
    heuristics' first plan that builds. Runs on the builder thread (:func:`_built`): no tensor may be reachable
    from its stack."""
    g = planned(cudnn, key, [cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    g.build_plans()
    return _Graph(graph=g, workspace=int(g.get_workspace_size()))


def planned(cudnn: Any, key: _Key, heuristics: list[Any]) -> Any:
    """The SDPA graph for ``key``, validated, with the ranked execution plans of ``heuristics`` created (none built:
    :func:`_build` builds the first that can; ``tools/attn_plans.py`` times each)."""
    dtype, device, q_shape, v_shape, q_stride, k_stride, v_stride, o_stride = key
    io = {torch.float16: cudnn.data_type.HALF, torch.bfloat16: cudnn.data_type.BFLOAT16}[dtype]
    g = cudnn.pygraph(
        handle=_handle(cudnn, device), io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
        compute_data_type=cudnn.data_type.FLOAT,
    )  # fmt: skip

    def operand(name: str, shape: tuple[int, ...], stride: tuple[int, ...], uid: int) -> Any:
        return g.tensor(name=name, dim=list(shape), stride=list(stride), data_type=io, uid=uid)

    b = q_shape[0]
    lens = [
        g.tensor(name=name, dim=[b, 1, 1, 1], stride=[1, 1, 1, 1], data_type=cudnn.data_type.INT32, uid=uid)
        for name, uid in (("len_q", _LEN_Q), ("len_kv", _LEN_KV))
    ]
    out, _ = g.sdpa(
        name="sdpa", q=operand("q", q_shape, q_stride, _Q), k=operand("k", q_shape, k_stride, _K),
        v=operand("v", v_shape, v_stride, _V), generate_stats=False, attn_scale=q_shape[-1] ** -0.5,
        use_padding_mask=True, seq_len_q=lens[0], seq_len_kv=lens[1],
    )  # fmt: skip
    out.set_uid(_O).set_output(True).set_dim([*q_shape[:3], v_shape[3]]).set_stride(list(o_stride))
    out.set_data_type(io)
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans(heuristics)
    return g


def _built(cudnn: Any, key: _Key) -> _Graph:
    """The graph for ``key``, built once on a thread of its own. The frontend keeps a reference to a stack frame
    of the build (a traceback it stores while ranking plans); built on the caller's thread, that frame's callers
    (the whole DiT forward of a warm-up run) and every tensor they hold stayed alive for good: on an H200 the
    daemon's warm-up left 370 MB more allocated (``tools/warm_memory.py``)."""
    entry = _graphs.get(key)
    if entry is not None:
        return entry
    global _builder
    with _build_lock:
        entry = _graphs.get(key)
        if entry is None:
            if _builder is None:
                _builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cudnn-graph-build")
            entry = _graphs[key] = _builder.submit(_build, cudnn, key).result()
    return entry


def _aligned(*ts: Tensor) -> bool:
    return all(t.data_ptr() % 16 == 0 and all(s % 8 == 0 for s in t.stride()[:-1]) for t in ts)


def padded(q: Tensor, k: Tensor, v: Tensor, lens: Tensor, rows_full: Tensor) -> Tensor:
    """q, k, v [B, H, N, Dh] (any strides with a unit last one) → [B, H, N, Dh] in q's layout; ``lens`` int32 [B]
    valid keys per row (a prefix), ``rows_full`` int32 [B] filled with N (every query row is computed)."""
    cudnn = _cudnn()
    if cudnn is None:
        raise RuntimeError(f"cuDNN frontend attention unavailable: {_state['error']}")
    if not _aligned(q, k, v):  # cuDNN wants 16-byte aligned bases and strides
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    lens, rows_full = lens.to(torch.int32).contiguous(), rows_full.to(torch.int32).contiguous()
    o = torch.empty_like(q)  # q's strides (q is dense), so the caller's transpose back is a view
    entry = _built(cudnn, layout_key(q, k, v, o))
    handle = _handle(cudnn, q.device)
    workspace = torch.empty(max(entry.workspace, 1), dtype=torch.uint8, device=q.device)
    pointers = {_Q: q.data_ptr(), _K: k.data_ptr(), _V: v.data_ptr(), _O: o.data_ptr(),
                _LEN_Q: rows_full.data_ptr(), _LEN_KV: lens.data_ptr()}  # fmt: skip
    # bare addresses: the frontend keeps no reference to our tensors (inside a capture they are graph-pool blocks)
    entry.graph.execute(pointers, workspace.data_ptr(), handle=handle)
    return o


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
