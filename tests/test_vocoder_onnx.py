"""Vocos batched with frame masks, the ONNX export (onnxruntime vs torch, fp32) and the backend selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ishow.engine.accel.mels import pad_mels
from ishow.engine.accel.onnx_export import VocosOnnx, export_vocos_onnx, istft_basis
from ishow.engine.accel.vocoder_backends import OnnxVocoder, TorchVocoder, select_vocoder
from ishow.engine.f5.vocos import Vocos, VocosConfig
from ishow.errors import ConfigError


@pytest.fixture(scope="module")
def vocos() -> Vocos:
    torch.manual_seed(0)
    model = Vocos(VocosConfig(dim=64, intermediate_dim=192, num_layers=2, head_dim=64)).eval()
    with torch.no_grad():
        model.head.out.bias[:513] += 3.0  # push some log-magnitudes past log(100): the clamp must match the clip
    return model


def mels(lens: list[int], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in lens]


def singles(vocos: Vocos, ms: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [vocos(m.T[None])[0] for m in ms]


def test_masked_batch_decode_equals_items_alone(vocos: Vocos) -> None:
    ms = mels([37, 64, 20, 5])
    mel, mask = pad_mels(ms, 5, 70, torch.device("cpu"))
    with torch.no_grad():
        batch = vocos(mel, mask)
    for i, ref in enumerate(singles(vocos, ms)):
        assert float((batch[i, : len(ref)] - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_torch_backend_on_cpu(vocos: Vocos) -> None:
    backend = TorchVocoder(vocos)
    assert backend.name == "torch"
    ms = mels([30, 12])
    for got, ref in zip(backend.decode(ms), singles(vocos, ms), strict=True):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert backend.decode([]) == []


def test_eager_fallback_runs_in_a_bucket_shape_and_stays_exact(vocos: Vocos, monkeypatch: pytest.MonkeyPatch) -> None:
    # no ready graph (before "ready", or a length past the plan): the eager run is padded like a bucket (rows ≥ 2,
    # frames to the bucket step), so GPU kernels meet a shape they were compiled for; the masks keep it exact
    backend = TorchVocoder(vocos)
    monkeypatch.setattr(backend, "use_graphs", True)
    backend.capture_on_miss = False  # the daemon's mode: never capture on a message's path
    ms = mels([107])
    (ref,) = singles(vocos, ms)
    shapes: list[tuple[int, ...]] = []
    real = backend.vocos.forward

    def recording(mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(mel.shape))
        return real(mel, mask)

    monkeypatch.setattr(backend.vocos, "forward", recording)
    (got,) = backend.decode(ms)
    assert shapes == [(2, 100, 128)] and backend.ready_buckets() == []
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_istft_basis_is_irfft_times_window() -> None:
    n = 16
    window = torch.hann_window(n, dtype=torch.float64).float()
    spec = torch.randn(n // 2 + 1, dtype=torch.complex64)
    frame = torch.fft.irfft(spec, n) * window
    coeffs = torch.cat([spec.real, spec.imag])
    via_basis = (istft_basis(n, window)[:, 0, :] * coeffs[:, None]).sum(0)
    torch.testing.assert_close(via_basis, frame, rtol=0, atol=1e-6)


def test_export_wrapper_equals_torch(vocos: Vocos) -> None:
    ms = mels([40, 17, 33], seed=1)
    mel, mask = pad_mels(ms, 3, 40, torch.device("cpu"))
    with torch.no_grad():
        out = VocosOnnx(vocos)(mel, mask)
    for i, ref in enumerate(singles(vocos, ms)):
        torch.testing.assert_close(out[i, : len(ref)], ref, rtol=0, atol=1e-5)


def test_onnxruntime_equals_torch_fp32(vocos: Vocos, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = export_vocos_onnx(vocos, tmp_path / "vocos.onnx")
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["mel", "frame_mask"]
    ops = {n.op_type for n in model.graph.node}
    assert "ConvTranspose" in ops and not ops & {"DFT", "STFT"}
    backend = OnnxVocoder(path)
    for lens in ([256], [80, 33, 120], [16] * 4):
        ms = mels(lens, seed=len(lens))
        for got, ref in zip(backend.decode(ms), singles(vocos, ms), strict=True):
            assert got.shape == ref.shape
            assert float((got - ref).abs().max()) <= 1e-4


def test_onnx_clamp_matches_clip_for_large_log_magnitudes(vocos: Vocos) -> None:
    x = torch.tensor([-3.0, 0.0, 4.6, 4.7, 20.0, 80.0])
    clamped = torch.exp(torch.clamp(x, max=float(np.log(100.0))))
    clipped = torch.clip(torch.exp(x), max=100.0)
    torch.testing.assert_close(clamped, clipped, rtol=1e-6, atol=0)
    assert bool(torch.isfinite(torch.exp(torch.clamp(x.half(), max=float(np.log(100.0))))).all())


def test_select_vocoder(vocos: Vocos, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    assert select_vocoder("auto", vocos, cpu).name == "torch"
    assert select_vocoder("torch", vocos, cpu).name == "torch"
    assert select_vocoder("onnx", vocos, cpu, tmp_path).name == "onnx"
    assert (tmp_path / "vocos.onnx").is_file()
    with pytest.raises(ConfigError, match="tensorrt needs a CUDA device"):
        select_vocoder("tensorrt", vocos, cpu)
    with pytest.raises(ConfigError, match="vocoder_backend"):
        select_vocoder("bogus", vocos, cpu)
    assert next(vocos.parameters()).device == cpu  # exporting did not move the live model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (graphs are GPU-only)")
def test_torch_graph_backend_equals_eager_on_cuda(vocos: Vocos) -> None:
    import copy

    gpu = copy.deepcopy(vocos).to("cuda")
    graphed, eager = TorchVocoder(gpu), TorchVocoder(gpu, use_graphs=False)
    assert graphed.name == "torch-graph"
    ms = [m.cuda() for m in mels([50, 20, 64])]
    a, b = graphed.decode(ms), eager.decode(ms)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-4)
