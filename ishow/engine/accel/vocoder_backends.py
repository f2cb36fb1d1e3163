"""Vocoder backends: every one turns a list of generated mels into waveforms, the whole batch in one call.

* ``torch``: our Vocos with frame masks (a padded batch decodes exactly like its items alone); on CUDA each
  (batch, frames) bucket is captured once into a CUDA graph (``torch-graph``), on CPU it runs plainly.
* ``torch-compile``: the same on CUDA, fp16 backbone + fp32 head through ``torch.compile`` (inductor) captured in
  the per-bucket graphs (:class:`ishow.engine.accel.fast_vocos.FastVocos`); falls back to ``torch-graph`` if
  compiling fails.
* ``onnx``: the exported graph (:mod:`ishow.engine.accel.onnx_export`) on onnxruntime's CPU provider.
* ``tensorrt``: an fp16 engine built from that graph (:mod:`ishow.engine.accel.trt`), bound to torch tensors.

``select_vocoder("auto", ...)`` picks tensorrt → torch-compile (with ``compile``) → torch-graph → torch and logs
its choice and why.

:class:`TorchVocoder` has the same two capture modes as :class:`ishow.engine.accel.graphs.GraphSampler`: capture a
missing bucket on first use (``capture_on_miss``), or only from the warm-up thread
(:meth:`TorchVocoder.capture_bucket`), serving a batch whose bucket is not ready on a ready larger bucket or eagerly.
"""

from __future__ import annotations

import collections
import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ishow.audio_format import HOP
from ishow.config.choices import BATCH_BUCKETS, VOCODER_BACKENDS
from ishow.engine.accel.bucket_plan import MAX_PAD_FACTOR, Bucket, MissLog, cover_bucket, smallest_at_least
from ishow.engine.accel.capture_cost import GraphPool, timed_capture
from ishow.engine.accel.mels import frame_mask, pad_mels
from ishow.engine.f5.vocos import Vocos
from ishow.errors import ConfigError, IshowError, ModelLoadError

log = logging.getLogger(__name__)


class VocoderBackend(Protocol):
    name: str

    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        """mels: [T_i, n_mels] fp32 each → waveforms [(T_i - 1) · hop] fp32 (on the backend's device)."""
        ...


# No 1-row vocoder graphs: torch.compile specializes a dimension of size 1, so a 1-row bucket compiled the vocoder
# a second time for the first multi-row bucket (11.2 s cold, 3.1 s warm on the H200 host, on the way to "ready").
# A single mel decodes in a 2-row bucket; the spare row is a 1-frame dummy.
VOCODER_BATCH_BUCKETS: tuple[int, ...] = tuple(b for b in BATCH_BUCKETS if b >= 2)


@dataclass(frozen=True)
class VocoderBuckets:
    batch_sizes: tuple[int, ...] = VOCODER_BATCH_BUCKETS
    frame_multiple: int = 128  # 1.4 s of audio; padding costs little here (256 frames: ~0.35 ms on an H200)
    max_frames: int = 2048

    def rows(self, n: int) -> int | None:
        """The smallest bucket batch size ≥ n, or None when n is larger than all of them."""
        return smallest_at_least(self.batch_sizes, n)

    def frames(self, n: int) -> int:
        """n rounded up to the frame multiple (however long)."""
        return -(-n // self.frame_multiple) * self.frame_multiple

    def bucket(self, n_rows: int, n_frames: int) -> tuple[int, int] | None:
        rows = self.rows(n_rows)
        frames = self.frames(n_frames)
        return None if rows is None or frames > self.max_frames else (rows, frames)


@dataclass(eq=False)
class _VocGraph:
    mel: Tensor  # static [B, T, n_mels] (each mel's own layout: one contiguous copy in): item i on its first lens_i
    # frames (the rest is ignored); the graph reads it as [B, n_mels, T] through a transposed view
    lens: Tensor  # static [B] long
    graph: torch.cuda.CUDAGraph
    out: Tensor


class TorchVocoder:
    """Our Vocos, batched with frame masks; CUDA-graphed per bucket on CUDA when ``use_graphs``.

    ``half`` (CUDA only) runs the ConvNeXt backbone in fp16 with the head (exp/ISTFT) in fp32, and ``compile``
    (CUDA graphs only) runs it through ``torch.compile`` (:class:`ishow.engine.accel.fast_vocos.FastVocos`) inside the
    graphs; a failed compilation is logged and the bucket is captured uncompiled."""

    def __init__(
        self,
        vocos: Vocos,
        use_graphs: bool = True,
        buckets: VocoderBuckets = VocoderBuckets(),
        max_graphs: int = 16,
        half: bool = False,
        compile: bool = False,
        capture_on_miss: bool = True,
        pool: GraphPool | None = None,
    ) -> None:
        self.vocos = vocos.eval()
        self.capture_on_miss = capture_on_miss
        self._lock = threading.RLock()  # the graph table: captured on the warm-up thread, replayed on the engine's
        self._misses: MissLog[Bucket] = MissLog()
        self.capture_log: list[dict[str, object]] = []
        self.padded_runs = 0
        self.device = vocos.backbone.embed.weight.device
        cuda = self.device.type == "cuda"
        self.use_graphs = use_graphs and cuda
        self.half = half and cuda
        self.compile = compile and self.use_graphs
        self.compile_error: str | None = None
        self.buckets = buckets
        self.max_graphs = max_graphs
        self.hop = vocos.config.head_hop_length
        self._graphs: collections.OrderedDict[tuple[int, int], _VocGraph] = collections.OrderedDict()
        self.pool = pool if pool is not None else GraphPool()  # the engine shares one with its DiT graphs
        self._side: Any = None  # the warm-up stream (see _warm_stream)
        self._fast: Any = None  # FastVocos, built on first use
        self._fast_compiled: Any = None
        self.name = ""
        self._set_name()

    def _set_name(self) -> None:
        self.name = "torch" if not self.use_graphs else ("torch-compile" if self.compile else "torch-graph")

    def _fast_model(self, compile: bool) -> Any:
        from ishow.engine.accel.fast_vocos import FastVocos

        dtype = torch.float16 if self.half else torch.float32
        if compile:
            if self._fast_compiled is None:
                self._fast_compiled = FastVocos(self.vocos, dtype, compile=True)
            return self._fast_compiled
        if self._fast is None:
            self._fast = FastVocos(self.vocos, dtype, compile=False)
        return self._fast

    def _forward(self, mel: Tensor, lens: Tensor, compile: bool) -> Tensor:
        """Padded mel [B, n_mels, T] + lengths [B] → [B, (T - 1)·hop] fp32."""
        if compile or self.half:
            out: Tensor = self._fast_model(compile)(mel, lens)
            return out
        mask = frame_mask(lens, mel.shape[-1]).to(torch.float32)
        mel = torch.where(mask.unsqueeze(1) > 0, mel, 0.0)
        plain: Tensor = self.vocos(mel, mask)
        return plain

    @torch.inference_mode()
    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        if not mels:
            return []
        lens = [int(m.shape[0]) for m in mels]
        bucket = self.buckets.bucket(len(mels), max(lens)) if self.use_graphs else None
        if bucket is not None and not self.capture_on_miss:
            bucket = self._ready_cover(bucket)
        if bucket is None:
            # no ready graph: eager, but shaped like a bucket (rows ≥ 2, frames a multiple of the bucket step; the
            # masks make the padding exact), so the Triton kernels reuse a compiled specialization instead of
            # compiling a new one for this exact shape on the message's path (~1.3 s on an H200)
            rows, frames = len(mels), max(lens)
            if self.use_graphs:
                rows, frames = max(rows, 2), self.buckets.frames(frames)
            mel, mask = pad_mels(mels, rows, frames, self.device)
            half = self.half
            wave = self._forward(mel, mask.sum(dim=1).long(), compile=False) if half else self.vocos(mel, mask)
        else:
            wave = self._replay(bucket, mels, lens)
        return [wave[i, : (t - 1) * self.hop].clone() for i, t in enumerate(lens)]

    def ready_buckets(self) -> list[Bucket]:
        with self._lock:
            return list(self._graphs)

    def take_misses(self) -> list[Bucket]:
        with self._lock:
            return self._misses.take()

    @property
    def full(self) -> bool:
        with self._lock:
            return len(self._graphs) >= self.max_graphs

    @torch.inference_mode()
    def capture_bucket(self, bucket: Bucket) -> dict[str, object]:
        """Capture ``bucket`` now (warm-up thread) unless ready, the cache is full or graphs are off."""
        with self._lock:
            if bucket in self._graphs or len(self._graphs) >= self.max_graphs or not self.use_graphs:
                return {"skipped": True}
        entry, info = timed_capture(self.device, bucket, lambda: self._capture(bucket))
        with self._lock:
            self._graphs[bucket] = entry
            self._misses.discard(bucket)
            self.capture_log.append(info)
        return info

    def _ready_cover(self, bucket: Bucket) -> Bucket | None:
        with self._lock:
            if bucket in self._graphs:
                return bucket
            self._misses.add(bucket)
            ready = list(self._graphs)
        use = cover_bucket(bucket, ready, MAX_PAD_FACTOR)
        if use is not None:
            self.padded_runs += 1
        return use

    def _replay(self, bucket: tuple[int, int], mels: Sequence[Tensor], lens: list[int]) -> Tensor:
        with self._lock:
            entry = self._graphs.get(bucket)
            if entry is not None and self.capture_on_miss:
                self._graphs.move_to_end(bucket)
        if entry is None:
            entry = self._capture(bucket)
            with self._lock:
                self._graphs[bucket] = entry
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
        # write straight into the static buffers: one copy per item plus the lengths (padding is masked in-graph)
        rows = bucket[0]
        entry.lens.copy_(torch.tensor(lens + [1] * (rows - len(lens)), dtype=torch.long), non_blocking=True)
        for i, m in enumerate(mels):
            entry.mel[i, : lens[i]].copy_(m, non_blocking=True)
        entry.graph.replay()
        return entry.out

    def _warm_stream(self) -> Any:
        """ONE side stream for every warm-up run: each new stream gets its own cuBLAS workspace (~32 MiB on
        Hopper), and the pool hands out up to 32 of them. Captures use torch's one default capture stream."""
        with self._lock:
            if self._side is None:
                self._side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            return self._side

    def _capture(self, bucket: tuple[int, int]) -> _VocGraph:
        if self.compile:
            try:
                return self._capture_with(bucket, compile=True)
            except Exception as e:  # noqa: BLE001 (inductor/triton/dynamo raise many types; plain graphs still work)
                self.compile_error = f"{type(e).__name__}: {e}"
                log.warning("compiled vocoder failed (%s); capturing the plain graph", self.compile_error)
                self.compile = False
                self._set_name()
        return self._capture_with(bucket, compile=False)

    def _capture_with(self, bucket: tuple[int, int], compile: bool) -> _VocGraph:
        rows, frames = bucket
        n_mels = self.vocos.config.input_channels
        mel = torch.zeros(rows, frames, n_mels, device=self.device)
        lens = torch.full((rows,), frames, dtype=torch.long, device=self.device)
        side = self._warm_stream()
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # compile / autotune / cuDNN handles outside the capture
            for _ in range(2):
                self._forward(mel.transpose(1, 2), lens, compile)
        side.synchronize()  # a CPU wait on this thread only: the engine's stream never queues behind a warm-up
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool.handle(), capture_error_mode="thread_local"):
            out = self._forward(mel.transpose(1, 2), lens, compile)
        return _VocGraph(mel=mel, lens=lens, graph=graph, out=out)


class OnnxVocoder:
    """The exported graph on onnxruntime (CPU provider): numpy in and out, torch tensors at the edges."""

    name = "onnx"

    def __init__(self, onnx_path: Path, hop: int = HOP, threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelLoadError("onnxruntime is not installed (pip install onnxruntime)") from e
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.hop = hop

    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        if not mels:
            return []
        lens = [int(m.shape[0]) for m in mels]
        mel, mask = pad_mels(mels, len(mels), max(lens), torch.device("cpu"))
        (wave,) = self.session.run(None, {"mel": mel.numpy(), "frame_mask": mask.numpy()})
        out = torch.from_numpy(wave)
        return [out[i, : (t - 1) * self.hop] for i, t in enumerate(lens)]


def _onnx_file(vocos: Vocos, engines_dir: Path | None) -> Path:
    from ishow.engine.accel.onnx_export import export_vocos_onnx

    folder = Path(engines_dir) if engines_dir is not None else Path(tempfile.mkdtemp(prefix="ishow-vocos-"))
    return export_vocos_onnx(vocos, folder / "vocos.onnx")


def tensorrt_vocoder(vocos: Vocos, device: torch.device, engines_dir: Path, force: bool = False) -> Any:
    """Export (ONNX), build or reuse the cached engine, and load it."""
    import copy

    from ishow.engine.accel.trt import Profile, TensorRTVocoder, current_key, ensure_engine

    onnx_path = _onnx_file(copy.deepcopy(vocos), engines_dir)
    profile = Profile()
    key = current_key(onnx_path, profile, device)
    path, built = ensure_engine(onnx_path, engines_dir, key, force=force)
    log.info("TensorRT vocoder engine %s (%s)", path, "built" if built else "cached")
    return TensorRTVocoder(path, device, profile, hop=vocos.config.head_hop_length)


def select_vocoder(
    backend: str,
    vocos: Vocos,
    device: torch.device,
    engines_dir: Path | None = None,
    use_graphs: bool = True,
    compile: bool = False,
    half: bool = False,
    pool: GraphPool | None = None,
) -> VocoderBackend:
    """The vocoder backend named by ``backend`` (see module doc); ``auto`` logs what it picked and why.

    ``compile`` lets ``auto`` pick ``torch-compile`` on CUDA with graphs; ``half`` runs the torch backbone in fp16
    (CUDA only; the head stays fp32); ``pool``: the graph memory pool to capture into (the engine's, shared with
    its DiT graphs; default: one of its own)."""
    if backend not in VOCODER_BACKENDS:
        raise ConfigError(f"engine.vocoder_backend: {backend!r}; expected one of {', '.join(VOCODER_BACKENDS)}")
    if backend == "onnx":
        import copy

        return OnnxVocoder(_onnx_file(copy.deepcopy(vocos), engines_dir), hop=vocos.config.head_hop_length)
    if backend == "tensorrt":
        if device.type != "cuda":
            raise ConfigError("engine.vocoder_backend: tensorrt needs a CUDA device")
        backend_obj: VocoderBackend = tensorrt_vocoder(vocos, device, Path(engines_dir or "models/engines"))
        return backend_obj
    if backend == "auto" and device.type == "cuda":
        from ishow.engine.accel.trt import tensorrt_available

        if tensorrt_available():
            try:
                chosen: VocoderBackend = tensorrt_vocoder(vocos, device, Path(engines_dir or "models/engines"))
                log.info("vocoder backend: tensorrt (auto)")
                return chosen
            except IshowError as e:
                log.warning("vocoder backend: tensorrt failed (%s); falling back to torch", e)
        else:
            log.info("vocoder backend: tensorrt is not installed; using torch%s", " with CUDA graphs" * use_graphs)
    want_compile = backend == "torch-compile" or (backend == "auto" and compile)
    torch_backend = TorchVocoder(vocos, use_graphs=use_graphs, half=half, compile=want_compile, pool=pool)
    log.info("vocoder backend: %s%s (%s)", torch_backend.name, ", fp16 backbone" * torch_backend.half, backend)
    return torch_backend
