"""TensorRT Vocos: engine build (TensorRT ≥ 10 Python API), on-disk cache, and execution on torch's stream.

``ishow engines build`` (or ``vocoder_backend = "auto"``/``"tensorrt"`` at load) exports Vocos to ONNX
(:mod:`ishow.engine.accel.onnx_export`), parses it, builds an fp16 engine with one optimization profile (batch 1–16 ×
frames 16–2048, optimum near chat length) and a timing cache, and stores it under ``engines_dir`` as
``vocos-<key>.plan`` with a ``.json`` sidecar. The key hashes the GPU name, the TensorRT version, the ONNX file's
SHA-256, the profile and the precision: an engine is rebuilt only when one of them changes.

Execution binds torch CUDA tensors directly (``set_input_shape``, ``set_tensor_address``, ``execute_async_v3`` on
``torch.cuda.current_stream()``): no pycuda, no host round trip. ``tensorrt`` is imported only when used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ishow.audio_format import HOP
from ishow.engine.accel.mels import pad_mels
from ishow.engine.accel.onnx_export import INPUT_NAMES, OUTPUT_NAME, file_sha256
from ishow.errors import EngineError, ModelLoadError

log = logging.getLogger(__name__)

ENGINE_PREFIX = "vocos-"


@dataclass(frozen=True)
class Profile:
    """One optimization profile over (batch, frames): min / opt / max."""

    min_batch: int = 1
    opt_batch: int = 4
    max_batch: int = 16
    min_frames: int = 16
    opt_frames: int = 256  # ~2.7 s of speech: a typical chat message
    max_frames: int = 2048

    def __post_init__(self) -> None:
        if not (0 < self.min_batch <= self.opt_batch <= self.max_batch):
            raise EngineError(f"TensorRT profile batch must satisfy 0 < min ≤ opt ≤ max, got {self}")
        if not (1 < self.min_frames <= self.opt_frames <= self.max_frames):
            raise EngineError(f"TensorRT profile frames must satisfy 1 < min ≤ opt ≤ max, got {self}")

    def fits(self, batch: int, frames: int) -> bool:
        return self.min_batch <= batch <= self.max_batch and self.min_frames <= frames <= self.max_frames


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; ``digest`` names its file."""

    gpu: str
    tensorrt: str
    onnx_sha256: str
    profile: Profile
    precision: str = "fp16"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:20]

    def engine_path(self, engines_dir: Path) -> Path:
        return Path(engines_dir) / f"{ENGINE_PREFIX}{self.digest()}.plan"


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ModelLoadError(
            "tensorrt is not installed; install TensorRT >= 10 for your CUDA (pip install tensorrt) or set "
            'engine.vocoder_backend = "torch"'
        ) from e
    return trt


def current_key(onnx_path: Path, profile: Profile, device: torch.device, precision: str = "fp16") -> EngineKey:
    """The key of an engine for ``onnx_path`` on ``device`` with the installed TensorRT."""
    trt = _trt()
    return EngineKey(
        gpu=torch.cuda.get_device_name(device),
        tensorrt=str(trt.__version__),
        onnx_sha256=file_sha256(onnx_path),
        profile=profile,
        precision=precision,
    )


Builder = Callable[[Path, Path, Profile, str, Path], None]


def ensure_engine(
    onnx_path: Path, engines_dir: Path, key: EngineKey, builder: Builder | None = None, force: bool = False
) -> tuple[Path, bool]:
    """The cached engine for ``key``, built with ``builder`` (default :func:`build_engine`) when missing, stale or
    ``force``d. Returns (path, built). The sidecar ``.json`` must hold exactly ``key``, else it is rebuilt."""
    engines_dir = Path(engines_dir)
    path = key.engine_path(engines_dir)
    sidecar = path.with_suffix(".json")
    if not force and path.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == json.loads(key.to_json()):
                return path, False
        except (OSError, ValueError):
            pass
    engines_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".plan.tmp")
    (builder or build_engine)(onnx_path, tmp, key.profile, key.precision, engines_dir / "timing.cache")
    os.replace(tmp, path)
    sidecar.write_text(key.to_json())
    log.info("built TensorRT vocoder engine %s for %s", path, key.gpu)
    return path, True


def build_engine(onnx_path: Path, out_path: Path, profile: Profile, precision: str, timing_cache: Path) -> None:
    """Build a serialized engine from ONNX with the TensorRT ≥ 10 Python API (explicit batch, one profile).

    fp16 everywhere except the head (exp, sin/cos and the ISTFT convolutions), which is pinned to fp32."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if (
                "/out/" in layer.name
                or "ConvTranspose" in layer.name
                or layer.name.startswith(("/Exp", "/Cos", "/Sin"))
            ):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    opt = builder.create_optimization_profile()
    p = profile
    opt.set_shape(INPUT_NAMES[0], (p.min_batch, 100, p.min_frames), (p.opt_batch, 100, p.opt_frames),
                  (p.max_batch, 100, p.max_frames))  # fmt: skip
    opt.set_shape(INPUT_NAMES[1], (p.min_batch, p.min_frames), (p.opt_batch, p.opt_frames), (p.max_batch, p.max_frames))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    Path(out_path).write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


class TensorRTVocoder:
    """Runs a built engine on torch CUDA tensors: ``decode(mels) → waves`` (one engine call per batch)."""

    name = "tensorrt"

    def __init__(self, engine_path: Path, device: torch.device, profile: Profile, hop: int = HOP) -> None:
        trt = _trt()
        self.device = device
        self.profile = profile
        self.hop = hop
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"TensorRT could not load engine {engine_path} (built by another version?)")
        self.context = self.engine.create_execution_context()

    def run(self, mel: Tensor, frame_mask: Tensor) -> Tensor:
        """mel [B, n_mels, T] fp32 CUDA, frame_mask [B, T] fp32 → wave [B, (T - 1) * hop] fp32 (torch's stream)."""
        b, _, t = mel.shape
        if not self.profile.fits(b, t):
            raise EngineError(f"TensorRT vocoder: batch {b} × {t} frames is outside its profile {self.profile}")
        mel, frame_mask = mel.contiguous(), frame_mask.contiguous()
        out = torch.empty(b, (t - 1) * self.hop, device=mel.device, dtype=torch.float32)
        ctx = self.context
        ctx.set_input_shape(INPUT_NAMES[0], tuple(mel.shape))
        ctx.set_input_shape(INPUT_NAMES[1], tuple(frame_mask.shape))
        for name, tensor in ((INPUT_NAMES[0], mel), (INPUT_NAMES[1], frame_mask), (OUTPUT_NAME, out)):
            ctx.set_tensor_address(name, tensor.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(mel.device).cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed")
        return out

    def decode(self, mels: Sequence[Tensor]) -> list[Tensor]:
        outs: list[Tensor] = []
        for start in range(0, len(mels), self.profile.max_batch):
            chunk = mels[start : start + self.profile.max_batch]
            n = max(self.profile.min_frames, max(int(m.shape[0]) for m in chunk))
            mel, mask = pad_mels(chunk, len(chunk), n, self.device)
            wave = self.run(mel, mask)
            outs.extend(wave[i, : (int(m.shape[0]) - 1) * self.hop] for i, m in enumerate(chunk))
        return outs
