"""Fused/compilable paths (ishow.engine.accel.fused) equal the reference modules; compiling is CUDA-only, optional."""

from __future__ import annotations

import pytest
import torch

from ishow.engine.accel.fused import FastVocos, FusedBlocks, overlap_add, rope
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.accel.mels import pad_mels
from ishow.engine.accel.vocoder_backends import TorchVocoder, select_vocoder
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import TINY, DiT, apply_rotary_qk
from ishow.engine.f5.vocos import Vocos, VocosConfig


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


@pytest.fixture(scope="module")
def tiny() -> DiT:
    model = DiT(TINY).eval()
    randomize_(model, seed=3)
    return model


@pytest.fixture(scope="module")
def vocos() -> Vocos:
    torch.manual_seed(0)
    model = Vocos(VocosConfig(dim=64, intermediate_dim=192, num_layers=2, head_dim=64)).eval()
    with torch.no_grad():
        model.head.out.bias[:513] += 3.0  # some log-magnitudes past log(100)
    return model


def test_rope_equals_complex_rotation(tiny: DiT) -> None:
    qk = torch.randn(2, 40, 2, 2, 32)
    table = tiny.rotary_embed.table(40)
    ri = torch.view_as_real(table)
    got = torch.stack([rope(qk[:, :, i], ri[..., 0], ri[..., 1]) for i in range(2)], dim=2)
    torch.testing.assert_close(got, apply_rotary_qk(qk, table), rtol=0, atol=1e-6)


def test_fused_blocks_equal_block_loop(tiny: DiT) -> None:
    gen = torch.Generator().manual_seed(1)
    lens = torch.tensor([40, 25, 7])
    x, cond = torch.randn(3, 40, 100, generator=gen), torch.randn(3, 40, 100, generator=gen)
    mask = torch.arange(40)[None] < lens[:, None]
    te = tiny.embed_text(torch.randint(1, 2545, (3, 20), generator=gen), lens, 40)
    step = tiny.step_conditioning(0.4)
    calls: list[int] = []
    runner = FusedBlocks(tiny, compile=False)
    assert not runner.compiled

    def counting(*args: object) -> torch.Tensor:
        calls.append(1)
        return runner(*args)  # type: ignore[arg-type]

    with torch.no_grad():
        ref = tiny(x, cond, te, step, mask)
        tiny.block_runner = counting
        try:
            got = tiny(x, cond, te, step, mask)
        finally:
            tiny.block_runner = None
    assert calls == [1]
    assert rel_l2(got, ref) < 1e-6


def test_overlap_add_equals_fold() -> None:
    frames = torch.randn(2, 9, 16)
    want = torch.nn.functional.fold(frames.transpose(1, 2), (1, 8 * 4 + 16), (1, 16), stride=(1, 4))[:, 0, 0]
    torch.testing.assert_close(overlap_add(frames, 4), want, rtol=0, atol=1e-6)


def test_fast_vocos_equals_items_alone(vocos: Vocos) -> None:
    gen = torch.Generator().manual_seed(2)
    ms = [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in (37, 64, 20, 5)]
    mel, mask = pad_mels(ms, 5, 70, torch.device("cpu"))
    mel[0, :, 40:] = float("nan")  # whatever lies past an item's length is ignored
    fast = FastVocos(vocos)
    assert not fast.compiled
    with torch.no_grad():
        out = fast(mel, mask.sum(dim=1).long())
        for i, m in enumerate(ms):
            ref = vocos(m.T[None])[0]
            assert float((out[i, : len(ref)] - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_compile_options_are_cuda_only(tiny: DiT, vocos: Vocos) -> None:
    cpu = torch.device("cpu")
    assert select_vocoder("torch-compile", vocos, cpu, compile=True, half=True).name == "torch"
    backend = TorchVocoder(vocos, half=True, compile=True)
    assert backend.name == "torch" and not backend.half and not backend.compile
    assert not GraphSampler(tiny, compile=True).compile


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (compile + graphs are GPU-only)")


@cuda
def test_compiled_graph_sampler_equals_plain_on_cuda(tiny: DiT) -> None:
    from tests.test_graphs import make_items

    model = DiT(TINY).eval()
    model.load_state_dict(tiny.state_dict())
    model = model.to("cuda", torch.float16)
    items = make_items(3, seed=4)
    compiled, plain = GraphSampler(model, compile=True), GraphSampler(model)
    got, ref = compiled.sample(items), plain.sample(items)
    assert compiled.compile, compiled.compile_error
    for a, b in zip(got, ref, strict=True):
        assert rel_l2(a, b) < 3e-3


@cuda
def test_compiled_fp16_vocoder_close_to_fp32_on_cuda(vocos: Vocos) -> None:
    import copy

    gpu = copy.deepcopy(vocos).to("cuda")
    fast, ref = TorchVocoder(gpu, half=True, compile=True), TorchVocoder(gpu, use_graphs=False)
    gen = torch.Generator().manual_seed(3)
    ms = [(torch.randn(t, 100, generator=gen) * 1.5 - 4).cuda() for t in (50, 20, 64)]
    for a, b in zip(fast.decode(ms), ref.decode(ms), strict=True):
        assert a.shape == b.shape and rel_l2(a, b) < 1e-2
    assert fast.name == "torch-compile", fast.compile_error
