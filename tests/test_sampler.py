"""CFM sampler: time grid, upstream golden NFE-7 sample, batch == single for B = 1, 4, 16."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ishow.engine.f5.checkpoint import randomize_
from ishow.engine.f5.dit import TINY, DiT, DiTConfig
from ishow.engine.f5.sampler import SampleItem, SamplerConfig, item_noise, sample, sample_full, timesteps

GOLDEN = Path(__file__).parent / "golden"


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_nfe7_grid_is_epss_then_sway() -> None:
    ts = timesteps(7, -1.0)
    epss = [0, 2, 4, 6, 8, 16, 24, 32]
    assert ts == pytest.approx([g / 32 - (math.cos(math.pi / 2 * g / 32) - 1 + g / 32) for g in epss])
    assert ts == pytest.approx([1 - math.cos(math.pi / 2 * g / 32) for g in epss])  # coef −1: t ↦ 1 − cos(πt/2)
    assert ts[0] == 0.0 and ts[-1] == pytest.approx(1.0)


def test_other_nfe_uses_uniform_grid_then_sway() -> None:
    ts = timesteps(9, -1.0)
    assert len(ts) == 10
    assert ts == pytest.approx([1 - math.cos(math.pi / 2 * i / 9) for i in range(10)])
    assert timesteps(4, None) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])


def test_item_noise_is_built_from_cached_blocks_and_stays_independent() -> None:
    from ishow.engine.f5.sampler import NOISE_BLOCK, prepare_inputs

    long_, short = item_noise(3, 2 * NOISE_BLOCK + 17, 100), item_noise(3, NOISE_BLOCK + 5, 100)
    assert torch.equal(long_[: NOISE_BLOCK + 5], short)  # a prefix across a block boundary
    first, second = long_[:NOISE_BLOCK], long_[NOISE_BLOCK : 2 * NOISE_BLOCK]
    assert not torch.equal(first, second) and not torch.equal(first, item_noise(4, NOISE_BLOCK, 100))
    assert abs(float(long_.mean())) < 0.05 and abs(float(long_.std()) - 1) < 0.05
    item = SampleItem(cond=torch.zeros(3, 100), text=(1, 2), duration=NOISE_BLOCK + 9, seed=3)
    batch = prepare_inputs([item], 100, n_frames=NOISE_BLOCK + 64)
    assert torch.equal(batch.x0[0, : NOISE_BLOCK + 9], long_[: NOISE_BLOCK + 9])
    assert not batch.x0[0, NOISE_BLOCK + 9 :].any()
    batch.x0.fill_(7.0)  # the batch owns its copy: the cached blocks are untouched
    assert torch.equal(item_noise(3, 2 * NOISE_BLOCK + 17, 100), long_)


def test_inputs_built_in_reused_staging_equal_fresh_ones() -> None:
    from ishow.engine.accel.graphs import PinnedStaging
    from ishow.engine.f5.sampler import prepare_inputs

    staging = PinnedStaging()
    g = torch.Generator().manual_seed(0)

    def items(lengths: list[tuple[int, int]]) -> list[SampleItem]:
        return [SampleItem(cond=torch.randn(ref, 100, generator=g), text=tuple(range(1, ref)), duration=total,
                           seed=i) for i, (ref, total) in enumerate(lengths)]  # fmt: skip

    # a big batch leaves its data in the buffers; smaller ones after it must not see any of it
    for batch, rows, frames in (
        (items([(40, 120), (30, 200), (50, 90)]), 4, 256),
        (items([(20, 70)]), 2, 128),
        (items([(60, 100), (10, 30)]), 2, 128),
        (items([(5, 9)]), 1, 16),
    ):
        staged = prepare_inputs(batch, 100, n_frames=frames, n_rows=rows, out=staging.inputs(rows, frames, 100))
        fresh = prepare_inputs(batch, 100, n_frames=frames, n_rows=rows)
        for name in ("x0", "cond", "text", "seq_lens", "ref_lens"):
            assert torch.equal(getattr(staged, name), getattr(fresh, name)), name
    with pytest.raises(ValueError, match="out must be CPU inputs of"):
        prepare_inputs(items([(5, 9)]), 100, n_frames=16, n_rows=1, out=staging.inputs(1, 32, 100))


def test_item_noise_depends_only_on_its_seed() -> None:
    assert torch.equal(item_noise(5, 40, 100), item_noise(5, 40, 100))
    assert torch.equal(item_noise(5, 60, 100)[:40], item_noise(5, 40, 100))
    assert not torch.equal(item_noise(5, 40, 100), item_noise(6, 40, 100))


def golden() -> tuple[DiT, dict[str, torch.Tensor]]:
    with safe_open(str(GOLDEN / "dit_golden.safetensors"), "pt") as f:
        config = DiTConfig.from_dict(json.loads(f.metadata()["config"]))
    weights = load_file(str(GOLDEN / "dit_golden.safetensors"))
    model = DiT(config).eval()
    model.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("w.")}, strict=True)
    return model, load_file(str(GOLDEN / "sample_golden.safetensors"))


@pytest.mark.parametrize("i", [0, 1])
def test_nfe7_sample_matches_upstream_golden(i: int) -> None:
    model, g = golden()
    item = SampleItem(cond=g[f"{i}.cond"][0], text=tuple(g[f"{i}.text"][0].tolist()), duration=int(g[f"{i}.duration"]))
    out = sample_full(
        model, [item], SamplerConfig(nfe_step=7, cfg_strength=2.0, sway_coef=-1.0), noise=[g[f"{i}.noise"]]
    )
    assert out.shape == g[f"{i}.out"].shape
    ref = int(item.cond.shape[0])
    assert rel_l2(out[:, ref:], g[f"{i}.out"][:, ref:]) < 1e-4
    assert torch.equal(out[0, :ref], item.cond)


def test_golden_sample_through_seeded_api_and_batch() -> None:
    """The two golden items in ONE batch (padded, masked) give upstream's single-item results."""
    model, g = golden()
    items = [
        SampleItem(cond=g[f"{i}.cond"][0], text=tuple(g[f"{i}.text"][0].tolist()), duration=int(g[f"{i}.duration"]))
        for i in range(2)
    ]
    outs = sample(model, items, noise=[g["0.noise"], g["1.noise"]])
    for i, (it, out) in enumerate(zip(items, outs, strict=True)):
        ref = int(it.cond.shape[0])
        assert rel_l2(out, g[f"{i}.out"][0, ref:]) < 1e-4


@pytest.fixture(scope="module")
def tiny() -> DiT:
    model = DiT(TINY).eval()
    randomize_(model, seed=3)
    return model


def make_items(n: int) -> list[SampleItem]:
    gen = torch.Generator().manual_seed(n)
    voices = [torch.randn(int(f), 100, generator=gen) - 4 for f in (20, 33, 47)]  # three reference "voices"
    items = []
    for i in range(n):
        cond = voices[i % 3]
        n_text = 3 + (i * 7) % 40
        text = tuple(torch.randint(1, 2545, (n_text,), generator=gen).tolist())
        items.append(SampleItem(cond=cond, text=text, duration=int(cond.shape[0]) + 5 + (i * 13) % 60, seed=1000 + i))
    return items


@pytest.mark.parametrize("b", [1, 4, 16])
def test_batch_equals_single(tiny: DiT, b: int) -> None:
    items = make_items(b)
    batch = sample(tiny, items)
    assert len(batch) == b
    for it, out in zip(items, batch, strict=True):
        (single,) = sample(tiny, [it])
        assert out.shape == (it.total_frames() - it.cond.shape[0], 100)
        assert rel_l2(out, single) < 1e-4


def test_duration_at_least_text_and_reference_plus_one(tiny: DiT) -> None:
    item = SampleItem(cond=torch.zeros(10, 100), text=tuple(range(1, 31)), duration=5)
    assert item.total_frames() == 31
    (out,) = sample(tiny, [item])
    assert out.shape == (21, 100)
    assert bool(torch.isfinite(out).all())


def test_no_cfg_path_runs(tiny: DiT) -> None:
    (out,) = sample(tiny, make_items(1), SamplerConfig(cfg_strength=0.0))
    assert bool(torch.isfinite(out).all())


def test_bad_inputs_raise(tiny: DiT) -> None:
    with pytest.raises(ValueError, match="at least one item"):
        sample(tiny, [])
    with pytest.raises(ValueError, match="cond must be"):
        sample(tiny, [SampleItem(cond=torch.zeros(10, 80), text=(1,), duration=20)])
    with pytest.raises(ValueError, match="noise must be"):
        sample(tiny, [SampleItem(cond=torch.zeros(10, 100), text=(1,), duration=20)], noise=[torch.zeros(5, 100)])
