"""What a CUDA-graph capture cost: seconds, and GPU memory the process reserved more afterwards (one log entry)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
