"""Fused/compilable paths (ishow.engine.accel.fused) equal the reference modules; compiling is CUDA-only, optional."""

from __future__ import annotations

import logging

import pytest
import torch

from ishow.engine.accel.fallback import Fallback
from ishow.engine.accel.fast_vocos import FastVocos, overlap_add
from ishow.engine.accel.fused import FusedBlocks
from ishow.engine.accel.graphs import GraphSampler
from ishow.engine.accel.kernel_choice import Kernels
from ishow.engine.accel.mels import pad_mels
from ishow.engine.accel.rope import rope
from ishow.engine.accel.vocoder_backends import TorchVocoder, select_vocoder
from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import TINY, DiT, StepConditioning, apply_rotary_qk
from ishow.engine.f5.vocos import Vocos, VocosConfig


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).norm() / b.double().cpu().norm())


@pytest.fixture(scope="module")
def tiny() -> DiT:
    model = DiT(TINY).eval()
    randomize_(model, seed=3)
    return model


def _padded_batch(
    tiny: DiT, seed: int, lengths: list[int], time: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, StepConditioning, torch.Tensor]:
    """Rows of ``lengths`` frames padded to the longest: x, cond, text embedding, step conditioning, mask."""
    gen = torch.Generator().manual_seed(seed)
    lens, n = torch.tensor(lengths), max(lengths)
    x, cond = torch.randn(len(lengths), n, 100, generator=gen), torch.randn(len(lengths), n, 100, generator=gen)
    mask = torch.arange(n)[None] < lens[:, None]
    te = tiny.embed_text(torch.randint(1, 2545, (len(lengths), 20), generator=gen), lens, n)
    return x, cond, te, tiny.step_conditioning(time), mask


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
    x, cond, te, step, mask = _padded_batch(tiny, 1, [40, 25, 7], 0.4)
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


def _varlen_contract(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
    dropout: float,
    causal: bool,
    debug: bool,
    *,
    seqused_k: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """The flash varlen entry point's documented contract, on the CPU in fp64: sequence i has queries
    cu_q[i]:cu_q[i+1] and keys cu_k[i]:cu_k[i] + seqused_k[i]; q/k/v are packed [total, H, Dh]."""
    assert q.dim() == 3 and dropout == 0.0 and not causal and not debug
    assert seqused_k.dtype == torch.int32 and cu_q.dtype == torch.int32
    out = torch.full_like(q, float("nan"))
    for i in range(cu_q.numel() - 1):
        qs, qe, ks = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i])
        assert qe - qs <= max_q and int(cu_k[i + 1]) - ks <= max_k
        ke = ks + int(seqused_k[i])
        qi, ki, vi = (t.double().transpose(0, 1) for t in (q[qs:qe], k[ks:ke], v[ks:ke]))  # [H, n, Dh]
        att = torch.softmax(qi @ ki.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        out[qs:qe] = (att @ vi).transpose(0, 1).to(q.dtype)
    return out, out, out, out, out


def test_key_lens_of_padding_bias() -> None:
    from ishow.engine.accel.fused import key_lens
    from ishow.engine.f5.dit import key_padding_bias

    lens = torch.tensor([40, 25, 1, 33])
    mask = torch.arange(40)[None] < lens[:, None]
    got = key_lens(key_padding_bias(mask, torch.float16))
    assert got.dtype == torch.int32
    assert got.tolist() == lens.tolist()


def test_varlen_packing_equals_masked_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """The varlen call (B rows of N frames, seqused_k = key lengths) gives what the −inf key bias gives, on every
    valid query row, for mixed lengths, and for padded query rows too (they see the same valid keys)."""
    from ishow.engine.accel.fused import flash_varlen, key_lens
    from ishow.engine.f5.dit import key_padding_bias

    monkeypatch.setattr(torch.ops.aten, "_flash_attention_forward", _varlen_contract)
    gen = torch.Generator().manual_seed(5)
    b, h, n, d = 3, 2, 24, 16
    qkv = torch.randn(b, n, 3, h, d, generator=gen, dtype=torch.float64)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # strided views, like the real callers
    mask = torch.arange(n)[None] < torch.tensor([24, 9, 1])[:, None]
    bias = key_padding_bias(mask, torch.float64)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    got = flash_varlen(q, k, v, key_lens(bias))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_fused_blocks_varlen_path_equals_masked_path(tiny: DiT, monkeypatch: pytest.MonkeyPatch) -> None:
    """FusedBlocks with the varlen attention (the CUDA path, here through its contract) equals the legacy masked
    runner and the module loop, for a padded mixed-length batch; without padding no mask is passed at all."""
    import ishow.engine.accel.fused as fused

    calls: list[torch.Tensor] = []

    def contract(*args: object, **kw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(kw["seqused_k"])
        return _varlen_contract(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.ops.aten, "_flash_attention_forward", contract)
    monkeypatch.setattr(fused, "varlen_usable", lambda q: True)
    lens = [40, 25, 7]
    x, cond, te, step, mask = _padded_batch(tiny, 6, lens, 0.7)
    new = FusedBlocks(tiny, compile=False, varlen=True, merge=True)
    old = FusedBlocks(tiny, compile=False, varlen=False, merge=False)
    with torch.no_grad():
        ref = tiny(x, cond, te, step, mask)
        got_new = tiny(x, cond, te, step, mask, runner=new)
        assert len(calls) == TINY.depth and all(c.tolist() == lens for c in calls)
        got_old = tiny(x, cond, te, step, mask, runner=old)
        assert len(calls) == TINY.depth  # legacy: the mask, never the varlen call
        full = torch.ones(3, 40, dtype=torch.bool)
        unmasked = tiny(x, cond, te, step, None, runner=new)  # no row padded: no bias, plain SDPA (flash)
        masked_full = tiny(x, cond, te, step, full, runner=old)
    assert len(calls) == TINY.depth
    assert rel_l2(got_new, ref) < 1e-6 and rel_l2(got_old, ref) < 1e-6
    assert rel_l2(unmasked, masked_full) < 1e-6


def test_varlen_failure_falls_back_to_the_mask(tiny: DiT, monkeypatch: pytest.MonkeyPatch) -> None:
    import ishow.engine.accel.fused as fused

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("seqused_k is not supported")

    monkeypatch.setattr(torch.ops.aten, "_flash_attention_forward", broken)
    monkeypatch.setattr(fused, "varlen_usable", lambda q: not fused._VARLEN.broken)
    monkeypatch.setattr(fused, "_VARLEN", Fallback("test kernel", "the fallback", logging.getLogger("test")))
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, 2, 12, 16, generator=gen) for _ in range(3))
    mask = torch.arange(12)[None] < torch.tensor([12, 5])[:, None]
    from ishow.engine.f5.dit import key_padding_bias

    bias = key_padding_bias(mask, torch.float32)
    got = fused.attend(q, k, v, bias, fused.key_lens(bias))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert fused._VARLEN.failure and "seqused_k" in fused._VARLEN.failure


def test_kernel_switches_env(tiny: DiT, monkeypatch: pytest.MonkeyPatch) -> None:
    from ishow.engine.accel.kernel_choice import KERNELS_ENV

    def switches() -> tuple[bool, bool]:
        runner = FusedBlocks(tiny, compile=False)
        return runner.varlen, runner.merge

    for value, want in (("legacy", (False, False)), ("masked", (False, True)), ("unfused", (True, False)),
                        ("masked, unfused", (False, False)), ("", (True, True))):  # fmt: skip
        monkeypatch.setenv(KERNELS_ENV, value)
        assert switches() == want
    monkeypatch.delenv(KERNELS_ENV)
    assert switches() == (True, True)
    monkeypatch.setenv(KERNELS_ENV, "flash")
    with pytest.raises(ValueError, match="comma-separated list of varlen, masked, cudnn-attn, cudnn-fe, unfused"):
        FusedBlocks(tiny, compile=False)


def test_merged_and_unmerged_block_boundaries_agree(tiny: DiT) -> None:
    x, cond, te, step, mask = _padded_batch(tiny, 9, [33, 12], 0.2)
    with torch.no_grad():
        merged = tiny(x, cond, te, step, mask, runner=FusedBlocks(tiny, compile=False, varlen=False, merge=True))
        apart = tiny(x, cond, te, step, mask, runner=FusedBlocks(tiny, compile=False, varlen=False, merge=False))
    torch.testing.assert_close(merged, apart, rtol=0, atol=1e-6)


def test_ff_in_gelu_epilogue_is_the_tanh_gelu() -> None:
    from ishow.engine.accel.fused import ff_in

    gen = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(2, 9, 16, generator=gen), torch.randn(24, 16, generator=gen), torch.randn(24, generator=gen)
    want = torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b), approximate="tanh")
    torch.testing.assert_close(ff_in(x, w, b, gelu_epilogue=True), want)  # CPU: the plain pair
    if torch.cuda.is_available():  # cuBLASLt's GELU epilogue is the tanh form
        got = ff_in(x.cuda().half(), w.cuda().half(), b.cuda().half(), gelu_epilogue=True)
        torch.testing.assert_close(got.float().cpu(), want, rtol=2e-2, atol=2e-2)


def test_fused_channels_last_vocos_equals_the_per_stage_path(vocos: Vocos) -> None:
    gen = torch.Generator().manual_seed(5)
    ms = [torch.randn(t, 100, generator=gen) * 1.5 - 4 for t in (37, 64, 1, 5)]
    mel, mask = pad_mels(ms, 4, 70, torch.device("cpu"))
    mel[1, :, 64:] = float("inf")
    lens = mask.sum(dim=1).long()
    fused, apart = FastVocos(vocos, fused=True), FastVocos(vocos, fused=False)
    with torch.no_grad():
        got, want = fused(mel, lens), apart(mel, lens)
    assert got.shape == want.shape and torch.isfinite(got).all()
    for i, t in enumerate(lens.tolist()):
        n = (t - 1) * fused.hop
        torch.testing.assert_close(got[i, :n], want[i, :n], rtol=1e-5, atol=1e-5)


def test_depthwise_cl_equals_conv1d() -> None:
    from ishow.engine.accel.fast_vocos import depthwise_cl

    gen = torch.Generator().manual_seed(6)
    x, w, b = torch.randn(2, 30, 8, generator=gen), torch.randn(8, 1, 7, generator=gen), torch.randn(8, generator=gen)
    want = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, padding=3, groups=8).transpose(1, 2)
    torch.testing.assert_close(depthwise_cl(x, w, b), want, rtol=1e-5, atol=1e-5)


def _padded_case(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from ishow.engine.f5.dit import key_padding_bias

    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, 12, 16, generator=gen) for _ in range(3))
    mask = torch.arange(12)[None] < torch.tensor([12, 5])[:, None]
    return q, k, v, key_padding_bias(mask, torch.float32), mask


def test_cudnn_frontend_attention_gets_row_lengths_and_every_query_row(
    tiny: DiT, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the contract with the frontend, checked with a stand-in (the real kernel is CUDA-only): the runner hands it
    # per-row key lengths and N for every query row, and its result is used as is
    import ishow.engine.accel.cudnn_attention as ca

    seen: list[tuple[list[int], list[int]]] = []

    def fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        seen.append((lens.tolist(), full.tolist()))
        from ishow.engine.f5.dit import key_padding_bias

        bias = key_padding_bias(torch.arange(q.shape[2])[None] < lens[:, None], q.dtype)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)

    monkeypatch.setattr(ca, "usable", lambda q: True)
    monkeypatch.setattr(ca, "padded", fake)
    x, cond, te, step, mask = _padded_batch(tiny, 6, [40, 25, 7], 0.7)
    runner = FusedBlocks(tiny, compile=False, kernels=Kernels(attention="cudnn-fe"))  # ISHOW_DIT_KERNELS=cudnn-fe
    with torch.no_grad():
        got = tiny(x, cond, te, step, mask, runner=runner)
        ref = tiny(x, cond, te, step, mask)
    assert len(seen) == TINY.depth and all(s == ([40, 25, 7], [40, 40, 40]) for s in seen)
    assert rel_l2(got, ref) < 1e-6


def test_cudnn_frontend_failure_is_logged_once_and_flash_varlen_takes_over(monkeypatch: pytest.MonkeyPatch) -> None:
    import ishow.engine.accel.cudnn_attention as ca
    import ishow.engine.accel.fused as fused

    calls: list[int] = []

    def broken(*args: object) -> torch.Tensor:
        calls.append(1)
        raise RuntimeError("cudnnGraphNotSupportedError: no engine for this shape")

    monkeypatch.setattr(ca, "_state", {"probed": True, "module": None, "error": None})
    monkeypatch.setattr(ca, "usable", lambda q: ca._state["error"] is None)
    monkeypatch.setattr(ca, "padded", broken)
    q, k, v, bias, _ = _padded_case(8)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    for _ in range(2):  # CPU: varlen is not usable either, so the masked kernel answers
        got = fused.attend(q, k, v, bias, fused.key_lens(bias), mode="cudnn-fe")
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert calls == [1] and "no engine for this shape" in (ca.failure() or "")


def test_cudnn_frontend_is_not_used_off_cuda() -> None:
    import ishow.engine.accel.cudnn_attention as ca

    q, *_ = _padded_case(1)
    assert not ca.usable(q)  # CPU tensors: never imports or calls the frontend


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (cuDNN)")
def test_cudnn_frontend_attention_equals_the_masked_reference_on_cuda() -> None:
    import ishow.engine.accel.cudnn_attention as ca
    import ishow.engine.accel.fused as fused

    gen = torch.Generator().manual_seed(2)
    qkv = torch.randn(2, 256, 3, 4, 64, generator=gen).cuda().half()
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    mask = torch.arange(256, device="cuda")[None] < torch.tensor([256, 150], device="cuda")[:, None]
    from ishow.engine.f5.dit import key_padding_bias

    bias = key_padding_bias(mask, torch.float16)
    if not ca.usable(q):
        pytest.skip(f"cuDNN frontend not usable here: {ca.failure()}")
    got = fused.attend(q, k, v, bias, fused.key_lens(bias), mode="cudnn-fe")
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias.float())
    assert ca.failure() is None
    assert rel_l2(got.float(), want) < 2e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (cuDNN)")
def test_cudnn_frontend_attention_keeps_no_tensor_alive_on_cuda() -> None:
    # inside a capture every tensor the frontend kept would pin a block of the shared graph pool: after a call whose
    # tensors the caller dropped, torch's allocated memory is back where it was (the frontend's own torch op kept
    # each graph's last q, k, v and output, 2.5 MB here)
    import ishow.engine.accel.cudnn_attention as ca
    import ishow.engine.accel.fused as fused
    from ishow.engine.f5.dit import key_padding_bias

    def one_call(seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        qkv = torch.randn(2, 448, 3, 4, 64, generator=gen).cuda().half()
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        mask = torch.arange(448, device="cuda")[None] < torch.tensor([448, 300], device="cuda")[:, None]
        bias = key_padding_bias(mask, torch.float16)
        fused.attend(q, k, v, bias, fused.key_lens(bias), mode="cudnn-fe")

    probe = torch.zeros(1, 1, 1, 64, device="cuda", dtype=torch.float16)
    if not ca.usable(probe):
        pytest.skip(f"cuDNN frontend not usable here: {ca.failure()}")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    one_call(0)  # builds the graph for this shape (no other test uses it)
    one_call(1)
    torch.cuda.synchronize()
    assert ca.failure() is None
    assert torch.cuda.memory_allocated() == before


def test_cudnn_prebuilt_keys_are_the_ones_the_fused_blocks_hand_over(tiny: DiT) -> None:
    # the warm-up builds attention graphs ahead from shapes alone (fused_key); they must be the very keys the
    # compiled blocks' operands give (layout_key), or every capture after "ready" would build again
    import ishow.engine.accel.cudnn_attention as ca
    from ishow.engine.accel.fused import attn_in

    rows, n = 6, 40
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(rows, n, TINY.dim, generator=gen)
    shift, scale1p = tiny.step_conditioning(0.3).blocks[0][:2]
    ri = torch.view_as_real(tiny.rotary_embed.table(n))
    w, b = tiny._blocks()[0].attn._qkv_params()
    q, k, v = attn_in(x, shift, scale1p, w, b, ri[..., 0], ri[..., 1], TINY.heads)
    got = ca.layout_key(q, k, v, torch.empty_like(q))
    assert got == ca.fused_key(rows, TINY.heads, n, TINY.dim_head, torch.float32, torch.device("cpu"))


def test_cudnn_prebuild_builds_each_key_once_and_a_failure_hands_over_to_flash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ishow.engine.accel.cudnn_attention as ca

    built: list[object] = []

    def fake_build(cudnn: object, key: ca._Key) -> ca._Graph:  # the real one needs CUDA and the frontend
        built.append(key)
        if key[2][2] == 999:
            raise RuntimeError("cudnnGraphNotSupportedError: no plan")
        return ca._Graph(graph=None, workspace=0)

    monkeypatch.setattr(ca, "_graphs", {})
    monkeypatch.setattr(ca, "_state", {"probed": True, "module": object(), "error": None})
    monkeypatch.setattr(ca, "_build", fake_build)
    cpu = torch.device("cpu")
    keys = [ca.fused_key(2, 16, n, 64, torch.float16, cpu) for n in (768, 1024, 768)]
    assert ca.prebuild(keys) == 2 and ca.graphs_built() == 2 and len(built) == 2  # one build per distinct key
    assert ca.prebuild(keys) == 0 and len(built) == 2
    bad = ca.fused_key(2, 16, 999, 64, torch.float16, cpu)
    assert ca.prebuild([bad, ca.fused_key(2, 16, 1280, 64, torch.float16, cpu)]) == 0
    assert "no plan" in (ca.failure() or "") and ca.prebuild(keys) == 0  # disabled: flash varlen from now on


def test_prepare_attention_does_nothing_without_cuda_graphs(tiny: DiT) -> None:
    assert GraphSampler(tiny, compile=True).prepare_attention([(1, 128), (8, 1024)]) == {"skipped": True}


def test_prepare_attention_asks_for_each_bucket_once_with_its_cfg_rows(
    tiny: DiT, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ishow.engine.accel.cudnn_attention as ca
    from ishow.engine.accel.kernel_choice import KERNELS_ENV
    from ishow.engine.f5.sampler import SamplerConfig

    asked: list[list[object]] = []

    def fake_prebuild(keys: list[object]) -> int:  # the real one needs CUDA and the frontend
        asked.append(list(keys))
        return len(keys)

    monkeypatch.setattr(ca, "prebuild", fake_prebuild)
    monkeypatch.delenv(KERNELS_ENV, raising=False)  # the default kernels: cuDNN attention
    sampler = GraphSampler(tiny, compile=True)
    sampler.use_graphs = sampler.compile = True  # as on CUDA (the keys are made from shapes alone)
    info = sampler.prepare_attention([(1, 768), (8, 1024), (1, 768)])
    key = ca.fused_key
    cpu, h, d = torch.device("cpu"), TINY.heads, TINY.dim_head
    assert asked[-1] == [key(2, h, 768, d, torch.float32, cpu), key(16, h, 1024, d, torch.float32, cpu)]
    assert info["built"] == 2 and info["buckets"] == 2
    sampler.prepare_attention([(8, 1024)], SamplerConfig(cfg_strength=0.0))  # no guidance: one row per item
    assert asked[-1] == [key(8, h, 1024, d, torch.float32, cpu)]
    monkeypatch.setenv(KERNELS_ENV, "varlen")
    assert sampler.prepare_attention([(1, 768)]) == {"skipped": True} and len(asked) == 2
