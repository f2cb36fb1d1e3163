"""Where a running daemon's synthesis time goes, batch by batch: an opt-in tracer of the F5 engine's steps, one line
per step appended to a file.

    <monotonic s> <thread> parts [[frames, ...], ...]                how a batch was split (``F5Engine._parts``)
    <monotonic s> <thread> dit n=N frames=[...] bucket=B use=U ms=T  one sampler run (B: its bucket, U: the graph it
                                                                     ran on; None: eager)
    <monotonic s> <thread> voc n=N lens=[...] bucket=B use=U ms=T    one vocoder run
    <monotonic s> <thread> synthesize n=N ms=T                       the whole engine call

Each sampler and vocoder run is timed with the engine's stream synchronized before and after, so ``ms`` is that run
alone on the GPU; the pipelining of sub-batches is lost while tracing. Only the caller's stream is waited on: a
device-wide ``torch.cuda.synchronize()`` also waits on the warm-up thread's capture stream, which invalidates its
background graph captures (session 8 lost 12 captures that way).

In the daemon that ``ishow bench --e2e`` starts (a subprocess: it inherits the environment), through the
``sitecustomize`` in ``tools/engine_trace_site``:

    ISHOW_ENGINE_TRACE=trace.txt PYTHONPATH=$PWD:$PWD/tools/engine_trace_site python3 -m ishow bench --e2e ...

In-process: ``uninstall = install("trace.txt")`` ... ``uninstall()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

TRACE_ENV = "ISHOW_ENGINE_TRACE"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()  # this stream only (see the module doc)


def install(path: str | Path) -> Callable[[], None]:
    """Patch the engine classes to trace into ``path`` (appended, line-buffered); returns the undo."""
    from ishow.engine.accel.graphs import GraphSampler
    from ishow.engine.accel.vocoder_backends import TorchVocoder
    from ishow.engine.f5_engine import F5Engine

    out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (open until uninstall)
    lock = threading.Lock()
    replayed = threading.local()  # the graph the current run replayed (set by the _replay wrappers)

    def mark(tag: str, extra: str) -> None:
        with lock:
            out.write(f"{time.monotonic():.6f} {threading.current_thread().name} {tag} {extra}\n")

    originals: list[tuple[type, str, Any]] = []

    def patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
        original = cls.__dict__[name]
        originals.append((cls, name, original))
        setattr(cls, name, make(original))

    def graph_replay(original: Any) -> Any:
        def wrapper(self: Any, bucket: Any, *args: Any, **kwargs: Any) -> Any:
            replayed.bucket = bucket
            return original(self, bucket, *args, **kwargs)

        return wrapper

    def sample_full(original: Any) -> Any:
        def wrapper(self: Any, items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
            replayed.bucket = None
            _sync(self.device)
            t0 = time.perf_counter()
            result = original(self, items, *args, **kwargs)
            _sync(self.device)
            ms = (time.perf_counter() - t0) * 1000
            frames = [int(it.total_frames()) for it in items]
            bucket = self.buckets.bucket(len(frames), max(frames))
            mark("dit", f"n={len(frames)} frames={frames} bucket={bucket} use={replayed.bucket} ms={ms:.2f}")
            return result

        return wrapper

    def decode(original: Any) -> Any:
        def wrapper(self: Any, mels: Sequence[torch.Tensor]) -> Any:
            replayed.bucket = None
            _sync(self.device)
            t0 = time.perf_counter()
            result = original(self, mels)
            _sync(self.device)
            ms = (time.perf_counter() - t0) * 1000
            lens = [int(m.shape[0]) for m in mels]
            bucket = self.buckets.bucket(len(lens), max(lens)) if lens and self.use_graphs else None
            mark("voc", f"n={len(lens)} lens={lens} bucket={bucket} use={replayed.bucket} ms={ms:.2f}")
            return result

        return wrapper

    def parts(original: Any) -> Any:
        def wrapper(self: Any, items: Sequence[Any], config: Any) -> Any:
            result = original(self, items, config)
            mark("parts", str([[int(items[i][0].total_frames()) for i in p] for p in result]))
            return result

        return wrapper

    def synthesize(original: Any) -> Any:
        def wrapper(self: Any, requests: Sequence[Any]) -> Any:
            t0 = time.perf_counter()
            result = original(self, requests)
            mark("synthesize", f"n={len(requests)} ms={(time.perf_counter() - t0) * 1000:.2f}")
            return result

        return wrapper

    patch(GraphSampler, "_replay", graph_replay)
    patch(GraphSampler, "sample_full", sample_full)
    patch(TorchVocoder, "_replay", graph_replay)
    patch(TorchVocoder, "decode", decode)
    patch(F5Engine, "_parts", parts)
    patch(F5Engine, "synthesize", synthesize)

    def uninstall() -> None:
        for cls, name, original in reversed(originals):
            setattr(cls, name, original)
        originals.clear()
        out.close()

    return uninstall
