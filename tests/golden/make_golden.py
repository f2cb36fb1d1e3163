"""Write the golden fixtures from upstream f5-tts 1.1.22 and vocos 0.1.0, and compare ours at the full config.

Run where the upstream packages import (the GPU machine, with the oracle wheels on PYTHONPATH):

    PYTHONPATH=.site:. python3 tests/golden/make_golden.py --out tests/golden [--full]

Writes (all small, fp32, random weights):
  dit_keys.json            key → shape of upstream DiT (F5TTS_v1_Base, F5TTS_v1_Small) and of the CFM wrapper
  vocos_keys.json          key → shape of upstream Vocos (vocos-mel-24khz config)
  dit_golden.safetensors   small DiT weights (upstream keys) + inputs + cfg-packed forward output
  sample_golden.safetensors  NFE-7 CFM.sample inputs, the exact noise upstream drew, output mel
  vocos_golden.safetensors tiny Vocos weights (upstream keys) + mel input + decoded audio
  mel_golden.safetensors   waveform + F5's vocos log-mel (torchaudio) of it
With --full, builds upstream F5TTS_v1_Base with random weights on CUDA and prints relative L2 errors of ishow's
DiT forward and NFE-7 sample against it, in fp32 and fp16. This script is a developer tool, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from importlib.util import find_spec
from pathlib import Path

import torch
from safetensors.torch import save_file

SMALL_GOLDEN = {
    "dim": 64, "depth": 2, "heads": 2, "dim_head": 32, "ff_mult": 2, "mel_dim": 100,
    "text_num_embeds": 2545, "text_dim": 32, "conv_layers": 2,
}  # fmt: skip
UPSTREAM_ARCH = {
    "F5TTS_v1_Base": {"dim": 1024, "depth": 22, "heads": 16, "ff_mult": 2, "text_dim": 512, "conv_layers": 4},
    "F5TTS_v1_Small": {"dim": 768, "depth": 18, "heads": 12, "ff_mult": 2, "text_dim": 512, "conv_layers": 4},
}
VOCOS_TINY = {"dim": 64, "intermediate_dim": 192, "num_layers": 2}
VOCOS_REAL = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}


def import_upstream() -> tuple[types.ModuleType, types.ModuleType]:
    """Import f5_tts.model.backbones.dit and f5_tts.model.cfm without running f5_tts.model/__init__."""
    spec = find_spec("f5_tts")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("f5_tts is not importable: put the oracle wheels on PYTHONPATH")
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    mod = types.ModuleType("f5_tts.model")
    mod.__path__ = [str(pkg_dir / "model")]
    sys.modules["f5_tts.model"] = mod
    import f5_tts.model.backbones.dit as up_dit
    import f5_tts.model.cfm as up_cfm

    mod.DiT = up_dit.DiT  # type: ignore[attr-defined]
    mod.CFM = up_cfm.CFM  # type: ignore[attr-defined]
    return up_dit, up_cfm


def randomize(model: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Every parameter random (upstream zero-inits the adaLN and output layers, which would hide bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("grn.gamma") or name.endswith("grn.beta"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def upstream_dit(up_dit: types.ModuleType, arch: dict[str, int]) -> torch.nn.Module:
    kw = dict(arch)
    kw.setdefault("mel_dim", 100)
    kw.setdefault("text_num_embeds", 2545)
    m: torch.nn.Module = up_dit.DiT(
        **kw, text_mask_padding=True, qk_norm=None, pe_attn_head=None, attn_backend="torch", attn_mask_enabled=False
    )
    return m.eval()


def key_table(sd: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in sd.items()}


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def make_inputs(gen: torch.Generator, ref_frames: int, n_text: int, total: int) -> dict[str, torch.Tensor]:
    return {
        "cond": torch.randn(1, ref_frames, 100, generator=gen) * 2 - 5,
        "text": torch.randint(1, 2545, (1, n_text), generator=gen),
        "duration": torch.tensor([total]),
    }


def write_key_tables(out: Path, up_dit: types.ModuleType, up_cfm: types.ModuleType) -> None:
    tables: dict[str, dict[str, list[int]]] = {}
    with torch.device("meta"):
        for name, arch in UPSTREAM_ARCH.items():
            dit = upstream_dit(up_dit, arch)
            tables[name] = key_table(dit.state_dict())
    # the CFM wrapper adds only the "transformer." prefix (its MelSpec has no persistent buffers)
    cfm = up_cfm.CFM(transformer=upstream_dit(up_dit, {**SMALL_GOLDEN}))
    cfm_keys = key_table(cfm.state_dict())
    tables["cfm_non_transformer_keys"] = {k: v for k, v in cfm_keys.items() if not k.startswith("transformer.")}
    (out / "dit_keys.json").write_text(json.dumps(tables, indent=0, sort_keys=True))


def write_dit_and_sample(out: Path, up_dit: types.ModuleType, up_cfm: types.ModuleType) -> None:
    torch.manual_seed(0)
    dit = upstream_dit(up_dit, SMALL_GOLDEN)
    randomize(dit, seed=1)
    weights = {k: v.contiguous() for k, v in dit.state_dict().items()}
    gen = torch.Generator().manual_seed(2)
    # forward: single item, cfg-packed, no mask (what upstream does for batch 1)
    n, ref = 96, 40
    x = torch.randn(1, n, 100, generator=gen)
    cond = torch.randn(1, n, 100, generator=gen) * 2 - 5
    cond[:, ref:] = 0
    text = torch.randint(1, 2545, (1, 30), generator=gen)
    text[:, 25:] = -1
    time = torch.tensor([0.3])
    with torch.no_grad():
        y = dit(x=x, cond=cond, text=text, time=time, cfg_infer=True, cache=False)
        y_single = dit(x=x, cond=cond, text=text, time=time, drop_audio_cond=False, drop_text=False, cache=False)
    tensors = {f"w.{k}": v for k, v in weights.items()}
    tensors.update({"in.x": x, "in.cond": cond, "in.text": text, "in.time": time, "out.cfg": y, "out.cond": y_single})
    save_file(tensors, str(out / "dit_golden.safetensors"), metadata={"config": json.dumps(SMALL_GOLDEN)})

    # NFE-7 sample, two separate single items (upstream does not mask padding, so no batched golden)
    cfm = up_cfm.CFM(transformer=dit).eval()
    sample_t: dict[str, torch.Tensor] = {}
    for i, (ref_frames, n_text, total) in enumerate([(50, 40, 120), (31, 12, 70)]):
        inp = make_inputs(gen, ref_frames, n_text, total)
        seed = 100 + i
        with torch.no_grad():
            outm, _ = cfm.sample(
                cond=inp["cond"],
                text=inp["text"],
                duration=int(total),
                steps=7,
                cfg_strength=2.0,
                sway_sampling_coef=-1.0,
                seed=seed,
            )
        torch.manual_seed(seed)  # the noise upstream drew (CPU generator, fp32)
        noise = torch.randn(total, 100)
        for k, v in inp.items():
            sample_t[f"{i}.{k}"] = v
        sample_t[f"{i}.noise"] = noise
        sample_t[f"{i}.out"] = outm.contiguous()
    save_file(sample_t, str(out / "sample_golden.safetensors"), metadata={"config": json.dumps(SMALL_GOLDEN)})


def write_vocos(out: Path) -> None:
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone
    from vocos.pretrained import Vocos

    def build(c: dict[str, int]) -> torch.nn.Module:
        fe = MelSpectrogramFeatures(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, padding="center")
        bb = VocosBackbone(
            input_channels=100, dim=c["dim"], intermediate_dim=c["intermediate_dim"], num_layers=c["num_layers"]
        )
        head = ISTFTHead(dim=c["dim"], n_fft=1024, hop_length=256, padding="center")
        return Vocos(feature_extractor=fe, backbone=bb, head=head).eval()

    real = build(VOCOS_REAL)
    (out / "vocos_keys.json").write_text(json.dumps({"vocos-mel-24khz": key_table(real.state_dict())}, indent=0))

    torch.manual_seed(3)
    voc = build(VOCOS_TINY)
    randomize(voc, seed=4, std=0.1)
    gen = torch.Generator().manual_seed(5)
    mel = torch.randn(2, 100, 37, generator=gen) * 1.5 - 4
    with torch.no_grad():
        audio = voc.decode(mel)
    t = {f"w.{k}": v.contiguous() for k, v in voc.state_dict().items()}
    t.update({"in.mel": mel, "out.audio": audio})
    save_file(t, str(out / "vocos_golden.safetensors"), metadata={"config": json.dumps(VOCOS_TINY)})

    from f5_tts.model.modules import get_vocos_mel_spectrogram

    wav = torch.randn(1, 24000 // 2 + 123, generator=gen) * 0.1
    wav += 0.3 * torch.sin(torch.arange(wav.shape[1]) * 2 * torch.pi * 220 / 24000)
    logmel = get_vocos_mel_spectrogram(wav)
    save_file({"in.wav": wav, "out.logmel": logmel.contiguous()}, str(out / "mel_golden.safetensors"))


def compare_full(
    up_dit: types.ModuleType, up_cfm: types.ModuleType, dev: str = "cuda", arch: dict[str, int] | None = None
) -> None:
    """Ours vs upstream at the real F5TTS_v1_Base architecture (or ``arch``), random weights, on ``dev``."""
    from ishow.engine.f5.dit import DiT, DiTConfig
    from ishow.engine.f5.sampler import SampleItem, SamplerConfig, sample_full

    arch = arch or UPSTREAM_ARCH["F5TTS_v1_Base"]
    torch.manual_seed(0)
    ref_model = upstream_dit(up_dit, arch)
    randomize(ref_model, seed=11, std=0.02)
    ours = DiT(DiTConfig(**arch)).eval()
    ours.load_state_dict(ref_model.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(12)
    ref_frames, n_text, total = 5 * 94, 120, 5 * 94 + 3 * 94  # 5 s reference + 3 s output
    inp = make_inputs(gen, ref_frames, n_text, total)
    x = torch.randn(1, total, 100, generator=gen)
    cond = torch.nn.functional.pad(inp["cond"], (0, 0, 0, total - ref_frames))
    time = torch.tensor([0.4])
    noise = torch.randn(total, 100, generator=gen)
    results: dict[str, float] = {}
    outs: dict[str, dict[str, torch.Tensor]] = {}
    for prec, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        up = ref_model.to(dev, dtype)
        me = ours.to(dev, dtype)
        with torch.no_grad():
            y_up = up(
                x=x.to(dev, dtype),
                cond=cond.to(dev, dtype),
                text=inp["text"].to(dev),
                time=time.to(dev, dtype),
                cfg_infer=True,
                cache=False,
            ).float()
            mask = torch.ones(1, total, dtype=torch.bool, device=dev)
            y_me = me.forward_cfg(
                x.to(dev, dtype), cond.to(dev, dtype), inp["text"].to(dev), time.to(dev), mask
            ).float()
            cfm = up_cfm.CFM(transformer=up).to(dev).eval()
            # feed upstream our noise: its sampler draws randn(dur, 100) after manual_seed; patch randn once
            orig_randn = torch.randn

            def fixed_randn(*a: object, _dt: torch.dtype = dtype, **k: object) -> torch.Tensor:
                return noise.to(dev, _dt)

            torch.randn = fixed_randn  # type: ignore[assignment]
            try:
                s_up, _ = cfm.sample(
                    cond=inp["cond"].to(dev, dtype),
                    text=inp["text"].to(dev),
                    duration=total,
                    steps=7,
                    cfg_strength=2.0,
                    sway_sampling_coef=-1.0,
                    seed=0,
                )
            finally:
                torch.randn = orig_randn
            item = SampleItem(cond=inp["cond"][0], text=tuple(inp["text"][0].tolist()), duration=total)
            s_me = sample_full(me, [item], SamplerConfig(), noise=[noise])
        outs[prec] = {
            "fwd_up": y_up,
            "fwd_me": y_me,
            "smp_up": s_up.float()[:, ref_frames:],
            "smp_me": s_me[:, ref_frames:],
        }
        results[f"{prec} DiT forward ours vs upstream({prec})"] = rel_l2(y_me, y_up)
        results[f"{prec} NFE-7 sample (generated part) ours vs upstream({prec})"] = rel_l2(
            outs[prec]["smp_me"], outs[prec]["smp_up"]
        )
    for who in ("up", "me"):
        results[f"fp16 vs fp32 DiT forward, {who}"] = rel_l2(outs["fp16"][f"fwd_{who}"], outs["fp32"][f"fwd_{who}"])
        results[f"fp16 vs fp32 sample, {who}"] = rel_l2(outs["fp16"][f"smp_{who}"], outs["fp32"][f"smp_{who}"])

    # batch == single at full size (fp16 and fp32): 4 items of different lengths in one sample call
    for prec, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        me = ours.to(dev, dtype)
        items = []
        for j, (rf, nt, tot) in enumerate([(300, 80, 500), (470, 120, 752), (120, 30, 200), (400, 60, 610)]):
            d = make_inputs(gen, rf, nt, tot)
            items.append(SampleItem(cond=d["cond"][0], text=tuple(d["text"][0].tolist()), duration=tot, seed=j))
        batch = sample_full(me, items)
        worst = 0.0
        for j, it in enumerate(items):
            single = sample_full(me, [it])
            worst = max(worst, rel_l2(batch[j, : it.duration], single[0, : it.duration]))
        results[f"{prec} batch(4) vs single, worst item, Base"] = worst
    for k, v in results.items():
        print(f"RELL2 {k}: {v:.3e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--full", action="store_true", help="compare ours vs upstream at the Base config on CUDA")
    ap.add_argument("--no-vocos", action="store_true")
    ap.add_argument("--dev-check", action="store_true", help="developer aid: --full logic at a small config on CPU")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    up_dit, up_cfm = import_upstream()
    write_key_tables(args.out, up_dit, up_cfm)
    write_dit_and_sample(args.out, up_dit, up_cfm)
    if not args.no_vocos:
        write_vocos(args.out)
    if args.full:
        compare_full(up_dit, up_cfm)
    if args.dev_check:
        compare_full(up_dit, up_cfm, dev="cpu", arch=SMALL_GOLDEN)
    for p in sorted(args.out.glob("*")):
        if p.suffix in (".json", ".safetensors"):
            print(f"wrote {p} ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
