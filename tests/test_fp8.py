"""engine.precision = "fp8": per-channel e4m3 weights, per-row activation scales, the blocks' four GEMMs through
torch._scaled_mm (its CPU implementation here; CUDA graphs and compile on the GPU), clear errors where it can't run."""

from __future__ import annotations

import pytest
import torch

from ishow.config.engine import EngineConfig
from ishow.engine.accel import fp8
from ishow.engine.accel.fused import FusedBlocks
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import DiT, DiTConfig
from ishow.errors import ConfigError

SMALL = DiTConfig(dim=64, depth=3, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_quantize_uses_each_channels_full_range() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(48, 64, generator=gen) * torch.logspace(-3, 1, 48)[:, None]  # rows of very different sizes
    b = torch.randn(48, generator=gen)
    q = fp8.quantize(w, b)
    assert q.w8.dtype == torch.float8_e4m3fn and q.w8.shape == (48, 64) and q.scale.shape == (1, 48)
    assert torch.allclose(q.w8.float().abs().amax(dim=1), torch.full((48,), fp8.FP8_MAX))
    per_row = ((fp8.dequantize(q) - w).norm(dim=1) / w.norm(dim=1)).max()
    assert per_row < 0.05  # e4m3: 3 mantissa bits; the small rows are as exact as the large ones
    assert q.bias.dtype == torch.float32 and torch.equal(q.bias, b)


def test_linear8_is_a_scaled_fp8_matmul() -> None:
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(32, 64, generator=gen) * 0.05, torch.randn(32, generator=gen)
    x = torch.randn(3, 7, 64, generator=gen) * torch.logspace(-2, 2, 7)[None, :, None]  # rows of any size
    q = fp8.quantize(w, b)
    got = fp8.linear8(x, q.w8, q.scale, q.bias)
    want = torch.nn.functional.linear(x, w, b)
    assert got.shape == (3, 7, 32) and got.dtype == x.dtype
    assert rel(got, want) < 0.05
    # the same product with the dequantized weight and an exactly representable input is exact up to bf16 output
    x_exact = torch.tensor([[1.0, -2.0, 0.5, 448.0] * 16])
    exact = torch.nn.functional.linear(x_exact, fp8.dequantize(q), b)
    torch.testing.assert_close(fp8.linear8(x_exact, q.w8, q.scale, q.bias), exact, rtol=1e-2, atol=1e-2)


def test_fused_blocks_in_fp8_track_the_fp32_blocks() -> None:
    model = DiT(SMALL).eval()
    randomize_(model, seed=4)
    gen = torch.Generator().manual_seed(2)
    lens = torch.tensor([40, 23])
    x, cond = torch.randn(2, 40, 100, generator=gen), torch.randn(2, 40, 100, generator=gen)
    mask = torch.arange(40)[None] < lens[:, None]
    te = model.embed_text(torch.randint(1, 2545, (2, 20), generator=gen), lens, 40)
    step = model.step_conditioning(0.3)
    with torch.no_grad():
        want = model(x, cond, te, step, mask)
        blocks = fp8.quantize_blocks(model)
        assert len(blocks) == SMALL.depth
        got = model(x, cond, te, step, mask, runner=FusedBlocks(model, compile=False, fp8=blocks))
        fp16_like = model(x, cond, te, step, mask, runner=FusedBlocks(model, compile=False))
    torch.testing.assert_close(fp16_like, want, rtol=1e-5, atol=1e-5)
    err = rel(got[mask], want[mask])
    assert 1e-4 < err < 5e-2, err  # really quantized, and close
    assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))


def test_the_sampler_quantizes_once_and_again_after_clear() -> None:
    model = DiT(SMALL).eval()
    sampler = GraphSampler(model, fp8=True)
    assert not sampler.fp8  # CPU: no compiled graphs, so no fp8 (the engine refuses fp8 there, see below)
    sampler.fp8 = True
    first = sampler._fp8()
    assert first is not None and sampler._fp8() is first
    sampler.clear()
    assert sampler._fp8() is not first


def test_fp8_is_refused_clearly_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from ishow.engine.f5_engine import F5Engine, _resolve_dtype

    with pytest.raises(ConfigError, match="fp8 needs a CUDA GPU; use fp16"):
        _resolve_dtype("fp8", torch.device("cpu"))
    monkeypatch.setattr(fp8, "unsupported", lambda device: None)
    assert _resolve_dtype("fp8", torch.device("cpu")) == torch.float16
    eng = F5Engine(EngineConfig(device="cpu", precision="fp8", compile=False))
    with pytest.raises(ConfigError, match="fp8 runs inside the compiled CUDA graphs"):
        eng.load()


def test_config_accepts_fp8() -> None:
    from ishow.config.choices import PRECISIONS

    assert "fp8" in PRECISIONS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_unsupported_names_the_gpu() -> None:
    why = fp8.unsupported(torch.device("cuda"))
    cap = torch.cuda.get_device_capability()
    assert (why is None) == (cap >= fp8.MIN_CAPABILITY)
