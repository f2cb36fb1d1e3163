"""CUDA-graph capture bookkeeping: what a capture cost (seconds, and GPU memory the process reserved more afterwards:
one log entry), and the one memory pool every graph of an engine is captured into."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from ishow.engine.accel.bucket_plan import Bucket

T = TypeVar("T")


def timed_capture(device: torch.device, bucket: Bucket, capture: Callable[[], T]) -> tuple[T, dict[str, object]]:
    """Run ``capture`` for ``bucket`` on ``device``; its result and ``{"bucket", "seconds", "reserved_mb"}``."""
    cuda = device.type == "cuda"
    mem0 = torch.cuda.memory_reserved(device) if cuda else 0
    t0 = time.perf_counter()
    entry = capture()
    info: dict[str, object] = {
        "bucket": list(bucket),
        "seconds": round(time.perf_counter() - t0, 3),
        "reserved_mb": round((torch.cuda.memory_reserved(device) - mem0) / 2**20, 1) if cuda else 0.0,
    }
    return entry, info


class GraphPool:
    """The CUDA graph memory pool of one engine, shared by its DiT buckets and its vocoder buckets.

    Every graph of an engine is replayed on the engine thread, one at a time and on one stream, so one graph's
    intermediates may reuse the memory another graph's intermediates used; each graph's static outputs stay
    allocated (the caller still holds them), so no replay overwrites another graph's result. One pool instead of
    one per model: the vocoder's graphs cost no memory of their own beyond the DiT's largest bucket. The handle
    is created on first use (captures run on the warm-up thread, so creation is locked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: Any = None

    def handle(self) -> Any:
        with self._lock:
            if self._handle is None:
                self._handle = torch.cuda.graph_pool_handle()
            return self._handle
