"""Engine settings (the ``[engine]`` table), kept apart so the engine path imports no daemon code."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RemoteConfig:
    """``[engine.remote]``: the shared synthesis service a daemon uses when ``engine.kind = "remote"``."""

    url: str = "http://127.0.0.1:8600"  # the service's HTTP ingress (`ishow serve`)
    token: str = field(default="", repr=False)  # the service's [serve] token; never logged
    timeout_s: float = 10.0  # per request; past it the batch is spoken by the fallback
    retry_s: float = 2.0  # while the service is down, probe its /healthz this often and return when it answers
    client: str = ""  # this daemon's name in the service's batch log ("" → host name and process id)


@dataclass(frozen=True)
class EngineConfig:
    kind: str = "f5"  # "f5" | "espeak" | "remote"
    fallback: str = "espeak"  # "espeak" | "none"
    model: str = "F5TTS_v1_Base"  # architecture: F5TTS_v1_Base | F5TTS_v1_Small | tiny
    checkpoint: Path = Path("models/F5TTS_v1_Base/model_1250000.safetensors")
    vocab: Path = Path("models/F5TTS_v1_Base/vocab.txt")
    vocoder: Path = Path("models/vocos-mel-24khz")  # folder with config.yaml + pytorch_model.bin
    nfe_step: int = 7
    cfg_strength: float = 2.0
    sway_coef: float = -1.0
    speed: float = 1.0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "auto"  # "auto" (fp16 on CUDA, fp32 on CPU) | "fp32" | "fp16"
    seed: int = 0
    on_shutdown: str = "finish"  # "finish" the batch in flight, or "drop" it
    shutdown_timeout_s: float = 10.0  # shutdown: at most this long to finish synthesis and hand audio to the outputs
    cuda_graphs: bool = True  # capture the NFE loop (and the torch vocoder) per (batch, length) bucket on CUDA
    # "auto" (tensorrt → torch-compile → torch-graph → torch) | "torch" | "torch-compile" | "onnx" | "tensorrt"
    vocoder_backend: str = "auto"
    compile: bool = True  # on CUDA with cuda_graphs: torch.compile the DiT blocks and the vocoder inside the graphs
    engines_dir: Path = Path("models/engines")  # built TensorRT engines and the exported ONNX vocoder
    compile_cache: Path = Path("models/compile-cache")  # torch.compile (inductor/triton) artifacts: fast restarts
    # CUDA: the most rows × frames one multi-row DiT graph covers; a bigger batch runs as several (its memory grows
    # with the area: 8 × 1024 frames 672 MB, 8 × 1792 frames 1124 MB on an H200, measured with tools/bucket_memory.py).
    # 8 × 1280: a burst of 8 messages of up to ~30 CJK characters runs as one graph
    max_batch_frames: int = 10240
    remote: RemoteConfig = RemoteConfig()
