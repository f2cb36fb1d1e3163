"""The Vocos ConvNeXt block kernel (ishow.engine.accel.vocos_convnext): its torch ops equal the reference block's
depthwise conv + LayerNorm after the masked residual; FastVocos decodes the same with it as per stage and as the
module; the Triton kernel (in Triton's interpreter here, on the GPU in the CUDA test) equals the torch ops; it is
only used where it can run, and a failure falls back for good."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
import torch

from ishow.engine.accel import vocos_convnext as vc
from ishow.engine.accel.fallback import Fallback
from ishow.engine.accel.fast_vocos import FastVocos
from ishow.engine.accel.mels import pad_mels
from ishow.engine.f5.vocos import Vocos, VocosConfig
from tests.triton_interpreter import run_script

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def vocos() -> Vocos:
    torch.manual_seed(0)
    model = Vocos(VocosConfig(dim=64, intermediate_dim=192, num_layers=3, head_dim=64)).eval()
    with torch.no_grad():
        blocks: list[Any] = list(model.backbone.convnext)
        for blk in blocks:
            if blk.gamma is not None:
                blk.gamma.normal_(0.5, 0.2)  # a layer scale that matters
    return model


def case(b: int, t: int, c: int, lens: list[int], seed: int = 0, k: int = 7) -> dict[str, torch.Tensor]:
    """A masked stream x, an FF output y, gamma, depthwise weights [C, 1, K], LayerNorm weights, lengths."""
    gen = torch.Generator().manual_seed(seed)
    keep = (torch.arange(t)[None, :] < torch.tensor(lens)[:, None]).unsqueeze(-1)
    return {
        "x": torch.randn(b, t, c, generator=gen) * keep,
        "y": torch.randn(b, t, c, generator=gen),
        "gamma": torch.randn(c, generator=gen) * 0.3,
        "lens": torch.tensor(lens, dtype=torch.int32),
        "w": torch.randn(c, 1, k, generator=gen) * 0.3,
        "b": torch.randn(c, generator=gen) * 0.1,
        "ln_w": 1 + torch.randn(c, generator=gen) * 0.1,
        "ln_b": torch.randn(c, generator=gen) * 0.1,
    }


def test_torch_ops_are_the_reference_block_head(vocos: Vocos) -> None:
    blk: Any = list(vocos.backbone.convnext)[1]
    d = case(2, 30, 64, [30, 17], seed=1)
    keep = (torch.arange(30)[None, :] < d["lens"][:, None]).unsqueeze(-1)
    with torch.no_grad():
        s, h = vc.dw_ln_torch(d["x"], d["y"], d["gamma"], d["lens"], blk.dwconv.weight, blk.dwconv.bias,
                              blk.norm.weight, blk.norm.bias)  # fmt: skip
        want_s = (d["x"] + d["y"] * d["gamma"]) * keep
        want_h = blk.norm(blk.dwconv(want_s.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(s, want_s, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, want_h, rtol=1e-5, atol=1e-5)
    assert torch.equal(s[1, 17:], torch.zeros(13, 64))  # the stream is zero past the length
    first, _ = vc.dw_ln_torch(d["x"], None, None, d["lens"], blk.dwconv.weight, blk.dwconv.bias, blk.norm.weight,
                              blk.norm.bias)  # fmt: skip
    assert first is d["x"]  # the first block: the embedding is the stream


def test_fast_vocos_with_the_block_kernel_equals_per_stage_and_the_module(vocos: Vocos) -> None:
    gen = torch.Generator().manual_seed(5)
    ms = [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in (37, 64, 1, 5)]
    mel, mask = pad_mels(ms, 4, 70, torch.device("cpu"))
    mel[1, :, 64:] = float("inf")  # whatever lies past an item's length is ignored
    lens = mask.sum(dim=1).long()
    blocks, stages = FastVocos(vocos, triton=True), FastVocos(vocos, triton=False)
    assert blocks.triton and not stages.triton
    assert not FastVocos(vocos).triton  # the default off CUDA: per stage
    with torch.no_grad():
        got, want = blocks(mel, lens), stages(mel, lens)
    assert got.shape == want.shape and torch.isfinite(got).all()
    for i, m in enumerate(ms):
        n = (len(m) - 1) * blocks.hop
        torch.testing.assert_close(got[i, :n], want[i, :n], rtol=1e-4, atol=1e-5)
        if len(m) == 1:
            continue  # one frame: no samples (and the module's istft needs two)
        with torch.no_grad():
            ref = vocos(m.T[None])[0]
        assert float((got[i, : len(ref)] - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_the_embedding_as_one_gemm_equals_the_conv(vocos: Vocos) -> None:
    from ishow.engine.accel.fast_vocos import im2col_weight, vocos_embed_cl, vocos_embed_gemm

    bb = vocos.backbone
    w = bb.embed.weight.detach()
    b = bb.embed.bias
    assert b is not None
    cols = im2col_weight(w)
    assert cols.shape == (64, 704) and cols.shape[1] % 8 == 0  # 7 taps × 100 mels, padded to 16-byte rows
    assert torch.equal(cols[:, 700:], torch.zeros(64, 4))
    assert torch.equal(cols[:, 2 * 100 + 5], w[:, 5, 2])  # tap-major: tap 2, mel 5
    gen = torch.Generator().manual_seed(8)
    lens = torch.tensor([40, 13, 1])
    stored = torch.randn(3, 40, 100, generator=gen)  # [B, T, n_mels], as the vocoder's graphs stage it
    stored[1, 13:] = float("nan")  # whatever lies past an item's length is ignored
    mel = stored.transpose(1, 2)  # a [B, n_mels, T] view: not contiguous
    with torch.no_grad():
        got = vocos_embed_gemm(mel, lens, cols, b, bb.norm.weight, bb.norm.bias, w.shape[-1])
        want = vocos_embed_cl(mel.contiguous(), lens, w, b, bb.norm.weight, bb.norm.bias)
    assert got.is_contiguous() and got.shape == (3, 40, 64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[1, 13:], torch.zeros(27, 64)) and torch.equal(got[2, 1:], torch.zeros(39, 64))


def test_the_ff_with_the_gemm_epilogue_equals_the_compiled_ff() -> None:
    from ishow.engine.accel.fast_vocos import vocos_ff, vocos_ff_epilogue

    gen = torch.Generator().manual_seed(9)
    h = torch.randn(2, 11, 64, generator=gen)
    w1, b1 = torch.randn(192, 64, generator=gen) * 0.1, torch.randn(192, generator=gen)
    w2, b2 = torch.randn(64, 192, generator=gen) * 0.1, torch.randn(64, generator=gen)
    with torch.no_grad():
        got = vocos_ff_epilogue(h, w1, b1, w2, b2)
        torch.testing.assert_close(got, vocos_ff(h, w1, b1, w2, b2), rtol=1e-5, atol=1e-5)  # CPU: the exact GELU
    assert got.shape == (2, 11, 64)
    if torch.cuda.is_available():  # cuBLASLt's epilogue: the tanh approximation
        args = [t.cuda().half() for t in (h, w1, b1, w2, b2)]
        with torch.no_grad():
            got = vocos_ff_epilogue(*args).float()
            f = torch.nn.functional
            tanh = f.linear(f.gelu(f.linear(args[0], args[1], args[2]), approximate="tanh"), args[3], args[4])
        torch.testing.assert_close(got, tanh.float(), rtol=2e-2, atol=2e-2)


def test_the_triton_path_picks_its_embedding_and_ff(vocos: Vocos, monkeypatch: pytest.MonkeyPatch) -> None:
    from ishow.engine.accel.kernel_choice import KERNELS_ENV

    monkeypatch.delenv(KERNELS_ENV, raising=False)
    blocks = FastVocos(vocos, triton=True)
    assert blocks.gemm_embed and blocks._w_embed is not None
    assert not blocks.gelu_epilogue  # CUDA only
    assert not FastVocos(vocos, triton=False).gemm_embed  # the per-stage path keeps its conv
    monkeypatch.setenv(KERNELS_ENV, "vocos-conv-embed")
    assert not FastVocos(vocos, triton=True).gemm_embed
    if torch.cuda.is_available():
        gpu = copy.deepcopy(vocos).to("cuda")
        monkeypatch.delenv(KERNELS_ENV)
        assert FastVocos(gpu, torch.float16, triton=True).gelu_epilogue
        monkeypatch.setenv(KERNELS_ENV, "vocos-exact-gelu")
        assert not FastVocos(gpu, torch.float16, triton=True).gelu_epilogue


def test_the_kernel_is_only_used_where_it_runs() -> None:
    d = case(2, 16, 64, [16, 9])
    assert not vc.usable(d["x"], d["w"])  # CPU
    assert not vc.usable(d["x"].half(), d["w"].half())  # CPU, even in fp16
    if torch.cuda.is_available() and vc.triton_available():
        x, w = d["x"].cuda().half(), d["w"].cuda().half()
        assert vc.usable(x, w)
        assert not vc.usable(x.float(), w)  # fp32: torch ops
        assert not vc.usable(x.transpose(0, 1), w)  # not contiguous
        assert not vc.usable(x[..., :48].contiguous(), w[:48])  # 48 channels: not a power of two
        assert not vc.usable(x, w[..., :6])  # an even kernel


def test_a_kernel_failure_falls_back_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("out of resources: shared memory")

    monkeypatch.setattr(vc, "_KERNEL", Fallback("test kernel", "the fallback", logging.getLogger("test")))
    monkeypatch.setattr(vc, "usable", lambda x, w: not vc._KERNEL.broken)
    monkeypatch.setattr(vc, "dw_ln_triton", broken)
    d = case(2, 12, 16, [12, 4])
    args = (d["x"], d["y"], d["gamma"], d["lens"], d["w"], d["b"], d["ln_w"], d["ln_b"])
    want = vc.dw_ln_torch(*args)
    for _ in range(2):
        got = vc.dw_ln(*args)
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    assert calls == [1] and "shared memory" in (vc.kernel_failure() or "")


INTERPRETER_SCRIPT = """
import torch
from ishow.engine.accel import vocos_convnext as vc
from tests.test_vocos_convnext import case
for (b, t, c, lens), tile in (((2, 30, 64, [30, 17]), vc.Tile(8, 4)), ((3, 20, 32, [1, 20, 7]), vc.Tile(16, 2)),
                              ((1, 9, 16, [9]), vc.DEFAULT_TILE)):
    d = case(b, t, c, lens, seed=t)
    h16 = {k: (v.half() if v.is_floating_point() else v) for k, v in d.items()}
    for res in (True, False):
        y, g = (h16["y"], h16["gamma"]) if res else (None, None)
        args = (h16["x"], y, g, h16["lens"], h16["w"], h16["b"], h16["ln_w"], h16["ln_b"])
        want = vc.dw_ln_torch(*args)
        got = vc.dw_ln_triton(*args, tile=tile)
        for gt, wt in zip(got, want):
            assert gt.shape == wt.shape and gt.dtype == wt.dtype
            err = (gt.float() - wt.float()).abs().max().item()
            assert err <= 8e-3, (b, t, c, lens, res, err)
print("ok")
"""


@pytest.mark.skipif(not vc.triton_available(), reason="Triton is not installed (the CUDA test runs the kernel)")
def test_triton_kernel_in_the_interpreter_equals_the_torch_ops() -> None:
    run_script(INTERPRETER_SCRIPT)


@cuda
def test_triton_kernel_on_cuda_equals_the_torch_ops() -> None:
    if not vc.triton_available():
        pytest.skip("Triton is not installed")
    d = case(3, 300, 512, [300, 211, 1], seed=4)
    g = {k: (v.cuda().half() if v.is_floating_point() else v.cuda()) for k, v in d.items()}
    for res in (True, False):
        y, gamma = (g["y"], g["gamma"]) if res else (None, None)
        args = (g["x"], y, gamma, g["lens"], g["w"], g["b"], g["ln_w"], g["ln_b"])
        assert vc.usable(g["x"], g["w"])
        got, want = vc.dw_ln(*args), vc.dw_ln_torch(*args)
        assert vc.kernel_failure() is None
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=8e-3)


@cuda
def test_fp16_block_kernel_vocos_close_to_fp32_on_cuda(vocos: Vocos) -> None:
    gpu = copy.deepcopy(vocos).to("cuda")
    gen = torch.Generator().manual_seed(3)
    ms = [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in (50, 20, 64)]
    mel, mask = pad_mels(ms, 3, 64, torch.device("cuda"))
    lens = mask.sum(dim=1).long()
    blocks = FastVocos(gpu, torch.float16, triton=True)
    assert blocks.triton
    with torch.no_grad():
        got, want = blocks(mel, lens), FastVocos(gpu, torch.float32)(mel, lens)
    assert vc.kernel_failure() is None
    for i, m in enumerate(ms):
        n = (len(m) - 1) * blocks.hop
        err = float((got[i, :n] - want[i, :n]).norm() / want[i, :n].norm())
        assert err < 1e-2, err


@cuda
def test_half_head_vocoder_close_to_fp32_on_cuda(vocos: Vocos, monkeypatch: pytest.MonkeyPatch) -> None:
    from ishow.engine.accel.kernel_choice import KERNELS_ENV

    monkeypatch.delenv(KERNELS_ENV, raising=False)  # the default: the head's GEMMs on fp16 operands, fp32 out
    gpu = copy.deepcopy(vocos).to("cuda")
    gen = torch.Generator().manual_seed(6)
    ms = [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in (50, 33)]
    mel, mask = pad_mels(ms, 2, 64, torch.device("cuda"))
    lens = mask.sum(dim=1).long()
    half = FastVocos(gpu, torch.float16, compile=True)
    assert half._w_head.dtype == torch.float16 and half.compiled
    with torch.no_grad():
        got, want = half(mel, lens), FastVocos(gpu, torch.float32)(mel, lens)
    for i, m in enumerate(ms):
        n = (len(m) - 1) * half.hop
        err = float((got[i, :n] - want[i, :n]).norm() / want[i, :n].norm())
        assert err < 1e-2, err
    monkeypatch.setenv(KERNELS_ENV, "vocos-fp32-head")
    assert FastVocos(gpu, torch.float16)._w_head.dtype == torch.float32


def test_the_head_stays_fp32_off_cuda_and_in_fp32(vocos: Vocos) -> None:
    assert FastVocos(vocos, torch.float16)._w_head.dtype == torch.float32  # CPU: mm with out_dtype is CUDA-only
    assert FastVocos(vocos, torch.float32)._basis_head.dtype == torch.float32
