"""ishow.engine.f5.vocos: config parsing, strict loading, upstream key layout, decode math.

Not tested on purpose: decoding a zero-padded batch of different-length mels does NOT equal decoding each alone near
the end of the shorter items (the backbone's k7 convolutions and the ISTFT see the padding); callers decode items
alone or trim.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ishow.engine.f5.vocos import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Vocos,
    VocosConfig,
    expected_keys,
    load_state_dict_strict,
    load_vocos,
    save_vocos,
)
from ishow.errors import EngineError, ModelLoadError, WeightsMissingError

GOLDEN = Path(__file__).parent / "golden"

# The hub's charactr/vocos-mel-24khz/config.yaml, comments and alignment included.
REAL_CONFIG_YAML = """\
feature_extractor:
  class_path: vocos.feature_extractors.MelSpectrogramFeatures
  init_args:
    sample_rate: 24000
    n_fft:        1024 # 42.66 msec
    hop_length:    256 # 10.66 msec, 3/4 overlap
    n_mels:        100
    padding:    center

backbone:
  class_path: vocos.models.VocosBackbone
  init_args:
    input_channels: 100
    dim: 512
    intermediate_dim: 1536
    num_layers: 8

head:
  class_path: vocos.heads.ISTFTHead
  init_args:
    dim: 512
    n_fft: 1024
    hop_length: 256
    padding: center
"""

TINY = VocosConfig(
    n_fft=256,
    hop_length=64,
    n_mels=40,
    input_channels=40,
    dim=32,
    intermediate_dim=64,
    num_layers=2,
    head_dim=32,
    head_n_fft=256,
    head_hop_length=64,
)


def tiny_model(config: VocosConfig = TINY, seed: int = 0) -> Vocos:
    torch.manual_seed(seed)
    model = Vocos(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # every parameter non-trivial (LayerNorm ones, gamma 1/L would hide bugs)
            p.add_(torch.randn(p.shape) * 0.05)
    return model


def mel_input(config: VocosConfig = TINY, frames: int = 23, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.input_channels, frames, generator=g) * 2 - 3


# --- config ---------------------------------------------------------------------------------------------------


def test_real_config_parses_to_defaults() -> None:
    cfg = VocosConfig.from_yaml_text(REAL_CONFIG_YAML)
    assert cfg == VocosConfig()
    assert (cfg.dim, cfg.intermediate_dim, cfg.num_layers, cfg.head_padding) == (512, 1536, 8, "center")


def test_config_yaml_round_trip() -> None:
    for cfg in (VocosConfig(), TINY, VocosConfig(head_padding="same", layer_scale_init_value=0.25)):
        assert VocosConfig.from_yaml_text(cfg.to_yaml_text()) == cfg


def test_head_padding_defaults_to_upstream_same() -> None:
    text = REAL_CONFIG_YAML.replace("    padding: center\n", "")
    assert text.count("padding") == 1  # only the feature extractor's remains
    assert VocosConfig.from_yaml_text(text).head_padding == "same"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("vocos.models.VocosBackbone", "vocos.models.VocosResNetBackbone", "only vocos.models.VocosBackbone"),
        ("vocos.feature_extractors.MelSpectrogramFeatures", "vocos.feature_extractors.EncodecFeatures", "only"),
        ("    num_layers: 8\n", "    num_layers: 8\n    adanorm_num_embeddings: 4\n", "AdaLayerNorm"),
        ("    num_layers: 8\n", "    num_layers: 8\n    kernel: 5\n", "unsupported backbone.init_args: kernel"),
        ("    num_layers: 8\n", "", "missing backbone.init_args: num_layers"),
        ("    dim: 512\n    n_fft", "    dim: 256\n    n_fft", "head dim 256 != backbone dim 512"),
        ("padding:    center", "padding:    middle", "feature_padding must be"),
        ("num_layers: 8", "num_layers: eight", "num_layers must be an integer"),
        ("head:\n", "hed:\n", "missing section 'head'"),
        ("  init_args:\n    dim: 512\n    n_fft", "  init_args: [1]\n  x:\n    dim: 512\n    n_fft", "mapping"),
    ],
)
def test_bad_configs_are_rejected(old: str, new: str, message: str) -> None:
    text = REAL_CONFIG_YAML.replace(old, new, 1)
    assert text != REAL_CONFIG_YAML
    with pytest.raises(ModelLoadError, match=message):
        VocosConfig.from_yaml_text(text, source="cfg.yaml")


def test_invalid_yaml() -> None:
    with pytest.raises(ModelLoadError, match="not valid YAML"):
        VocosConfig.from_yaml_text("a: [1, 2\n")
    with pytest.raises(ModelLoadError, match="expected a mapping"):
        VocosConfig.from_yaml_text("- 1\n")


# --- upstream key layout --------------------------------------------------------------------------------------


def test_state_dict_matches_upstream_vocos_mel_24khz() -> None:
    """tests/golden/vocos_keys.json was written from upstream vocos 0.1.0 + torchaudio (config above)."""
    golden = json.loads((GOLDEN / "vocos_keys.json").read_text())["vocos-mel-24khz"]
    ours = expected_keys()
    assert ours == golden
    assert list(ours) == list(golden)  # same order too
    assert len(ours) == 83
    assert ours["feature_extractor.mel_spec.mel_scale.fb"] == [513, 100]
    assert ours["head.out.weight"] == [1026, 512]


def test_real_size_model_parameter_count() -> None:
    with torch.device("meta"):
        model = Vocos()
    n = sum(p.numel() for p in model.parameters())
    assert n == 13_531_650  # published: 13.5M; backbone + head; the two feature-extractor buffers are not parameters


# --- save / load ----------------------------------------------------------------------------------------------


def test_save_and_load_round_trip_is_exact(tmp_path: Path) -> None:
    model = tiny_model()
    save_vocos(tmp_path / "voc", model)
    assert (tmp_path / "voc" / CONFIG_FILE).is_file() and (tmp_path / "voc" / WEIGHTS_FILE).is_file()
    loaded = load_vocos(tmp_path / "voc")
    assert loaded.config == TINY and not loaded.training
    mel = mel_input()
    assert torch.equal(loaded.decode(mel), model.decode(mel))
    raw = torch.load(tmp_path / "voc" / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    assert set(raw) == set(model.state_dict())  # a plain state dict, like the hub's pytorch_model.bin


def test_missing_files_raise_weights_missing(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError, match=r"config\.yaml.*ishow models fetch"):
        load_vocos(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(TINY.to_yaml_text())
    with pytest.raises(WeightsMissingError, match=r"pytorch_model\.bin.*ishow models fetch"):
        load_vocos(tmp_path)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path: Path) -> None:
    model = tiny_model()
    save_vocos(tmp_path, model)
    state = dict(model.state_dict())
    del state["backbone.convnext.1.gamma"]
    state["backbone.extra.weight"] = torch.zeros(3)
    state["head.out.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / WEIGHTS_FILE)
    with pytest.raises(ModelLoadError) as err:
        load_vocos(tmp_path)
    msg = str(err.value)
    assert "missing keys: backbone.convnext.1.gamma" in msg
    assert "unexpected keys: backbone.extra.weight" in msg
    assert "head.out.bias has shape [7], expected [258]" in msg
    assert WEIGHTS_FILE in msg


def test_feature_extractor_buffers_are_required() -> None:
    model = tiny_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("feature_extractor.")}
    with pytest.raises(ModelLoadError, match=r"feature_extractor\.mel_spec\.mel_scale\.fb"):
        load_state_dict_strict(Vocos(TINY), state)


def test_corrupt_or_wrong_weights_file(tmp_path: Path) -> None:
    save_vocos(tmp_path, tiny_model())
    data = (tmp_path / WEIGHTS_FILE).read_bytes()
    (tmp_path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="not a readable PyTorch state dict"):
        load_vocos(tmp_path)
    torch.save([torch.zeros(1)], tmp_path / WEIGHTS_FILE)
    with pytest.raises(ModelLoadError, match="expected a state dict"):
        load_vocos(tmp_path)


def test_config_and_weights_must_agree(tmp_path: Path) -> None:
    save_vocos(tmp_path, tiny_model())
    bigger = VocosConfig(**{**TINY.__dict__, "num_layers": 3})
    (tmp_path / CONFIG_FILE).write_text(bigger.to_yaml_text())
    with pytest.raises(ModelLoadError, match=r"missing keys: backbone\.convnext\.2\."):
        load_vocos(tmp_path)


# --- decode ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("padding", "frames", "samples"), [("center", 23, 22 * 64), ("same", 23, 23 * 64)])
def test_decode_length(padding: str, frames: int, samples: int) -> None:
    cfg = VocosConfig(**{**TINY.__dict__, "head_padding": padding})
    model = tiny_model(cfg)
    out = model.decode(mel_input(cfg, frames=frames))
    assert out.shape == (2, samples) == (2, model.output_length(frames))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_real_config_decode_length() -> None:
    model = Vocos().eval()
    out = model.decode(torch.randn(1, 100, 12) - 4)
    assert out.shape == (1, 11 * 256)  # vocos-mel-24khz uses center padding: (T - 1) * hop


def test_decode_accepts_2d_and_rejects_wrong_channels() -> None:
    model = tiny_model()
    mel = mel_input(batch=1)
    assert torch.equal(model.decode(mel[0]), model.decode(mel))
    with pytest.raises(EngineError, match=r"\[B, 40, T\]"):
        model.decode(torch.zeros(1, 100, 5))


def test_decode_in_bfloat16_returns_float32() -> None:
    model = tiny_model().to(torch.bfloat16)
    out = model.decode(mel_input())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref = tiny_model().decode(mel_input())
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 1e-3


def test_magnitude_is_clipped_after_exp() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.head.out.weight.zero_()
        model.head.out.bias.zero_()
        model.head.out.bias[: TINY.head_n_fft // 2 + 1] = 50.0  # exp(50) would overflow the output without the clip
    out = model.decode(mel_input())
    assert torch.isfinite(out).all()
    assert float(out.abs().max()) <= 100.0 * (TINY.head_n_fft // 2 + 1)


@pytest.mark.parametrize("padding", ["center", "same"])
def test_istft_inverts_stft(padding: str) -> None:
    """The ISTFT is the exact inverse of the matching STFT framing (checks the 'same' overlap-add math)."""
    cfg = VocosConfig(**{**TINY.__dict__, "head_padding": padding})
    istft = Vocos(cfg).head.istft
    n_fft, hop = cfg.head_n_fft, cfg.head_hop_length
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 40 * hop, generator=g)
    window = torch.hann_window(n_fft)
    if padding == "center":
        spec = torch.stft(x, n_fft, hop, n_fft, window, center=True, return_complex=True)
        expected = x[:, : (spec.shape[-1] - 1) * hop]
    else:
        pad = (n_fft - hop) // 2
        xp = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
        spec = torch.stft(xp, n_fft, hop, n_fft, window, center=False, return_complex=True)
        expected = x[:, : spec.shape[-1] * hop]
    y = istft(spec)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_features_are_vocos_log_mel() -> None:
    model = Vocos(TINY)
    audio = torch.randn(1, 4000) * 0.1
    feats = model.features(audio)
    assert feats.shape == (1, 40, 1 + 4000 // 64)
    silent = model.features(torch.zeros(1, 1000))
    assert float(silent.max()) == pytest.approx(float(torch.log(torch.tensor(1e-7))), rel=1e-6)


def test_decode_matches_upstream_golden_if_present() -> None:
    """tests/golden/vocos_golden.safetensors (written by make_golden.py from upstream vocos) when it exists."""
    path = GOLDEN / "vocos_golden.safetensors"
    if not path.exists():
        pytest.skip("tests/golden/vocos_golden.safetensors not generated yet (tests/golden/make_golden.py)")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    cfg = VocosConfig(dim=meta["dim"], head_dim=meta["dim"], intermediate_dim=meta["intermediate_dim"],
                      num_layers=meta["num_layers"])  # fmt: skip
    model = Vocos(cfg).eval()
    load_state_dict_strict(model, {k[2:]: v for k, v in tensors.items() if k.startswith("w.")})
    out = model.decode(tensors["in.mel"])
    torch.testing.assert_close(out, tensors["out.audio"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("padding", "masked"), [("center", False), ("center", True), ("same", False)])
def test_inverse_fft_gets_a_hermitian_spectrum(padding: str, masked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head's phases give the DC and Nyquist bins imaginary parts a real signal cannot have; a complex-to-real
    cuFFT transform is undefined on them (batch and single decodes differed by 5 % on an H200). Every inverse FFT
    must see them zeroed, which is what the CPU FFT and the ONNX/TensorRT basis compute anyway."""
    from ishow.engine.f5.vocos import ISTFT

    seen: list[torch.Tensor] = []
    irfft, istft = torch.fft.irfft, torch.istft

    def spy_irfft(x: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        seen.append(x)
        out: torch.Tensor = irfft(x, *a, **k)
        return out

    def spy_istft(x: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        seen.append(x)
        out: torch.Tensor = istft(x, *a, **k)
        return out

    monkeypatch.setattr(torch.fft, "irfft", spy_irfft)
    monkeypatch.setattr(torch, "istft", spy_istft)
    gen = torch.Generator().manual_seed(3)
    spec = torch.complex(torch.randn(2, 33, 9, generator=gen), torch.randn(2, 33, 9, generator=gen))
    ist = ISTFT(64, 16, 64, padding)
    out = ist.masked_center(spec, torch.ones(2, 9)) if masked else ist(spec)
    assert seen and all(float(s[:, 0].imag.abs().max()) == 0 and float(s[:, -1].imag.abs().max()) == 0 for s in seen)
    assert torch.equal(seen[0][:, 1:-1], spec[:, 1:-1]) and torch.equal(seen[0].real, spec.real)
    monkeypatch.undo()
    # on the CPU the result is what it always was (its FFT ignores those parts)
    ref = ist.masked_center(spec, torch.ones(2, 9)) if masked else ist(spec)
    torch.testing.assert_close(out, ref)
    clean = ISTFT(64, 16, 64, padding)
    monkeypatch.setattr(clean, "hermitian", lambda spec: spec)
    torch.testing.assert_close(clean.masked_center(spec, torch.ones(2, 9)) if masked else clean(spec), ref,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
