"""ISHOW_DIT_KERNELS: each word turns one newer DiT kernel off (or picks the attention kernel); unknown words are a
clear error."""

from __future__ import annotations

import pytest

from ishow.engine.accel.kernel_choice import KERNELS_ENV, LEGACY, Kernels, from_env


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("", Kernels()),
        ("cudnn-fe", Kernels(attention="cudnn-fe")),
        ("varlen", Kernels(attention="varlen")),
        ("masked", Kernels(attention="masked")),
        ("cudnn-attn", Kernels(attention="cudnn")),
        ("unfused", Kernels(merge=False)),
        ("cudnn-conv", Kernels(triton_conv=False)),
        ("gelu-apart", Kernels(gelu_epilogue=False)),
        ("rope-inductor", Kernels(triton_rope=False)),
        ("vocos-stages", Kernels(vocos_triton=False)),
        ("vocos-fp32-head", Kernels(vocos_half_head=False)),
        ("vocos-exact-gelu", Kernels(vocos_gelu_epilogue=False)),
        ("vocos-conv-embed", Kernels(vocos_gemm_embed=False)),
        (" Cudnn-Conv , gelu-apart ", Kernels(triton_conv=False, gelu_epilogue=False)),
        ("legacy", LEGACY),
        ("vocos-fused", Kernels(vocos_fused=True)),
        ("legacy,cudnn-attn", Kernels("cudnn", False, False, False, False, False, False, False, False, False)),
        ("legacy,cudnn-fe", Kernels("cudnn-fe", False, False, False, False, False, False, False, False, False)),
        ("legacy,varlen", Kernels("varlen", False, False, False, False, False, False, False, False, False)),
    ],
)
def test_words(monkeypatch: pytest.MonkeyPatch, value: str, want: Kernels) -> None:
    monkeypatch.setenv(KERNELS_ENV, value)
    assert from_env() == want


def test_defaults_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    assert from_env() == Kernels(
        attention="cudnn-fe",
        merge=True,
        triton_conv=True,
        gelu_epilogue=True,
        vocos_fused=False,
        triton_rope=True,
        vocos_triton=True,
        vocos_half_head=True,
        vocos_gelu_epilogue=True,
        vocos_gemm_embed=True,
    )


@pytest.mark.parametrize(
    ("value", "match"), [("flash", "comma-separated list"), ("masked,cudnn-attn", "cudnn-attn and masked each choose")]
)
def test_bad_values(monkeypatch: pytest.MonkeyPatch, value: str, match: str) -> None:
    monkeypatch.setenv(KERNELS_ENV, value)
    with pytest.raises(ValueError, match=match):
        from_env()


def test_attention_is_checked() -> None:
    with pytest.raises(ValueError, match="attention must be one of"):
        Kernels(attention="flex")
