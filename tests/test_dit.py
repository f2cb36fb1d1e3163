"""DiT: state-dict layout equals upstream f5-tts 1.1.22 (Base, Small), forward equals the upstream golden, masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ishow.engine.f5.dit import F5TTS_V1_BASE, F5TTS_V1_SMALL, TINY, DiT, DiTConfig

GOLDEN = Path(__file__).parent / "golden"


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def shapes(config: DiTConfig) -> dict[str, list[int]]:
    with torch.device("meta"):
        model = DiT(config)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "config"), [("F5TTS_v1_Base", F5TTS_V1_BASE), ("F5TTS_v1_Small", F5TTS_V1_SMALL)])
def test_state_dict_keys_and_shapes_equal_upstream(name: str, config: DiTConfig) -> None:
    expected = json.loads((GOLDEN / "dit_keys.json").read_text())[name]
    ours = shapes(config)
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def test_upstream_cfm_adds_only_the_transformer_prefix() -> None:
    assert json.loads((GOLDEN / "dit_keys.json").read_text())["cfm_non_transformer_keys"] == {}


def test_base_has_upstream_parameter_count() -> None:
    with torch.device("meta"):
        n = sum(v.numel() for v in DiT(F5TTS_V1_BASE).parameters())
    assert 335_000_000 < n < 340_000_000  # F5TTS_v1_Base: 336 M


def golden_model() -> tuple[DiT, dict[str, torch.Tensor]]:
    path = GOLDEN / "dit_golden.safetensors"
    with safe_open(str(path), "pt") as f:
        config = DiTConfig.from_dict(json.loads(f.metadata()["config"]))
    tensors = load_file(str(path))
    model = DiT(config).eval()
    model.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("w.")}, strict=True)
    return model, tensors


def test_forward_cfg_matches_upstream_golden() -> None:
    model, g = golden_model()
    mask = torch.ones(1, g["in.x"].shape[1], dtype=torch.bool)
    with torch.no_grad():
        y = model.forward_cfg(g["in.x"], g["in.cond"], g["in.text"], g["in.time"], mask)
    assert y.shape == g["out.cfg"].shape
    assert rel_l2(y, g["out.cfg"]) < 1e-5


def test_conditional_forward_matches_upstream_golden() -> None:
    model, g = golden_model()
    n = g["in.x"].shape[1]
    with torch.no_grad():
        te = model.embed_text(g["in.text"], torch.tensor([n]), n)
        y = model(g["in.x"], g["in.cond"], te, g["in.time"], None)
    assert rel_l2(y, g["out.cond"]) < 1e-5


def test_padded_batch_forward_equals_single_items() -> None:
    torch.manual_seed(0)
    model = DiT(TINY).eval()
    for p in model.parameters():  # upstream zero-inits adaLN/output: randomize so every path matters
        torch.nn.init.normal_(p, std=0.2)
    lens = [37, 64, 50]
    texts = [torch.randint(1, 2545, (n,)) for n in (10, 30, 3)]
    n = max(lens)
    x = torch.randn(3, n, 100)
    cond = torch.randn(3, n, 100)
    text = torch.full((3, 30), -1)
    for i, t in enumerate(texts):
        text[i, : len(t)] = t
    mask = torch.arange(n)[None] < torch.tensor(lens)[:, None]
    t = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        batch = model.forward_cfg(x, cond, text, t, mask)
        for i, li in enumerate(lens):
            single = model.forward_cfg(
                x[i : i + 1, :li],
                cond[i : i + 1, :li],
                texts[i][None],
                t[i : i + 1],
                torch.ones(1, li, dtype=torch.bool),
            )
            assert rel_l2(batch[i, :li], single[0]) < 1e-5
            assert rel_l2(batch[3 + i, :li], single[1]) < 1e-5


def test_config_round_trip_and_rejects_unknown_keys() -> None:
    assert DiTConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown DiT config keys"):
        DiTConfig.from_dict({**TINY.to_dict(), "bogus": 1})
