"""Vocos vocoder (charactr/vocos-mel-24khz), state-dict compatible with its ``pytorch_model.bin``.

Architecture facts from vocos 0.1.0 and the hub ``config.yaml`` of vocos-mel-24khz:

* ``feature_extractor``: ``MelSpectrogramFeatures(sample_rate 24000, n_fft 1024, hop_length 256, n_mels 100,
  padding "center")``, a torchaudio ``MelSpectrogram(power=1)`` then ``log(clip(x, min=1e-7))``. Its two buffers
  ``feature_extractor.mel_spec.spectrogram.window [1024]`` and ``feature_extractor.mel_spec.mel_scale.fb [513, 100]``
  are in the checkpoint (upstream loads it strictly), so ours has them too; decoding does not use them.
* ``backbone``: ``VocosBackbone(input_channels 100, dim 512, intermediate_dim 1536, num_layers 8)``: Conv1d k7 embed,
  LayerNorm, 8 ConvNeXt blocks (depthwise Conv1d k7, LayerNorm, Linear, exact GELU, Linear, layer scale ``gamma``,
  residual), final LayerNorm; every LayerNorm has eps 1e-6. No AdaLayerNorm (mel variant).
* ``head``: ``ISTFTHead(dim 512, n_fft 1024, hop_length 256, padding "center")``: Linear to ``n_fft + 2``, split
  into log-magnitude and phase, ``mag = clip(exp(logmag), max=1e2)`` (exp first, then clip),
  ``S = mag·cos(p) + i·mag·sin(p)``, inverse STFT with a periodic Hann window. ``padding "center"`` is
  ``torch.istft(center=True)`` and yields ``(T - 1) * hop`` samples; ``"same"`` (head default when the config omits
  it) overlap-adds, trims ``(win - hop) / 2`` per side and divides by the squared-window envelope: ``T * hop``.

Batching note: the backbone's convolutions see neighbouring frames, so decoding a zero-padded batch changes the
last ~12 frames of shorter items (and ``center`` ISTFT edges); decode items alone or trim generously.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ishow.audio_format import HOP, SAMPLE_RATE
from ishow.engine.f5.audio import MelSpectrogram
from ishow.errors import EngineError, ModelLoadError, WeightsMissingError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "pytorch_model.bin"
VOCOS_LOG_FLOOR = 1e-7  # vocos.modules.safe_log
MAG_MAX = 1e2
LOG_MAG_MAX = math.log(MAG_MAX)

_FEATURE_CLASS = "vocos.feature_extractors.MelSpectrogramFeatures"
_BACKBONE_CLASS = "vocos.models.VocosBackbone"
_HEAD_CLASS = "vocos.heads.ISTFTHead"


@dataclass(frozen=True)
class VocosConfig:
    """Hyper-parameters of a mel Vocos; defaults are vocos-mel-24khz. ``head_padding``: "center" or "same"."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = HOP
    n_mels: int = 100
    feature_padding: str = "center"
    input_channels: int = 100
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    layer_scale_init_value: float | None = None  # None → 1 / num_layers (only matters for fresh weights)
    head_dim: int = 512
    head_n_fft: int = 1024
    head_hop_length: int = HOP
    head_padding: str = "center"

    def __post_init__(self) -> None:
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
                problems.append(f"{f.name} must be positive, got {value}")
        for name in ("feature_padding", "head_padding"):
            if getattr(self, name) not in ("center", "same"):
                problems.append(f"{name} must be 'center' or 'same', got {getattr(self, name)!r}")
        if self.input_channels != self.n_mels:
            problems.append(f"backbone input_channels {self.input_channels} != feature n_mels {self.n_mels}")
        if self.head_dim != self.dim:
            problems.append(f"head dim {self.head_dim} != backbone dim {self.dim}")
        if self.head_padding == "same" and (self.head_n_fft - self.head_hop_length) % 2:
            problems.append("head padding 'same' needs n_fft - hop_length to be even")
        if problems:
            raise ModelLoadError("invalid Vocos config: " + "; ".join(problems))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "config.yaml") -> VocosConfig:
        """Parse a Vocos ``config.yaml`` (``feature_extractor``/``backbone``/``head``, each ``class_path`` +
        ``init_args``). Only the mel feature extractor, ``VocosBackbone`` without AdaLayerNorm and ``ISTFTHead`` are
        accepted; anything else raises ``ModelLoadError`` naming ``source`` and the offending key."""
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ModelLoadError(f"{source}: not valid YAML: {e}") from e
        if not isinstance(doc, dict):
            raise ModelLoadError(f"{source}: expected a mapping with feature_extractor/backbone/head, got {doc!r:.80}")

        def section(name: str, class_path: str, allowed: set[str], required: set[str]) -> dict[str, Any]:
            sec = doc.get(name)
            if not isinstance(sec, dict):
                raise ModelLoadError(f"{source}: missing section {name!r} (expected class_path {class_path})")
            if sec.get("class_path") != class_path:
                raise ModelLoadError(
                    f"{source}: {name}.class_path is {sec.get('class_path')!r}; only {class_path} is supported"
                )
            args = sec.get("init_args") or {}
            if not isinstance(args, dict):
                raise ModelLoadError(f"{source}: {name}.init_args must be a mapping, got {args!r:.80}")
            unknown = sorted(set(args) - allowed)
            if unknown:
                raise ModelLoadError(f"{source}: unsupported {name}.init_args: {', '.join(map(str, unknown))}")
            missing = sorted(required - set(args))
            if missing:
                raise ModelLoadError(f"{source}: missing {name}.init_args: {', '.join(missing)}")
            return args

        fe = section(
            "feature_extractor", _FEATURE_CLASS, {"sample_rate", "n_fft", "hop_length", "n_mels", "padding"}, set()
        )
        bb = section(
            "backbone",
            _BACKBONE_CLASS,
            {
                "input_channels",
                "dim",
                "intermediate_dim",
                "num_layers",
                "layer_scale_init_value",
                "adanorm_num_embeddings",
            },
            {"input_channels", "dim", "intermediate_dim", "num_layers"},
        )
        hd = section("head", _HEAD_CLASS, {"dim", "n_fft", "hop_length", "padding"}, {"dim", "n_fft", "hop_length"})
        if bb.get("adanorm_num_embeddings") is not None:
            raise ModelLoadError(
                f"{source}: backbone.init_args.adanorm_num_embeddings is set; only mel Vocos without "
                "AdaLayerNorm is supported"
            )

        def integer(sec: str, args: dict[str, Any], key: str, default: int | None = None) -> int:
            value = args.get(key, default)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModelLoadError(f"{source}: {sec}.init_args.{key} must be an integer, got {value!r}")
            return value

        def string(sec: str, args: dict[str, Any], key: str, default: str) -> str:
            value = args.get(key, default)
            if not isinstance(value, str):
                raise ModelLoadError(f"{source}: {sec}.init_args.{key} must be a string, got {value!r}")
            return value

        ls = bb.get("layer_scale_init_value")
        if ls is not None and (not isinstance(ls, (int, float)) or isinstance(ls, bool)):
            raise ModelLoadError(f"{source}: backbone.init_args.layer_scale_init_value must be a number, got {ls!r}")
        return cls(
            sample_rate=integer("feature_extractor", fe, "sample_rate", SAMPLE_RATE),
            n_fft=integer("feature_extractor", fe, "n_fft", 1024),
            hop_length=integer("feature_extractor", fe, "hop_length", HOP),
            n_mels=integer("feature_extractor", fe, "n_mels", 100),
            feature_padding=string("feature_extractor", fe, "padding", "center"),
            input_channels=integer("backbone", bb, "input_channels"),
            dim=integer("backbone", bb, "dim"),
            intermediate_dim=integer("backbone", bb, "intermediate_dim"),
            num_layers=integer("backbone", bb, "num_layers"),
            layer_scale_init_value=None if ls is None else float(ls),
            head_dim=integer("head", hd, "dim"),
            head_n_fft=integer("head", hd, "n_fft"),
            head_hop_length=integer("head", hd, "hop_length"),
            head_padding=string("head", hd, "padding", "same"),  # upstream ISTFTHead default
        )

    def to_yaml_text(self) -> str:
        """This config in the layout of the hub's ``config.yaml`` (readable by upstream ``Vocos.from_hparams``)."""
        ls = (
            ""
            if self.layer_scale_init_value is None
            else f"    layer_scale_init_value: {self.layer_scale_init_value!r}\n"
        )
        return (
            "feature_extractor:\n"
            f"  class_path: {_FEATURE_CLASS}\n"
            "  init_args:\n"
            f"    sample_rate: {self.sample_rate}\n"
            f"    n_fft: {self.n_fft}\n"
            f"    hop_length: {self.hop_length}\n"
            f"    n_mels: {self.n_mels}\n"
            f"    padding: {self.feature_padding}\n"
            "\n"
            "backbone:\n"
            f"  class_path: {_BACKBONE_CLASS}\n"
            "  init_args:\n"
            f"    input_channels: {self.input_channels}\n"
            f"    dim: {self.dim}\n"
            f"    intermediate_dim: {self.intermediate_dim}\n"
            f"    num_layers: {self.num_layers}\n"
            f"{ls}"
            "\n"
            "head:\n"
            f"  class_path: {_HEAD_CLASS}\n"
            "  init_args:\n"
            f"    dim: {self.head_dim}\n"
            f"    n_fft: {self.head_n_fft}\n"
            f"    hop_length: {self.head_hop_length}\n"
            f"    padding: {self.head_padding}\n"
        )


class MelFeatures(nn.Module):
    """Vocos ``MelSpectrogramFeatures``: audio ``[B, N]`` → log mel ``[B, n_mels, T]`` (log floor 1e-7)."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        self.padding = config.feature_padding
        self.mel_spec = MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            log_floor=VOCOS_LOG_FLOOR,
            persistent_buffers=True,
            center=config.feature_padding == "center",
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.padding == "same":
            pad = (self.mel_spec.win_length - self.mel_spec.hop_length) // 2
            audio = nn.functional.pad(audio.to(torch.float32), (pad, pad), mode="reflect")
        out: torch.Tensor = self.mel_spec(audio)
        return out


class ConvNeXtBlock(nn.Module):
    """``[B, C, T]`` → ``[B, C, T]``: x + gamma · Linear(GELU(Linear(LayerNorm(DepthwiseConv7(x)))))."""

    gamma: nn.Parameter | None

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale > 0 else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, C, T]; mask: [B, 1, T] (1 valid, 0 padding) or None. Padding is zeroed before the convolution,
        so a padded item sees the zeros it would see alone."""
        if mask is not None:
            x = x * mask
        h: torch.Tensor = self.dwconv(x).transpose(1, 2)  # [B, T, C]
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        if self.gamma is not None:
            h = self.gamma * h
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Mel ``[B, input_channels, T]`` → hidden ``[B, T, dim]``."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        layer_scale = config.layer_scale_init_value or 1.0 / config.num_layers
        self.embed = nn.Conv1d(config.input_channels, config.dim, kernel_size=7, padding=3)
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(config.dim, config.intermediate_dim, layer_scale) for _ in range(config.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(config.dim, eps=1e-6)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mel: [B, C, T], mask: [B, 1, T] float (1 valid) or None → [B, T, dim]."""
        if mask is not None:
            mel = mel * mask
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)  # [B, dim, T]
        for block in self.convnext:
            x = block(x, mask)
        out: torch.Tensor = self.final_layer_norm(x.transpose(1, 2))
        return out


class ISTFT(nn.Module):
    """Complex spectrogram ``[B, n_fft // 2 + 1, T]`` → waveform ``[B, L]``, float32.

    ``center``: ``torch.istft(center=True)``, ``L = (T - 1) * hop``. ``same``: windowed inverse FFT per frame,
    overlap-add, trim ``(win - hop) // 2`` each side, divide by the overlap-added squared window; ``L = T * hop``.
    """

    window: torch.Tensor

    def __init__(self, n_fft: int, hop_length: int, win_length: int, padding: str) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.padding = padding
        self.register_buffer("window", torch.hann_window(win_length))

    def hermitian(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec`` [B, n_fft // 2 + 1, T] with the imaginary parts of the DC (and, for even n_fft, Nyquist) bins
        zeroed. A real signal's spectrum has none; the head's free phase output does. CPU FFTs ignore them, but a
        complex-to-real cuFFT transform is undefined on such input and differs between plans (a batch of 8 decoded
        5 % away from the same items alone on an H200). Zeroing them gives every device and batch size the CPU's
        (and the ONNX/TensorRT basis') result."""
        edge = torch.zeros(spec.shape[1], 1, dtype=torch.bool, device=spec.device)
        edge[0] = True
        if self.n_fft % 2 == 0:
            edge[-1] = True
        return torch.where(edge, torch.complex(spec.real, torch.zeros_like(spec.real)), spec)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        window = self.window.to(device=spec.device, dtype=torch.float32)
        spec = self.hermitian(spec)
        if self.padding == "center":
            return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, window, center=True)
        n_frames = spec.shape[-1]
        pad = (self.win_length - self.hop_length) // 2
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * window[None, :, None]  # [B, win, T]
        total = (n_frames - 1) * self.hop_length + self.win_length
        y = self._overlap_add(frames, total)[:, pad : total - pad]
        envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, n_frames), total)[
            0, pad : total - pad
        ]
        return y / envelope

    def masked_center(self, spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``center`` ISTFT of a padded batch: spec [B, n_fft // 2 + 1, T], mask [B, T] float (1 valid) →
        [B, (T - 1) * hop]. Each item's window envelope counts only its own frames, so item ``i`` equals
        ``torch.istft`` of its ``T_i`` frames on the first ``(T_i - 1) * hop`` samples (later ones are undefined:
        slice them off)."""
        window = self.window.to(device=spec.device, dtype=torch.float32)
        spec = self.hermitian(spec)
        n_frames = spec.shape[-1]
        m = mask.to(torch.float32).unsqueeze(1)  # [B, 1, T]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * (window[None, :, None] * m)
        total = (n_frames - 1) * self.hop_length + self.win_length
        start = self.n_fft // 2
        y = self._overlap_add(frames, total)[:, start : total - start]
        env = self._overlap_add(window.square()[None, :, None] * m, total)[:, start : total - start]
        return y / env.clamp_min(1e-11)

    def _overlap_add(self, frames: torch.Tensor, total: int) -> torch.Tensor:
        """``[B, win, T]`` frames → ``[B, total]``, frame ``t`` added at offset ``t * hop``."""
        out = nn.functional.fold(
            frames, output_size=(1, total), kernel_size=(1, self.win_length), stride=(1, self.hop_length)
        )
        return out[:, 0, 0, :]


class ISTFTHead(nn.Module):
    """Hidden ``[B, T, dim]`` → waveform ``[B, L]`` (float32; see ``ISTFT`` for ``L``)."""

    def __init__(self, config: VocosConfig) -> None:
        super().__init__()
        self.out = nn.Linear(config.head_dim, config.head_n_fft + 2)
        self.istft = ISTFT(config.head_n_fft, config.head_hop_length, config.head_n_fft, config.head_padding)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, T, dim], mask: [B, T] float (1 valid) or None → waveform [B, L] fp32."""
        h = self.out(x).transpose(1, 2).to(torch.float32)  # [B, n_fft + 2, T]; exp/ISTFT stay in fp32
        log_mag, phase = h.chunk(2, dim=1)
        # exp(min(x, log 100)) == upstream's clip(exp(x), max=100), and cannot overflow in fp16
        mag = torch.exp(torch.clamp(log_mag, max=LOG_MAG_MAX))
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))
        if mask is not None and self.istft.padding == "center":
            return self.istft.masked_center(spec, mask)
        out: torch.Tensor = self.istft(spec)
        return out


class Vocos(nn.Module):
    """Mel Vocos. ``forward``/``decode``: log mel ``[B, n_mels, T]`` → waveform float32 ``[B, L]`` with
    ``L = (T - 1) * 256`` for vocos-mel-24khz (head padding "center"; ``T * 256`` for "same")."""

    def __init__(self, config: VocosConfig | None = None) -> None:
        super().__init__()
        self.config = config or VocosConfig()
        self.feature_extractor = MelFeatures(self.config)
        self.backbone = VocosBackbone(self.config)
        self.head = ISTFTHead(self.config)

    def output_length(self, n_frames: int) -> int:
        """Waveform samples ``decode`` returns for ``n_frames`` mel frames."""
        hop = self.config.head_hop_length
        return (n_frames - 1) * hop if self.config.head_padding == "center" else n_frames * hop

    def forward(self, mel: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, n_mels, T]`` → ``[B, L]`` float32 (``[n_mels, T]`` is treated as a batch of one).

        ``frame_mask`` [B, T] (1 valid, 0 padding; head padding "center") decodes a padded batch exactly: item
        ``i`` equals its own decode on its first ``(T_i - 1) * hop`` samples; slice off the rest."""
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3 or mel.shape[1] != self.config.input_channels:
            raise EngineError(
                f"Vocos expects mel of shape [B, {self.config.input_channels}, T], got {tuple(mel.shape)}"
            )
        weight = self.backbone.embed.weight
        mel = mel.to(device=weight.device, dtype=weight.dtype)
        if frame_mask is None:
            out: torch.Tensor = self.head(self.backbone(mel))
            return out
        fm = frame_mask.to(device=weight.device, dtype=torch.float32)
        hidden = self.backbone(mel, fm.unsqueeze(1).to(weight.dtype))
        masked: torch.Tensor = self.head(hidden, fm)
        return masked

    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """Inference-mode ``forward``: log mel ``[B, n_mels, T]`` → waveform float32 ``[B, L]``."""
        with torch.inference_mode():
            return self.forward(mel)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Vocos' own log mel of audio ``[B, N]``: ``[B, n_mels, T]`` (floor 1e-7, unlike F5's 1e-5)."""
        out: torch.Tensor = self.feature_extractor(audio)
        return out


def _check_state_dict(model: nn.Module, state: dict[str, Any], source: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong: list[str] = []
    for k in sorted(set(expected) & set(state)):
        v = state[k]
        if not isinstance(v, torch.Tensor):
            wrong.append(f"{k} is {type(v).__name__}, expected a tensor of shape {list(expected[k])}")
        elif tuple(v.shape) != expected[k]:
            wrong.append(f"{k} has shape {list(v.shape)}, expected {list(expected[k])}")
        elif not v.is_floating_point():
            wrong.append(f"{k} has dtype {v.dtype}, expected a floating-point tensor")
    problems: list[str] = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if wrong:
        problems.append("mismatched: " + "; ".join(wrong))
    if problems:
        raise ModelLoadError(f"{source} does not match the Vocos config: " + " | ".join(problems))


def load_state_dict_strict(model: Vocos, state: dict[str, Any], source: str = "state dict") -> None:
    """Load ``state`` into ``model``; missing, unexpected or mis-shaped keys raise ``ModelLoadError`` listing all."""
    _check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def load_vocos(folder: Path, device: str | torch.device = "cpu") -> Vocos:
    """Build a Vocos from ``folder/config.yaml`` and ``folder/pytorch_model.bin`` (strict), eval mode, on ``device``.

    Raises ``WeightsMissingError`` when a file is absent and ``ModelLoadError`` when one is unreadable or does not
    match the config.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    weights_path = folder / WEIGHTS_FILE
    for p in (config_path, weights_path):
        if not p.is_file():
            raise WeightsMissingError(
                f"Vocos file {str(p)!r} does not exist; run `ishow models fetch` to download vocos-mel-24khz"
            )
    try:
        config_text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{config_path} is unreadable: {e}") from e
    config = VocosConfig.from_yaml_text(config_text, source=str(config_path))
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, zip errors...
        raise ModelLoadError(f"{weights_path} is not a readable PyTorch state dict: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ModelLoadError(f"{weights_path} holds a {type(state).__name__}, expected a state dict (name → tensor)")
    model = Vocos(config)
    load_state_dict_strict(model, state, source=str(weights_path))
    return model.eval().to(device)


def save_vocos(folder: Path, model: Vocos, config: VocosConfig | None = None) -> None:
    """Write ``config.yaml`` and ``pytorch_model.bin`` (a plain ``torch.save`` state dict) as the hub has them."""
    config = config or model.config
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(config.to_yaml_text(), encoding="utf-8")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)


def expected_keys(config: VocosConfig | None = None) -> dict[str, list[int]]:
    """``{state-dict key: shape}`` of a Vocos with ``config`` (default vocos-mel-24khz), built on the meta device."""
    with torch.device("meta"):
        model = Vocos(config)
    return {k: list(v.shape) for k, v in model.state_dict().items()}
