"""RoPE of the DiT's q and k (ishow.engine.accel.rope): the Triton kernel (in Triton's interpreter here, on the GPU
in the CUDA test) equals the torch ops, which equal the reference rotation; FusedBlocks gives the same blocks with
either; the kernel is only used where it can run, and a failure falls back for good."""

from __future__ import annotations

import logging

import pytest
import torch

from ishow.engine.accel import rope as rp
from ishow.engine.accel.fallback import Fallback
from ishow.engine.accel.fused import FusedBlocks
from ishow.engine.accel.kernel_choice import Kernels
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import TINY, DiT, apply_rotary_qk
from tests.triton_interpreter import run_script

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def case(b: int, n: int, heads: int, dh: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A q/k/v projection [B, N, 3·H·Dh] and a rotation table [N, Dh/2, 2] (cos, sin of random angles)."""
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, n, 3 * heads * dh, generator=gen)
    ang = torch.randn(n, dh // 2, generator=gen) * 3
    return qkv, torch.stack((ang.cos(), ang.sin()), dim=-1).contiguous()


@pytest.fixture(scope="module")
def tiny() -> DiT:
    model = DiT(TINY).eval()
    randomize_(model, seed=3)
    return model


def test_split_rope_torch_is_the_reference_rotation(tiny: DiT) -> None:
    qkv, _ = case(2, 40, TINY.heads, TINY.dim // TINY.heads)
    table = tiny.rotary_embed.table(40)
    ri = torch.view_as_real(table)
    q, k, v = rp.split_rope_torch(qkv, ri[..., 0], ri[..., 1], TINY.heads)
    parts = qkv.view(2, 40, 3, TINY.heads, -1)
    want = apply_rotary_qk(parts[:, :, :2], table)  # [B, N, 2, H, Dh]
    torch.testing.assert_close(q, want[:, :, 0].transpose(1, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(k, want[:, :, 1].transpose(1, 2), rtol=0, atol=1e-6)
    assert torch.equal(v, parts[:, :, 2].transpose(1, 2))


def test_the_kernel_is_only_used_where_it_runs() -> None:
    qkv, _ = case(2, 8, 4, 16)
    assert not rp.usable(qkv, 4)  # CPU
    assert not rp.usable(qkv.half(), 4)  # CPU, even in fp16
    if torch.cuda.is_available() and rp.triton_available():
        g = qkv.cuda().half()
        assert rp.usable(g, 4)
        assert not rp.usable(g.float(), 4)  # fp32 is the accuracy reference: torch ops
        assert not rp.usable(g[:, :, :-1], 4)  # not 3·H·Dh wide
        assert not rp.usable(g.transpose(0, 1), 4)  # not contiguous
        assert not rp.usable(g, 4, rp.Tile(32, 3, 4))  # 3 heads per program does not divide 2·H = 8
        odd, _ = case(2, 8, 4, 12)
        assert not rp.usable(odd.cuda().half(), 4)  # head dim 12 is not a power of two


def test_split_rope_off_cuda_is_the_torch_ops() -> None:
    qkv, rot = case(3, 24, 2, 8)
    got = rp.split_rope(qkv, rot, 2)
    want = rp.split_rope_torch(qkv, rot[..., 0], rot[..., 1], 2)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_a_kernel_failure_falls_back_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("PTX too new for this driver")

    monkeypatch.setattr(rp, "_KERNEL", Fallback("test kernel", "the fallback", logging.getLogger("test")))
    monkeypatch.setattr(rp, "usable", lambda qkv, heads, tile=rp.DEFAULT_TILE: not rp._KERNEL.broken)
    monkeypatch.setattr(rp, "split_rope_triton", broken)
    qkv, rot = case(2, 16, 2, 8)
    want = rp.split_rope_torch(qkv, rot[..., 0], rot[..., 1], 2)
    for _ in range(2):
        got = rp.split_rope(qkv, rot, 2)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g, w)
    assert calls == [1] and "PTX too new" in (rp.kernel_failure() or "")


@pytest.mark.parametrize("merge", [True, False])
def test_fused_blocks_with_and_without_the_rope_kernel_agree(tiny: DiT, merge: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    lens, n = torch.tensor([33, 12]), 33
    x, cond = torch.randn(2, n, 100, generator=gen), torch.randn(2, n, 100, generator=gen)
    mask = torch.arange(n)[None] < lens[:, None]
    te = tiny.embed_text(torch.randint(1, 2545, (2, 20), generator=gen), lens, n)
    step = tiny.step_conditioning(0.3)
    kernel = FusedBlocks(tiny, compile=False, kernels=Kernels(attention="masked", merge=merge, triton_rope=True))
    inductor = FusedBlocks(tiny, compile=False, kernels=Kernels(attention="masked", merge=merge, triton_rope=False))
    assert kernel.rope_kernel and not inductor.rope_kernel
    with torch.no_grad():
        ref = tiny(x, cond, te, step, mask)
        a = tiny(x, cond, te, step, mask, runner=kernel)
        b = tiny(x, cond, te, step, mask, runner=inductor)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-5)


INTERPRETER_SCRIPT = """
import torch
from ishow.engine.accel import rope as rp
from tests.test_rope import case
for (b, n, heads, dh), tile in (((2, 40, 4, 16), rp.Tile(16, 2, 1)), ((3, 24, 2, 8), rp.Tile(32, 4, 2)),
                                ((1, 7, 4, 32), rp.Tile(8, 8, 1)), ((2, 64, 16, 64), rp.DEFAULT_TILE)):
    qkv, rot = case(b, n, heads, dh, seed=n)
    qkv = qkv.half()
    want = rp.split_rope_torch(qkv, rot[..., 0], rot[..., 1], heads)
    got = rp.split_rope_triton(qkv, rot, heads, tile)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.stride() == w.stride(), (g.shape, g.stride(), w.stride())
        err = (g.float() - w.float()).abs().max().item()
        assert err <= 4e-3, (b, n, heads, dh, tile, err)
print("ok")
"""


@pytest.mark.skipif(not rp.triton_available(), reason="Triton is not installed (the CUDA test runs the kernel)")
def test_triton_kernel_in_the_interpreter_equals_the_torch_ops() -> None:
    run_script(INTERPRETER_SCRIPT)


@cuda
def test_triton_kernel_on_cuda_equals_the_torch_ops() -> None:
    if not rp.triton_available():
        pytest.skip("Triton is not installed")
    for b, n in ((2, 768), (3, 100)):
        qkv, rot = case(b, n, 16, 64, seed=b)
        qkv, rot = qkv.cuda().half(), rot.cuda()
        assert rp.usable(qkv, 16)
        got = rp.split_rope(qkv, rot, 16)
        want = rp.split_rope_torch(qkv, rot[..., 0], rot[..., 1], 16)
        assert rp.kernel_failure() is None
        for g, w in zip(got, want, strict=True):
            assert g.stride() == w.stride()
            torch.testing.assert_close(g, w, rtol=0, atol=4e-3)
