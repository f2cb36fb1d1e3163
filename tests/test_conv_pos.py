"""The conv position embedding's Triton path (ishow.engine.accel.conv_pos): its maths equals the module, the kernel
equals it too (Triton's CPU interpreter where Triton is installed; the real kernel on CUDA), failures fall back."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F

from ishow.engine.accel import conv_pos as cp
from ishow.engine.accel.fallback import Fallback, triton_available
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import DiT, DiTConfig
from ishow.engine.f5.sampler import SampleItem, SamplerConfig, sample
from tests.triton_interpreter import run_script

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def module(dim: int = 128, groups: int = 4, kernel: int = 7, seed: int = 0) -> torch.nn.Module:
    from ishow.engine.f5.dit import ConvPositionEmbedding

    torch.manual_seed(seed)
    m = ConvPositionEmbedding(dim, kernel_size=kernel, groups=groups).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)  # convs large enough that Mish's negative side and its linear tail are both exercised
    return m


def case(n: int = 40, lens: tuple[int, ...] = (40, 17, 1), dim: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(len(lens), n, dim, generator=gen) * 2
    mask = torch.arange(n)[None] < torch.tensor(lens)[:, None]
    return x, mask


def test_mish_form_equals_torch_mish() -> None:
    x = torch.cat([torch.linspace(-60, 60, 2001), torch.tensor([0.0, 19.99, 20.0, 20.01, 1e4, -1e4])]).double()
    torch.testing.assert_close(cp.mish(x), F.mish(x), rtol=1e-12, atol=1e-12)


def test_rearranged_torch_form_equals_the_module_and_residual() -> None:
    m = module()
    x, mask = case()
    lens = mask.sum(dim=1, dtype=torch.int32)
    (w1, b1), (w2, b2) = (cp.rearrange(c) for c in cp.convs(m))
    assert w1.shape == (4, 7, 32, 32)
    with torch.no_grad():
        want = m(x, mask) + x
    got = cp.conv_pos_torch(x, lens, w1, b1, w2, b2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a row's result does not depend on what lies past its length
    x2 = x.clone()
    x2[1, 17:] = 1e3
    got2 = cp.conv_pos_torch(x2, lens, w1, b1, w2, b2)
    torch.testing.assert_close(got2[1, :17], got[1, :17])


def test_conv_pos_falls_back_to_the_module_off_cuda_and_after_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    m = module()
    x, mask = case()
    runner = cp.ConvPos(m)
    with torch.no_grad():
        want = m(x, mask) + x
        assert not runner.usable(x)  # CPU
        torch.testing.assert_close(runner(x, mask), want, rtol=0, atol=0)
        monkeypatch.setattr(cp, "_KERNEL", Fallback("test kernel", "the fallback", logging.getLogger("test")))
        monkeypatch.setattr(cp.ConvPos, "usable", lambda self, x: not cp._KERNEL.broken)

        def broken(*a: object, **k: object) -> torch.Tensor:
            raise RuntimeError("PTX not supported")

        monkeypatch.setattr(cp, "conv_mish_triton", broken)
        torch.testing.assert_close(runner(x, mask), want, rtol=0, atol=0)
        assert cp.kernel_failure() is not None and "PTX" in cp.kernel_failure()  # type: ignore[operator]
        torch.testing.assert_close(runner(x, mask), want, rtol=0, atol=0)  # no second try


def test_weights_are_rearranged_again_after_a_reload() -> None:
    m = module()
    runner = cp.ConvPos(m)
    first = runner._params()[0].clone()
    assert runner._params()[0] is runner._params()[0]  # cached
    with torch.no_grad():
        cp.convs(m)[0].weight.mul_(2)
    torch.testing.assert_close(runner._params()[0], first * 2)


def test_tile_for_shapes() -> None:
    assert cp.tile_for(2, 768).block_n == 64
    assert cp.tile_for(32, 768).block_n == 128


def test_sampler_with_the_pos_runner_equals_the_module_path() -> None:
    cfg = DiTConfig(dim=128, depth=2, heads=2, dim_head=64, ff_mult=2, text_dim=32, conv_layers=1)
    model = DiT(cfg).eval()
    randomize_(model, seed=5)
    gen = torch.Generator().manual_seed(1)
    items = [SampleItem(cond=torch.randn(ref, 100, generator=gen), text=tuple(range(1, 9)), duration=dur, seed=i)
             for i, (ref, dur) in enumerate(((10, 30), (5, 21)))]  # fmt: skip
    want = sample(model, items, SamplerConfig())
    sampler = GraphSampler(model, use_graphs=False)
    assert sampler.conv_pos is not None
    calls: list[int] = []
    torch_form = cp.ConvPos(model.input_embed.conv_pos_embed)

    def via_torch_form(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        calls.append(h.shape[0])
        w1, b1, w2, b2 = torch_form._params()
        lens = mask.sum(dim=1, dtype=torch.int32) if mask is not None else torch.full((h.shape[0],), h.shape[1])
        return cp.conv_pos_torch(h, lens, w1, b1, w2, b2)

    sampler.conv_pos = via_torch_form  # type: ignore[assignment]
    got = sampler.sample(items)
    assert calls == [4] * 7  # every step, CFG rows included
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


INTERPRETER_SCRIPT = """
import torch
from ishow.engine.accel import conv_pos as cp
from tests.test_conv_pos import case, module
m = module()
for lens in ((40, 17, 1), (40, 40, 40)):
    x, mask = case(lens=lens)
    l32 = mask.sum(dim=1, dtype=torch.int32)
    (w1, b1), (w2, b2) = (cp.rearrange(c) for c in cp.convs(m))
    with torch.no_grad():
        want = m(x, mask) + x
    for tile in (cp.Tile(16, 1, 1), cp.Tile(32, 2, 2)):
        mid = cp.conv_mish_triton(x, w1, b1, l32, None, tile)
        got = cp.conv_mish_triton(mid, w2, b2, l32, x, tile)
        err = (got - want).abs().max().item()
        assert err < 1e-4, (lens, tile, err)
print("ok")
"""


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed (the CUDA test runs the kernel)")
def test_triton_kernel_in_the_interpreter_equals_the_module() -> None:
    run_script(INTERPRETER_SCRIPT)


@cuda
def test_triton_kernel_on_cuda_equals_the_module() -> None:
    m = module(dim=1024, groups=16, kernel=31).cuda().half()
    x, mask = case(n=300, lens=(300, 211, 1, 128), dim=1024)
    x, mask = x.cuda().half() * 0.25, mask.cuda()
    runner = cp.ConvPos(m)
    assert runner.usable(x)
    with torch.no_grad():
        got = runner(x, mask)
        want = copy.deepcopy(m).float()(x.float(), mask) + x.float()
    assert cp.kernel_failure() is None
    err = float((got.float() - want).norm() / want.norm())
    assert err < 2e-3, err
