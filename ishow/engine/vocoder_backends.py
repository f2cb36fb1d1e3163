"""Vocoder backends: every one turns a list of generated mels into waveforms, the whole batch in one call.

* ``torch``: our Vocos with frame masks (a padded batch decodes exactly like its items alone); on CUDA each
  (batch, frames) bucket is captured once into a CUDA graph (``torch-graph``), on CPU it runs plainly.
* ``onnx``: the exported graph (:mod:`ishow.engine.onnx_export`) on onnxruntime's CPU provider.
* ``tensorrt``: an fp16 engine built from that graph (:mod:`ishow.engine.trt`), bound to torch tensors.

``select_vocoder("auto", ...)`` picks tensorrt → torch-graph → torch and logs its choice and why.
"""

from __future__ import annotations

import collections
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ishow.engine.vocos import Vocos
from ishow.errors import ConfigError, IshowError, ModelLoadError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx", "tensorrt")


class VocoderBackend(Protocol):
    name: str

    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        """mels: [T_i, n_mels] fp32 each → waveforms [(T_i - 1) · hop] fp32 (on the backend's device)."""
        ...


def pad_mels(mels: Sequence[Tensor], n_rows: int, n_frames: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """[T_i, M] mels → (mel [n_rows, M, n_frames] zero-padded, frame_mask [n_rows, n_frames] fp32) on ``device``.
    Rows past the items are 1-frame dummies (a valid frame keeps every envelope positive)."""
    n_mels = int(mels[0].shape[1])
    mel = torch.zeros(n_rows, n_mels, n_frames, device=device)
    mask = torch.zeros(n_rows, n_frames, device=device)
    mask[len(mels) :, 0] = 1.0
    for i, m in enumerate(mels):
        t = int(m.shape[0])
        mel[i, :, :t] = m.to(device=device, dtype=torch.float32).transpose(0, 1)
        mask[i, :t] = 1.0
    return mel, mask


@dataclass(frozen=True)
class VocoderBuckets:
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    frame_multiple: int = 64
    max_frames: int = 2048

    def bucket(self, n_rows: int, n_frames: int) -> tuple[int, int] | None:
        rows = next((b for b in sorted(self.batch_sizes) if b >= n_rows), None)
        frames = -(-n_frames // self.frame_multiple) * self.frame_multiple
        return None if rows is None or frames > self.max_frames else (rows, frames)


@dataclass(eq=False)
class _VocGraph:
    mel: Tensor
    mask: Tensor
    graph: torch.cuda.CUDAGraph
    out: Tensor


class TorchVocoder:
    """Our Vocos, batched with frame masks; CUDA-graphed per bucket on CUDA when ``use_graphs``."""

    def __init__(
        self, vocos: Vocos, use_graphs: bool = True, buckets: VocoderBuckets = VocoderBuckets(), max_graphs: int = 16
    ) -> None:
        self.vocos = vocos.eval()
        self.device = vocos.backbone.embed.weight.device
        self.use_graphs = use_graphs and self.device.type == "cuda"
        self.name = "torch-graph" if self.use_graphs else "torch"
        self.buckets = buckets
        self.max_graphs = max_graphs
        self.hop = vocos.config.head_hop_length
        self._graphs: collections.OrderedDict[tuple[int, int], _VocGraph] = collections.OrderedDict()
        self._pool: Any = None

    @torch.inference_mode()
    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        if not mels:
            return []
        lens = [int(m.shape[0]) for m in mels]
        bucket = self.buckets.bucket(len(mels), max(lens)) if self.use_graphs else None
        if bucket is None:
            mel, mask = pad_mels(mels, len(mels), max(lens), self.device)
            wave = self.vocos(mel, mask)
        else:
            mel, mask = pad_mels(mels, *bucket, self.device)
            wave = self._replay(bucket, mel, mask)
        return [wave[i, : (t - 1) * self.hop].clone() for i, t in enumerate(lens)]

    def _replay(self, bucket: tuple[int, int], mel: Tensor, mask: Tensor) -> Tensor:
        entry = self._graphs.get(bucket)
        if entry is None:
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.vocos(mel, mask)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self.vocos(mel, mask)
            entry = _VocGraph(mel=mel, mask=mask, graph=graph, out=out)
            self._graphs[bucket] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(bucket)
            entry.mel.copy_(mel)
            entry.mask.copy_(mask)
        entry.graph.replay()
        return entry.out


class OnnxVocoder:
    """The exported graph on onnxruntime (CPU provider): numpy in and out, torch tensors at the edges."""

    name = "onnx"

    def __init__(self, onnx_path: Path, hop: int = 256, threads: int = 0) -> None:
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
    from ishow.engine.onnx_export import export_vocos_onnx

    folder = Path(engines_dir) if engines_dir is not None else Path(tempfile.mkdtemp(prefix="ishow-vocos-"))
    return export_vocos_onnx(vocos, folder / "vocos.onnx")


def tensorrt_vocoder(vocos: Vocos, device: torch.device, engines_dir: Path, force: bool = False) -> Any:
    """Export (ONNX), build or reuse the cached engine, and load it."""
    import copy

    from ishow.engine.trt import Profile, TensorRTVocoder, current_key, ensure_engine

    onnx_path = _onnx_file(copy.deepcopy(vocos), engines_dir)
    profile = Profile()
    key = current_key(onnx_path, profile, device)
    path, built = ensure_engine(onnx_path, engines_dir, key, force=force)
    log.info("TensorRT vocoder engine %s (%s)", path, "built" if built else "cached")
    return TensorRTVocoder(path, device, profile, hop=vocos.config.head_hop_length)


def select_vocoder(
    backend: str, vocos: Vocos, device: torch.device, engines_dir: Path | None = None, use_graphs: bool = True
) -> VocoderBackend:
    """The vocoder backend named by ``backend`` (see module doc); ``auto`` logs what it picked and why."""
    if backend not in BACKENDS:
        raise ConfigError(f"engine.vocoder_backend: {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "onnx":
        import copy

        return OnnxVocoder(_onnx_file(copy.deepcopy(vocos), engines_dir), hop=vocos.config.head_hop_length)
    if backend == "tensorrt":
        if device.type != "cuda":
            raise ConfigError("engine.vocoder_backend: tensorrt needs a CUDA device")
        backend_obj: VocoderBackend = tensorrt_vocoder(vocos, device, Path(engines_dir or "models/engines"))
        return backend_obj
    if backend == "auto" and device.type == "cuda":
        from ishow.engine.trt import tensorrt_available

        if tensorrt_available():
            try:
                chosen: VocoderBackend = tensorrt_vocoder(vocos, device, Path(engines_dir or "models/engines"))
                log.info("vocoder backend: tensorrt (auto)")
                return chosen
            except IshowError as e:
                log.warning("vocoder backend: tensorrt failed (%s); falling back to torch", e)
        else:
            log.info("vocoder backend: tensorrt is not installed; using torch%s", " with CUDA graphs" * use_graphs)
    torch_backend = TorchVocoder(vocos, use_graphs=use_graphs)
    log.info("vocoder backend: %s (%s)", torch_backend.name, backend)
    return torch_backend
